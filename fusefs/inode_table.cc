#include "fusefs/inode_table.h"

#include <fuse_lowlevel.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace replifs::fusefs {
namespace {

std::string FdName(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  char buf[PATH_MAX + 64];
  ssize_t n = readlink(proc.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, n);
}

}  // namespace

Inode::Inode(int fd, const struct stat& st, bool owns_fd)
    : fd(fd), ino(st.st_ino), dev(st.st_dev), type(st.st_mode & S_IFMT), owns_fd(owns_fd) {}

Inode::~Inode() {
  if (owns_fd) close(fd.load());
  for (int alias : alias_fds) close(alias);
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
  // A hard-linked file looked up by another name: keep that name's fd too
  // (one per distinct name), so it can be reported once the first is gone.
  if (inode.owns_fd && !S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    std::string name = FdName(fd);
    bool known = name.empty() || name == FdName(inode.fd.load());
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
  if (inode.nlookup == 0) map_.erase(Key(inode.ino, inode.dev));
}

std::vector<int> InodeTable::NameFds(const Inode& inode) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> fds = {inode.fd.load()};
  fds.insert(fds.end(), inode.alias_fds.begin(), inode.alias_fds.end());
  return fds;
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
