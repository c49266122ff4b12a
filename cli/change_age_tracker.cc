#include "cli/change_age_tracker.h"

#include <algorithm>

namespace replifs::cli {

void ChangeAgeTracker::Journaled(uint64_t seq, int64_t time_ns) {
  std::lock_guard lock(mutex_);
  if (!pending_.empty() && seq <= pending_.back().first) return;  // replayed twice
  pending_.emplace_back(seq, time_ns);
}

void ChangeAgeTracker::Acknowledged(uint64_t acked_seq, int64_t now_ns) {
  std::lock_guard lock(mutex_);
  int64_t newest_time_ns = -1;
  while (!pending_.empty() && pending_.front().first <= acked_seq) {
    newest_time_ns = pending_.front().second;
    pending_.pop_front();
  }
  if (newest_time_ns >= 0) last_ack_latency_ns_ = std::max<int64_t>(0, now_ns - newest_time_ns);
}

int64_t ChangeAgeTracker::OldestPendingAgeNs(int64_t now_ns) const {
  std::lock_guard lock(mutex_);
  if (pending_.empty()) return 0;
  return std::max<int64_t>(0, now_ns - pending_.front().second);
}

int64_t ChangeAgeTracker::LastAckLatencyNs() const {
  std::lock_guard lock(mutex_);
  return last_ack_latency_ns_;
}

uint64_t ChangeAgeTracker::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

}  // namespace replifs::cli
