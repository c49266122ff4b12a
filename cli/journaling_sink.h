// Where fusefs's events go in the daemon: first the journal (so the change
// survives a crash before the filesystem replies), then the scheduler.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>

#include "fusefs/event_sink.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"

namespace replifs::cli {

class JournalingSink : public fusefs::EventSink {
 public:
  JournalingSink(journal::Journal* journal, scheduler::Scheduler* scheduler)
      : journal_(journal), scheduler_(scheduler) {}

  void OnChange(v1::ChangeEvent event) override;
  void OnDurabilityBarrier() override;

  // Called with every journaled event (under the ordering lock: keep it short).
  void SetObserver(std::function<void(const v1::ChangeEvent&)> observer) {
    std::lock_guard lock(order_mutex_);
    observer_ = std::move(observer);
  }

  // Called (outside the ordering lock) each time a change is missed.
  void SetMissedChangesHandler(std::function<void()> handler) { on_missed_ = std::move(handler); }

  // Set when an event could not be journaled (disk full): a rescan recovers.
  bool rescan_needed() const { return rescan_needed_; }
  void clear_rescan_needed() { rescan_needed_ = false; }

 private:
  journal::Journal* journal_;
  scheduler::Scheduler* scheduler_;
  // Held across append + enqueue so the scheduler sees events in seq order.
  std::mutex order_mutex_;
  std::atomic<bool> rescan_needed_{false};
  std::function<void(const v1::ChangeEvent&)> observer_;  // guarded by order_mutex_
  std::function<void()> on_missed_;                      // set before events flow
};

}  // namespace replifs::cli
