// The shim's backstop: fanotify marks on every directory of the protected
// tree (FAN_EVENT_ON_CHILD: FAN_MODIFY | FAN_CLOSE_WRITE of the files in it,
// file handles) name files changed by what no syscall hook can see or
// resolve -- io_uring, aio, FICLONE/reflink, stores through a shared mapping
// (at close) -- so the daemon re-reads them. Directory marks, not one mark
// on the whole filesystem, so that writes outside the tree cost nothing;
// directories created in or moved into the tree are marked as their
// FAN_CREATE / FAN_MOVED_TO arrives (a write made in a new directory before
// that is left to the hooks). Events from the daemon itself (the overlay's
// I/O), or already reported by the shim, are dropped.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"

namespace replifs::shim {

class FanotifyBackstop {
 public:
  // A file under the root that changed: its path relative to the root, inode, writer's pid.
  using ChangeFn = std::function<void(const std::string& path, uint64_t ino, uint32_t pid)>;
  // True when the shim already reported this inode for this process recently.
  using SeenFn = std::function<bool(uint64_t ino, uint32_t tgid)>;

  // root_fd: the protected directory (a descriptor on the backing filesystem,
  // opened before the overlay covers it). ignore_tgid: the daemon.
  static absl::StatusOr<std::unique_ptr<FanotifyBackstop>> Start(int root_fd, uint32_t ignore_tgid, ChangeFn on_change,
                                                                 SeenFn seen_by_shim);
  ~FanotifyBackstop();

  // Reads what is queued (waits up to timeout_ms for the first event).
  absl::Status Poll(int timeout_ms);

  // A rename may have moved a file in or out of the tree: forget cached
  // verdicts (before the next event is resolved; callable from any thread).
  void ForgetVerdicts() { forget_verdicts_ = true; }

  uint64_t changes() const { return changes_; }        // files reported to ChangeFn
  uint64_t overflows() const { return overflows_; }    // queue overflows (rescan the tree)
  uint64_t unresolved() const { return unresolved_; }  // handles that could not be opened, dirs not marked
  uint64_t marks() const { return marks_; }            // directory marks added (incl. repeats)

 private:
  FanotifyBackstop() = default;
  // Path of the file behind a handle relative to the root; "" when outside (cached).
  std::string Resolve(const std::string& handle_key, const void* file_handle, uint64_t* ino);
  // Marks dir_fd's directory and every directory below it on the same
  // device (idempotent: a re-marked directory is merged). Takes dir_fd.
  void MarkTree(int dir_fd, dev_t dev, int depth);
  // A directory appeared under `parent` (a handle) as `name`: mark it and below.
  void MarkNewDirectory(const void* parent_handle, const char* name);

  int fan_fd_ = -1;
  int root_fd_ = -1;  // our own descriptor on the protected directory
  uint32_t ignore_tgid_ = 0;
  std::string root_path_;  // as /proc/self/fd shows it
  ChangeFn on_change_;
  SeenFn seen_by_shim_;
  std::unordered_map<std::string, bool> verdicts_;  // handle -> outside the tree (true)
  std::atomic<bool> forget_verdicts_{false};
  bool debug_ = false;  // REPLIFS_SHIM_DEBUG: each event and its resolution on stderr
  uint64_t changes_ = 0, overflows_ = 0, unresolved_ = 0, marks_ = 0;
};

}  // namespace replifs::shim
