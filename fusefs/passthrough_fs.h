// A libfuse3 low-level passthrough filesystem mounted over the directory it
// serves: the backing directory is opened before the mount, and every request
// is served from that fd, so the same path keeps working for every program.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fusefs/event_sink.h"
#include "fusefs/open_writers.h"
#include "fusefs/fsync_copies.h"

namespace replifs::fusefs {

struct MountOptions {
  std::string mountpoint;    // absolute path; also the backing directory
  int backing_root_fd = -1;  // O_PATH|O_DIRECTORY fd of the backing dir, opened before mounting
  std::string fsname;        // shown as the mount's source in /proc/self/mountinfo
  std::string subtype = "replifs";  // fstype becomes fuse.<subtype>
  bool debug = false;
  unsigned worker_threads = 0;  // 0: libfuse default

  // Speed settings (see fs_state.h for which are safe when the backing tree
  // changes underneath). The kernel caches writes and owns size/mtime while
  // pages are dirty; dirty pages reach the daemon (and the EventSink) at
  // writeback, flush (every close), fsync and munmap/msync. The backing
  // file's mtime follows the kernel's (Inode::kernel_mtime), so the tree
  // under the mount and the mount agree.
  bool writeback_cache = true;
  // Entry and attribute timeout, seconds; changes made underneath must be
  // announced with InvalidatePath() to be seen before it expires.
  double cache_timeout = 1.0;
  // Readahead of the mount's bdi, KiB (the FUSE default is 128); 0 leaves it.
  unsigned read_ahead_kb = 1024;
  // How many looked-up inodes may each hold an fd; past it they are kept by
  // file handle and reopened per request. 0: three quarters of
  // RLIMIT_NOFILE, which Mount() raises to its hard limit first.
  std::size_t max_pinned_fds = 0;
};

class PassthroughFs {
 public:
  // Mounts; on return the mount is live (the kernel accepts requests; they
  // are served once Run() is called).
  static absl::StatusOr<std::unique_ptr<PassthroughFs>> Mount(const MountOptions& options,
                                                              EventSink* sink);
  virtual ~PassthroughFs() = default;

  // Serves requests until the filesystem is unmounted (umount, fusermount -u)
  // or Exit() is called. Multithreaded.
  virtual absl::Status Run() = 0;
  // Asks Run() to return; does not unmount.
  virtual void Exit() = 0;
  // Unmounts (if still mounted) and releases the session.
  virtual void Unmount() = 0;

  // Drops the kernel's cached pages and attributes for a path changed
  // underneath the overlay (kernel shim, restore), and its dentry.
  virtual void InvalidatePath(const std::string& relative_path) = 0;

  // Backing inodes open for writing through the mount (valid until Unmount).
  virtual OpenWriters& open_writers() = 0;
  // Copies of backing files taken under an FSYNC (valid until Unmount).
  virtual FsyncCopies& fsync_copies() = 0;
};

}  // namespace replifs::fusefs
