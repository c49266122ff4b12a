// Whether the client's chunk maps may be used for incremental re-chunking.
//
// A chunk map plus the dirty ranges captured since it was written describe
// the file only if no change was missed in between. When the daemon learns
// that changes were missed (the journal was full, the shim could not name a
// file), every map is suspect until a reconcile has re-read what changed:
// until then content is read whole, and a batch that overlapped the loss
// does not record its maps. The reconcile also re-reads every file whose
// ctime is at or after the loss (ctime cannot be set by programs), which
// covers a write that landed just before the loss was noticed.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <mutex>

namespace replifs::client {

class ChunkMapTrust {
 public:
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  // Changes were missed at about `now_ns` (CLOCK_REALTIME).
  void NoteLostChanges(int64_t now_ns) {
    std::lock_guard lock(mutex_);
    ++epoch_;
    // The missed write reached the disk before the loss was noticed.
    constexpr int64_t kMargin = 2'000'000'000;
    if (lost_since_ns_ == kNever) lost_since_ns_ = now_ns - kMargin;
  }

  bool trusted() const {
    std::lock_guard lock(mutex_);
    return lost_since_ns_ == kNever;
  }
  uint64_t epoch() const {
    std::lock_guard lock(mutex_);
    return epoch_;
  }
  // Files with a ctime at or after this must be re-read whole (kNever: none).
  int64_t lost_since_ns() const {
    std::lock_guard lock(mutex_);
    return lost_since_ns_;
  }

  // A reconcile that started at `epoch` has finished: if nothing was missed
  // since it started, it found everything that was missed before.
  void RestoreIfNoLossSince(uint64_t epoch) {
    std::lock_guard lock(mutex_);
    if (epoch_ == epoch) lost_since_ns_ = kNever;
  }

 private:
  mutable std::mutex mutex_;
  uint64_t epoch_ = 0;
  int64_t lost_since_ns_ = kNever;
};

}  // namespace replifs::client
