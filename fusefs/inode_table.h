// The kernel's view of our inodes: one Inode per (st_ino, st_dev) the kernel
// holds a lookup reference to, each with an O_PATH fd that pins the backing
// inode (so its number cannot be reused while the kernel knows it). Past a
// budget of pinned fds (a `du` over a tree larger than RLIMIT_NOFILE), new
// inodes keep a file handle (name_to_handle_at) instead and are reopened
// for each request that needs them (request_fds.h).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace replifs::fusefs {

// fuse_ino_t is the Inode's address (as in passthrough_ll), so a request
// finds its inode without a lock. The root is the exception: FUSE_ROOT_ID.
static_assert(sizeof(std::uintptr_t) <= sizeof(std::uint64_t),
              "an Inode* must fit in a fuse_ino_t");

struct Inode {
  // Pinned: fd >= 0. By handle: fd == -1, handle and mount_fd set.
  Inode(int fd, const struct stat& st, bool owns_fd, std::string handle = {}, int mount_fd = -1);
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  // An O_PATH fd of the inode, valid until the current request's handler
  // returns: the pinned fd, or one opened from the handle for this request.
  // -1 with errno set if the handle no longer opens (ESTALE: deleted).
  int Fd() const;

  // O_PATH|O_NOFOLLOW fd of the name the inode was first looked up by, or
  // -1 for an inode kept by handle. Constant for the Inode's life.
  const int fd;
  // struct file_handle bytes (name_to_handle_at) when fd == -1, and a fd on
  // the same filesystem to open it with (owned by the InodeTable).
  const std::string handle;
  const int mount_fd;
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
  // for the first capture, for each WRITE's futimens (not its copy) and
  // across a SETATTR of the mtime; a leaf lock.
  std::mutex kernel_mtime_mu;
  bool kernel_mtime_known = false;
  struct timespec kernel_mtime = {};
};

class InodeTable {
 public:
  // root_fd: O_PATH|O_DIRECTORY fd of the backing root; not owned.
  // max_pinned: how many inodes may hold an fd (0: derived from RLIMIT_NOFILE).
  explicit InodeTable(int root_fd, std::size_t max_pinned = 0);
  ~InodeTable();

  Inode& root() { return *root_; }
  // The Inode behind a fuse_ino_t the kernel sent: valid until its forget.
  Inode& Get(std::uint64_t fuse_ino);
  std::uint64_t IdOf(const Inode& inode) const;

  // Takes ownership of fd (an O_PATH fd of an object whose lstat is st):
  // installs it in a new Inode, or closes it when the inode is known. Past
  // the pinned-fd budget the new Inode keeps a file handle instead and fd is
  // closed (a filesystem without handles keeps the fd). Adds one lookup
  // reference. Returns the inode. parent_fd: the directory fd was looked up
  // in (an fd of this request), or -1.
  Inode& Insert(int fd, const struct stat& st, int parent_fd);
  // Drops n lookup references; the Inode is freed at zero.
  void Forget(Inode& inode, std::uint64_t n);
  // Fd() followed by alias_fds: every name of the inode we hold an fd for.
  // The fds stay open until the current request's handler returns.
  std::vector<int> NameFds(const Inode& inode);

  // fstat of the known inode (ino, dev), if the kernel holds it.
  std::optional<struct stat> StatIfKnown(ino_t ino, dev_t dev);
  // The fuse_ino_t of a known inode, for notifications.
  std::optional<std::uint64_t> IdIfKnown(ino_t ino, dev_t dev);

  std::size_t pinned() const { return pinned_.load(std::memory_order_relaxed); }
  std::size_t max_pinned() const { return max_pinned_; }

 private:
  using Key = std::pair<ino_t, dev_t>;

  // A new Inode for fd (pinned or by handle, see Insert); mu_ held.
  std::unique_ptr<Inode> NewInode(int fd, const struct stat& st, int parent_fd);
  // A readable directory fd on st's filesystem for open_by_handle_at, or -1.
  int MountFdFor(int fd, const struct stat& st, int parent_fd);
  // A by-handle Inode whose backing inode number was reused by another
  // file: the map forgets it, the kernel's references keep it; mu_ held.
  void Detach(std::map<Key, std::unique_ptr<Inode>>::iterator it);

  // Guards map_ and every Inode's nlookup and alias_fds. A leaf lock: taken
  // last, held for map work and non-blocking syscalls on local fds only
  // (close, fstat, readlink of /proc), never across a FUSE reply or sink call.
  std::mutex mu_;
  std::map<Key, std::unique_ptr<Inode>> map_;
  std::map<const Inode*, std::unique_ptr<Inode>> detached_;  // see Detach
  std::map<dev_t, int> mount_fds_;  // per device, for open_by_handle_at; owned
  Inode* root_ = nullptr;  // also in map_, never erased
  const std::size_t max_pinned_;
  std::atomic<std::size_t> pinned_{0};
};

}  // namespace replifs::fusefs
