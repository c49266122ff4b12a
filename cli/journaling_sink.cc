#include "cli/journaling_sink.h"

#include <time.h>

#include <iostream>

#include "replicator/server/fault_injection.h"

namespace replifs::cli {

void JournalingSink::OnChange(v1::ChangeEvent event) {
  if (event.time_ns() == 0) {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    event.set_time_ns(static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec);
  }
  std::lock_guard lock(order_mutex_);
  absl::StatusOr<uint64_t> seq = journal_->Append(event);
  if (!seq.ok()) {
    // The user's write already happened and must not fail or block: remember
    // that the journal missed something, and reconcile later.
    if (!rescan_needed_.exchange(true)) {
      std::cerr << "replifs: journal append failed, a rescan will be needed: " << seq.status()
                << std::endl;
    }
    return;
  }
  fault::Hit("after-journal-append");
  if (observer_) observer_(event);
  // The shim could not name what changed (lost records, a move across the
  // tree's edge): only a reconcile of the whole tree is certainly right.
  const bool unnamed = event.op() == v1::ChangeEvent::RESCAN && event.inode() == 0 &&
                       event.source() == v1::ChangeEvent::SHIM;
  scheduler_->Enqueue(std::move(event));
  if (unnamed) rescan_needed_ = true;
}

void JournalingSink::OnDurabilityBarrier() {
  absl::Status status = journal_->Sync();
  if (!status.ok()) std::cerr << "replifs: journal sync failed: " << status << std::endl;
}

}  // namespace replifs::cli
