// The kernel's view of our inodes: one Inode per (st_ino, st_dev) the kernel
// holds a lookup reference to, each with an O_PATH fd that pins the backing
// inode (so its number cannot be reused while the kernel knows it).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace replifs::fusefs {

// fuse_ino_t is the Inode's address (as in passthrough_ll), so a request
// finds its inode without a lock. The root is the exception: FUSE_ROOT_ID.
static_assert(sizeof(std::uintptr_t) <= sizeof(std::uint64_t),
              "an Inode* must fit in a fuse_ino_t");

struct Inode {
  Inode(int fd, const struct stat& st, bool owns_fd);
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  // O_PATH|O_NOFOLLOW fd of the name the inode was first looked up by.
  // Constant for the Inode's life (atomic only so readers need no lock).
  std::atomic<int> fd;
  const ino_t ino;
  const dev_t dev;
  const mode_t type;   // S_IFMT bits; an inode never changes type
  const bool owns_fd;  // false for the root: the caller owns backing_root_fd

  // Guarded by InodeTable::mu_.
  std::uint64_t nlookup = 0;
  // O_PATH fds of the other names of a hard-linked file that the kernel
  // looked up, so an event can still name the file when `fd`'s name is gone
  // (paths are read back from fds: see event_reporter.h). Only grows.
  std::vector<int> alias_fds;

  // Writeback cache: the kernel keeps its own mtime for regular files (it
  // ignores ours) and tells us with a SETATTR when it changes it, which can
  // overtake WRITEs of pages dirtied earlier; after a short write it may send
  // none at all. A WRITE must then not move the backing mtime away from the
  // kernel's: kernel_mtime is the last one the kernel knows (the backing's
  // before the first page-cache WRITE, then each SETATTR's), put back after
  // every page-cache WRITE. kernel_mtime_mu guards both fields and is held
  // across that WRITE and across a SETATTR of the mtime; a leaf lock.
  std::mutex kernel_mtime_mu;
  bool kernel_mtime_known = false;
  struct timespec kernel_mtime = {};
};

class InodeTable {
 public:
  // root_fd: O_PATH|O_DIRECTORY fd of the backing root; not owned.
  explicit InodeTable(int root_fd);

  Inode& root() { return *root_; }
  // The Inode behind a fuse_ino_t the kernel sent: valid until its forget.
  Inode& Get(std::uint64_t fuse_ino);
  std::uint64_t IdOf(const Inode& inode) const;

  // Takes ownership of fd (an O_PATH fd of an object whose lstat is st):
  // installs it in a new Inode, or closes it when the inode is known. Adds
  // one lookup reference. Returns the inode.
  Inode& Insert(int fd, const struct stat& st);
  // Drops n lookup references; the Inode is freed at zero.
  void Forget(Inode& inode, std::uint64_t n);
  // fd followed by alias_fds: every name of the inode we hold an fd for.
  // The fds stay open while the kernel holds the inode (during a request).
  std::vector<int> NameFds(const Inode& inode);

  // fstat of the known inode (ino, dev), if the kernel holds it.
  std::optional<struct stat> StatIfKnown(ino_t ino, dev_t dev);
  // The fuse_ino_t of a known inode, for notifications.
  std::optional<std::uint64_t> IdIfKnown(ino_t ino, dev_t dev);

 private:
  using Key = std::pair<ino_t, dev_t>;

  // Guards map_ and every Inode's nlookup and alias_fds. A leaf lock: taken
  // last, held for map work and non-blocking syscalls on local fds only
  // (close, fstat, readlink of /proc), never across a FUSE reply or sink call.
  std::mutex mu_;
  std::map<Key, std::unique_ptr<Inode>> map_;
  Inode* root_ = nullptr;  // also in map_, never erased
};

}  // namespace replifs::fusefs
