// What every request handler shares: the inode table and the event reporter,
// reached through fuse_req_userdata. Internal to fusefs.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <string>

#include "fusefs/event_reporter.h"
#include "fusefs/inode_table.h"
#include "fusefs/open_writers.h"
#include "fusefs/fsync_copies.h"

namespace replifs::fusefs {

struct FsState {
  FsState(int root_fd, std::string root_prefix, EventSink* sink, std::size_t max_pinned_fds)
      : root_fd(root_fd),
        inodes(root_fd, max_pinned_fds),
        events(root_fd, std::move(root_prefix), sink) {}

  const int root_fd;
  InodeTable inodes;
  EventReporter events;
  // Write handles per backing inode: the replicator holds such files back.
  OpenWriters open_writers;
  // Copies made under an FSYNC: consistent versions of files still written.
  FsyncCopies fsync_copies;
  // Kernel caching. Safe while the daemon is the only writer of the backing
  // tree. When the tree can change underneath (writes reported by the kernel
  // shim, files put back by restore into the live directory), each such
  // change MUST be followed by PassthroughFs::InvalidatePath(), which drops
  // the kernel's pages (keep_cache), attributes (attr_timeout) and dentry
  // (entry_timeout). Without it: stale reads until the timeout; with a
  // writeback cache also a stale size, so an append or an extending write
  // through the mount could land at the old end of file. Negative entries
  // are never cached, so names created underneath show up at once anyway.
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  bool writeback_cache = false;  // asked for in init; set from what the kernel granted
  bool keep_cache = false;       // keep page cache across opens (needs invalidation, above)

  // Readahead of the mount's bdi, applied once after INIT (ApplyReadAheadOnce).
  std::string mountpoint;
  unsigned read_ahead_kb = 0;
  std::atomic<bool> read_ahead_pending{false};

  // Exit(): libfuse 3.14 drops (never answers) a request read after
  // fuse_session_exit, so the loop is stopped from inside a request instead:
  // the next statfs is answered, then ends the session.
  fuse_session* session = nullptr;  // set once, before the loop runs
  std::atomic<bool> exit_requested{false};
};

inline FsState& StateOf(fuse_req_t req) { return *static_cast<FsState*>(fuse_req_userdata(req)); }

// Sets the bdi's read_ahead_kb on the first call after INIT (mount.cc).
void ApplyReadAheadOnce(FsState& fs);
inline void ApplyReadAheadIfPending(FsState& fs) {
  if (fs.read_ahead_pending.load(std::memory_order_relaxed)) ApplyReadAheadOnce(fs);
}

inline Inode& InodeOf(fuse_req_t req, fuse_ino_t ino) { return StateOf(req).inodes.Get(ino); }

// Reports op on inode (path from any of its names, attributes from
// fstat(stat_fd)); `fill` adds the op specifics.
template <typename Fill>
void ReportInode(FsState& fs, ChangeOp op, Inode& inode, int stat_fd, Fill fill) {
  if (!fs.events.enabled()) return;
  fs.events.ReportObject(op, fs.inodes.NameFds(inode), stat_fd, fill);
}
inline void ReportInode(FsState& fs, ChangeOp op, Inode& inode, int stat_fd) {
  ReportInode(fs, op, inode, stat_fd, [](replifs::v1::ChangeEvent&) {});
}

// "/proc/self/fd/N": O_PATH fds refuse read/write/f*xattr, so operations that
// need a real file or a path go through the magic link, which resolves to the
// object itself (not a symlink's target) and never through the over-mount.
inline std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Looks up `name` in `parent` (O_PATH, no symlink follow), adds a lookup
// reference and fills e. Returns 0 or an errno.
int LookupEntry(fuse_req_t req, Inode& parent, const char* name, fuse_entry_param* e);

// The fuse_lowlevel_ops handlers, one file per group.
// namespace_ops.cc
void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets);
void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags);
void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
// attr_ops.cc
void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi);
void OpReadlink(fuse_req_t req, fuse_ino_t ino);
void OpStatfs(fuse_req_t req, fuse_ino_t ino);
void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name);
// file_ops.cc
void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off, fuse_file_info* fi);
void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi);
void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags);
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);
void OpFlock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op);
// Shared by open and create: backing open flags for the kernel's flags, and
// wrapping the open backing fd in a FileHandle stored in fi->fh.
int BackingOpenFlags(const FsState& fs, fuse_file_info* fi);
int OpenBacking(const std::string& path, int dirfd, const char* name, int flags, int kernel_flags,
                mode_t mode);
// `ino`: the backing st_ino, counted in open_writers while a write handle is open.
void OpenHandle(FsState& fs, int fd, int backing_flags, uint64_t ino, fuse_file_info* fi);
// dir_ops.cc
void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);

// The table of all of the above plus init.
const fuse_lowlevel_ops& PassthroughOps();

}  // namespace replifs::fusefs
