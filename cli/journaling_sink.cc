#include "cli/journaling_sink.h"

#include <time.h>

#include <iostream>

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
  if (observer_) observer_(event);
  scheduler_->Enqueue(std::move(event));
}

void JournalingSink::OnDurabilityBarrier() {
  absl::Status status = journal_->Sync();
  if (!status.ok()) std::cerr << "replifs: journal sync failed: " << status << std::endl;
}

}  // namespace replifs::cli
