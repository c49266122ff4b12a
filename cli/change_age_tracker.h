// How old the oldest change not yet durable on the server is (the recovery
// point objective a crash would cost right now), and how long the newest
// acknowledged change took from being journaled to being acknowledged.
// Thread-safe: the journaling sink adds, the scheduler's thread acknowledges,
// scrapes read.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>

namespace replifs::cli {

class ChangeAgeTracker {
 public:
  // A journaled change; seqs must rise (journal order). `time_ns` is when it
  // was journaled (ChangeEvent.time_ns), so replayed changes keep their age.
  void Journaled(uint64_t seq, int64_t time_ns);
  // Every seq <= `acked_seq` is durable on the server.
  void Acknowledged(uint64_t acked_seq, int64_t now_ns);

  // Age of the oldest unacknowledged change at `now_ns`; 0 when none.
  int64_t OldestPendingAgeNs(int64_t now_ns) const;
  // Journal-to-ack time of the newest change the last acknowledgement
  // covered; 0 before the first.
  int64_t LastAckLatencyNs() const;
  uint64_t pending() const;

 private:
  mutable std::mutex mutex_;                          // guards everything below
  std::deque<std::pair<uint64_t, int64_t>> pending_;  // (seq, time_ns), seq order
  int64_t last_ack_latency_ns_ = 0;
};

}  // namespace replifs::cli
