#include "fusefs/inode_table.h"

#include <fuse_lowlevel.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace replifs::fusefs {
namespace {

// True when the name an fd was opened by has been unlinked or renamed over.
bool FdNameIsGone(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  char buf[PATH_MAX];
  ssize_t n = readlink(proc.c_str(), buf, sizeof(buf));
  if (n < 0) return false;
  constexpr std::string_view kDeleted = " (deleted)";
  return std::string_view(buf, n).ends_with(kDeleted);
}

}  // namespace

Inode::Inode(int fd, const struct stat& st, bool owns_fd)
    : fd(fd),
      ino(st.st_ino),
      dev(st.st_dev),
      type(st.st_mode & S_IFMT),
      owns_fd(owns_fd) {}

Inode::~Inode() {
  if (owns_fd) close(fd.load());
  for (int old : retired_fds) close(old);
}

InodeTable::InodeTable(int root_fd) {
  struct stat st;
  if (fstat(root_fd, &st) != 0) abort();  // Mount() checked the fd already
  auto root = std::make_unique<Inode>(root_fd, st, /*owns_fd=*/false);
  root->nlookup = 1;  // the kernel never forgets the root
  root_ = root.get();
  map_.emplace(Key(st.st_ino, st.st_dev), std::move(root));
}

Inode& InodeTable::Get(std::uint64_t fuse_ino) {
  if (fuse_ino == FUSE_ROOT_ID) return *root_;
  return *reinterpret_cast<Inode*>(static_cast<std::uintptr_t>(fuse_ino));
}

std::uint64_t InodeTable::IdOf(const Inode& inode) const {
  if (&inode == root_) return FUSE_ROOT_ID;
  return reinterpret_cast<std::uintptr_t>(&inode);
}

Inode& InodeTable::Insert(int fd, const struct stat& st) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(st.st_ino, st.st_dev));
  if (it == map_.end()) {
    auto inode = std::make_unique<Inode>(fd, st, /*owns_fd=*/true);
    inode->nlookup = 1;
    Inode& ref = *inode;
    map_.emplace(Key(st.st_ino, st.st_dev), std::move(inode));
    return ref;
  }
  Inode& inode = *it->second;
  inode.nlookup++;
  // Paths are read back from the O_PATH fd (see event_reporter.h). For a hard
  // link whose first name is gone, adopt the fd of the name just looked up so
  // later events name a path that exists. The old fd may be in use by another
  // thread, so it is retired, not closed.
  if (inode.owns_fd && !S_ISDIR(st.st_mode) && st.st_nlink > 1 &&
      FdNameIsGone(inode.fd.load())) {
    inode.retired_fds.push_back(inode.fd.exchange(fd));
  } else {
    close(fd);
  }
  return inode;
}

void InodeTable::Forget(Inode& inode, std::uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (&inode == root_) return;
  inode.nlookup = n >= inode.nlookup ? 0 : inode.nlookup - n;
  if (inode.nlookup == 0) map_.erase(Key(inode.ino, inode.dev));
}

std::optional<struct stat> InodeTable::StatIfKnown(ino_t ino, dev_t dev) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(ino, dev));
  if (it == map_.end()) return std::nullopt;
  struct stat st;
  if (fstat(it->second->fd.load(), &st) != 0) return std::nullopt;
  return st;
}

std::optional<std::uint64_t> InodeTable::IdIfKnown(ino_t ino, dev_t dev) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(Key(ino, dev));
  if (it == map_.end()) return std::nullopt;
  return IdOf(*it->second);
}

}  // namespace replifs::fusefs
