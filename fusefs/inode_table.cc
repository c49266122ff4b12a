#include "fusefs/inode_table.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "fusefs/request_fds.h"

namespace replifs::fusefs {
namespace {

std::string FdName(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  char buf[PATH_MAX + 64];
  ssize_t n = readlink(proc.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, n);
}

// The file handle of fd's object, or "" if its filesystem has none.
std::string HandleOf(int fd) {
  alignas(file_handle) char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) return std::string();
  return std::string(buf, sizeof(file_handle) + fh->handle_bytes);
}

// Pinned fds may use three quarters of the fd limit: open files, open
// directories, the journal and sockets need the rest.
std::size_t DefaultMaxPinned() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return std::max<std::size_t>(64, rl.rlim_cur - rl.rlim_cur / 4);
}

}  // namespace

Inode::Inode(int fd, const struct stat& st, bool owns_fd, std::string handle, int mount_fd)
    : fd(fd),
      handle(std::move(handle)),
      mount_fd(mount_fd),
      ino(st.st_ino),
      dev(st.st_dev),
      type(st.st_mode & S_IFMT),
      owns_fd(owns_fd) {}

Inode::~Inode() {
  if (owns_fd && fd >= 0) close(fd);
  for (int alias : alias_fds) close(alias);
}

int Inode::Fd() const { return fd >= 0 ? fd : OpenForRequest(*this); }

InodeTable::InodeTable(int root_fd, std::size_t max_pinned)
    : max_pinned_(max_pinned > 0 ? max_pinned : DefaultMaxPinned()) {
  struct stat st;
  if (fstat(root_fd, &st) != 0) abort();  // Mount() checked the fd already
  auto root = std::make_unique<Inode>(root_fd, st, /*owns_fd=*/false);
  root->nlookup = 1;  // the kernel never forgets the root
  root_ = root.get();
  map_.emplace(Key(st.st_ino, st.st_dev), std::move(root));
}

InodeTable::~InodeTable() {
  for (auto& [dev, fd] : mount_fds_) close(fd);
}

Inode& InodeTable::Get(std::uint64_t fuse_ino) {
  if (fuse_ino == FUSE_ROOT_ID) return *root_;
  return *reinterpret_cast<Inode*>(static_cast<std::uintptr_t>(fuse_ino));
}

std::uint64_t InodeTable::IdOf(const Inode& inode) const {
  if (&inode == root_) return FUSE_ROOT_ID;
  return reinterpret_cast<std::uintptr_t>(&inode);
}

std::unique_ptr<Inode> InodeTable::NewInode(int fd, const struct stat& st, int parent_fd) {
  if (pinned_.load(std::memory_order_relaxed) < max_pinned_) {
    pinned_.fetch_add(1, std::memory_order_relaxed);
    return std::make_unique<Inode>(fd, st, /*owns_fd=*/true);
  }
  std::string handle = HandleOf(fd);
  int mount_fd = handle.empty() ? -1 : MountFdFor(fd, st, parent_fd);
  if (mount_fd < 0) {  // no handles here, or no fd to open them with: over budget, but working
    pinned_.fetch_add(1, std::memory_order_relaxed);
    return std::make_unique<Inode>(fd, st, /*owns_fd=*/true);
  }
  close(fd);
  return std::make_unique<Inode>(-1, st, /*owns_fd=*/true, std::move(handle), mount_fd);
}

int InodeTable::MountFdFor(int fd, const struct stat& st, int parent_fd) {
  auto it = mount_fds_.find(st.st_dev);
  if (it != mount_fds_.end()) return it->second;
  // open_by_handle_at refuses O_PATH fds: open a directory on the same
  // filesystem for reading (the object itself, or the parent it was
  // looked up in; opening a non-directory could block or have effects).
  int dir = -1;
  struct stat parent_st;
  if (S_ISDIR(st.st_mode)) {
    dir = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else if (parent_fd >= 0 && fstat(parent_fd, &parent_st) == 0 && parent_st.st_dev == st.st_dev) {
    dir = open(("/proc/self/fd/" + std::to_string(parent_fd)).c_str(),
               O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (dir >= 0) mount_fds_.emplace(st.st_dev, dir);
  return dir;
}

void InodeTable::Detach(std::map<Key, std::unique_ptr<Inode>>::iterator it) {
  const Inode* inode = it->second.get();
  detached_.emplace(inode, std::move(it->second));
  map_.erase(it);
}

Inode& InodeTable::Insert(int fd, const struct stat& st, int parent_fd) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(st.st_ino, st.st_dev));
  // A by-handle inode does not pin its number: a new file may have it now.
  if (it != map_.end() && it->second->fd < 0 && it->second->handle != HandleOf(fd)) {
    Detach(it);
    it = map_.end();
  }
  if (it == map_.end()) {
    std::unique_ptr<Inode> inode = NewInode(fd, st, parent_fd);
    inode->nlookup = 1;
    Inode& ref = *inode;
    map_.emplace(Key(st.st_ino, st.st_dev), std::move(inode));
    return ref;
  }
  Inode& inode = *it->second;
  inode.nlookup++;
  // A hard-linked file looked up by another name: keep that name's fd too
  // (one per distinct name), so it can be reported once the first is gone.
  if (inode.owns_fd && inode.fd >= 0 && !S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    std::string name = FdName(fd);
    bool known = name.empty() || name == FdName(inode.fd);
    for (int alias : inode.alias_fds) {
      if (known) break;
      known = name == FdName(alias);
    }
    if (!known) {
      inode.alias_fds.push_back(fd);
      return inode;
    }
  }
  close(fd);
  return inode;
}

void InodeTable::Forget(Inode& inode, std::uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (&inode == root_) return;
  inode.nlookup = n >= inode.nlookup ? 0 : inode.nlookup - n;
  if (inode.nlookup > 0) return;
  if (inode.fd >= 0) pinned_.fetch_sub(1, std::memory_order_relaxed);
  auto it = map_.find(Key(inode.ino, inode.dev));
  if (it != map_.end() && it->second.get() == &inode) {
    map_.erase(it);
  } else {
    detached_.erase(&inode);
  }
}

std::vector<int> InodeTable::NameFds(const Inode& inode) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> fds = {inode.Fd()};
  fds.insert(fds.end(), inode.alias_fds.begin(), inode.alias_fds.end());
  return fds;
}

std::optional<struct stat> InodeTable::StatIfKnown(ino_t ino, dev_t dev) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(ino, dev));
  if (it == map_.end()) return std::nullopt;
  struct stat st;
  if (fstat(it->second->Fd(), &st) != 0) return std::nullopt;
  return st;
}

std::optional<std::uint64_t> InodeTable::IdIfKnown(ino_t ino, dev_t dev) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(ino, dev));
  if (it == map_.end()) return std::nullopt;
  return IdOf(*it->second);
}

}  // namespace replifs::fusefs
