#include "cli/journaling_sink.h"

#include <time.h>

#include "replicator/server/fault_injection.h"
#include "replicator/telemetry/log.h"

namespace replifs::cli {

void JournalingSink::OnChange(v1::ChangeEvent event) {
  if (event.time_ns() == 0) {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    event.set_time_ns(static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec);
  }
  std::unique_lock lock(order_mutex_);
  absl::StatusOr<uint64_t> seq = journal_->Append(event);
  if (!seq.ok()) {
    lock.unlock();
    if (on_missed_) on_missed_();
    // The user's write already happened and must not fail or block: remember
    // that the journal missed something, and reconcile later.
    if (!rescan_needed_.exchange(true)) {
      telemetry::LogError("journal", "append failed; a rescan will be needed",
                          {{"error", seq.status()}});
    }
    return;
  }
  fault::Hit("after-journal-append");
  if (observer_) observer_(event);
  // The shim or the overlay could not name what changed (lost records, a
  // move across the tree's edge, a file whose backing name was evicted):
  // only a reconcile of the whole tree is certainly right.
  const bool unnamed = event.op() == v1::ChangeEvent::RESCAN && event.inode() == 0 && event.path().empty() &&
                       (event.source() == v1::ChangeEvent::SHIM || event.source() == v1::ChangeEvent::OVERLAY);
  scheduler_->Enqueue(std::move(event));
  lock.unlock();
  if (unnamed) {
    if (on_missed_) on_missed_();
    rescan_needed_ = true;
  }
}

void JournalingSink::OnDurabilityBarrier() {
  absl::Status status = journal_->Sync();
  if (!status.ok()) telemetry::LogError("journal", "sync failed", {{"error", status}});
}

}  // namespace replifs::cli
