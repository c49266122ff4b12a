#include "replicator/scheduler/scheduler.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "replicator/scheduler/pending_changes.h"

namespace replifs::scheduler {
namespace {

using replifs::v1::ChangeEvent;

class SchedulerImpl final : public Scheduler {
 public:
  SchedulerImpl(SchedulerPolicy policy, CommandExecutor* executor,
                std::function<void(uint64_t)> on_acked, uint64_t start_seq)
      : policy_(policy),
        executor_(executor),
        on_acked_(std::move(on_acked)),
        highest_enqueued_(start_seq),
        pending_(start_seq),
        acked_(start_seq),
        reported_acked_(start_seq),
        delivered_acked_(start_seq),
        retry_delay_(policy.retry_initial) {}
  ~SchedulerImpl() override { Stop(); }

  void Start() override;
  void Stop() override;
  void Enqueue(ChangeEvent event) override;
  absl::Status FlushAndWait(absl::Duration timeout) override;
  SchedulerStats stats() const override;
  void SetOpenWriters(const OpenWritersView* view) override;
  void WriterClosed(uint64_t inode) override;

 private:
  void ManageLoop();   // managing unit: inbox -> pending_
  void ProcessLoop();  // processing unit: pending_ -> executor
  // Hands a risen watermark to on_acked (the journal's trim: two fsyncs),
  // beside the processing unit, which meanwhile sends the next batch.
  void ReportLoop();
  // Waits for a batch to send; false on Stop.
  bool NextWork(Batch* batch);
  void Settle(Batch batch, const absl::Status& status, const std::vector<size_t>& stale);
  void RefreshAckedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);

  const SchedulerPolicy policy_;
  CommandExecutor* const executor_;
  const std::function<void(uint64_t)> on_acked_;

  // Lock order: inbox_mu_ before state_mu_. inbox_mu_ guards the hand-off
  // from Enqueue to the managing thread, which holds both only while it
  // classifies what it took, so an event is always counted in exactly one place.
  mutable absl::Mutex inbox_mu_;
  absl::CondVar inbox_cv_;  // signalled on Enqueue and Stop
  std::deque<ChangeEvent> inbox_ ABSL_GUARDED_BY(inbox_mu_);
  uint64_t highest_enqueued_ ABSL_GUARDED_BY(inbox_mu_);
  bool inbox_stopped_ ABSL_GUARDED_BY(inbox_mu_) = false;

  // state_mu_ guards what both units share; never held across Execute or on_acked.
  mutable absl::Mutex state_mu_;
  absl::CondVar work_cv_;   // processing thread: new events, a flush, Stop
  absl::CondVar acked_cv_;  // FlushAndWait: the watermark rose, or Stop
  absl::CondVar report_cv_;  // ReportLoop: the watermark rose, or Stop
  PendingChanges pending_ ABSL_GUARDED_BY(state_mu_);
  uint64_t flush_target_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(state_mu_) = false;
  uint64_t acked_ ABSL_GUARDED_BY(state_mu_);
  uint64_t reported_acked_ ABSL_GUARDED_BY(state_mu_);   // handed to on_acked
  uint64_t delivered_acked_ ABSL_GUARDED_BY(state_mu_);  // ... and on_acked returned
  absl::Time last_ack_time_ ABSL_GUARDED_BY(state_mu_) = absl::UnixEpoch();
  absl::Time retry_at_ ABSL_GUARDED_BY(state_mu_) = absl::InfinitePast();
  absl::Duration retry_delay_ ABSL_GUARDED_BY(state_mu_);
  uint64_t commands_executed_ ABSL_GUARDED_BY(state_mu_) = 0;
  uint64_t failed_batches_ ABSL_GUARDED_BY(state_mu_) = 0;
  uint64_t stale_commands_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool last_batch_failed_ ABSL_GUARDED_BY(state_mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(state_mu_);

  // Touched only by Start and Stop, which the owner does not race.
  std::thread manager_;
  std::thread processor_;
  std::thread reporter_;
};

void SchedulerImpl::Start() {
  if (manager_.joinable()) return;
  manager_ = std::thread([this] { ManageLoop(); });
  processor_ = std::thread([this] { ProcessLoop(); });
  reporter_ = std::thread([this] { ReportLoop(); });
}

void SchedulerImpl::Stop() {
  {
    absl::MutexLock lock(&inbox_mu_);
    inbox_stopped_ = true;
    inbox_cv_.SignalAll();
  }
  {
    absl::MutexLock lock(&state_mu_);
    stopped_ = true;
    work_cv_.SignalAll();
    acked_cv_.SignalAll();
    report_cv_.SignalAll();
  }
  if (manager_.joinable()) manager_.join();
  if (processor_.joinable()) processor_.join();
  if (reporter_.joinable()) reporter_.join();
}

void SchedulerImpl::Enqueue(ChangeEvent event) {
  absl::MutexLock lock(&inbox_mu_);
  if (event.seq() <= highest_enqueued_) return;  // replayed twice, or acked before start
  highest_enqueued_ = event.seq();
  inbox_.push_back(std::move(event));
  inbox_cv_.Signal();
}

void SchedulerImpl::ManageLoop() {
  while (true) {
    absl::MutexLock inbox_lock(&inbox_mu_);
    while (inbox_.empty() && !inbox_stopped_) inbox_cv_.Wait(&inbox_mu_);
    if (inbox_stopped_) return;  // what is left stays in the journal
    std::deque<ChangeEvent> events;
    events.swap(inbox_);
    absl::MutexLock state_lock(&state_mu_);
    const absl::Time now = absl::Now();
    for (const ChangeEvent& event : events) pending_.Add(event, now);
    RefreshAckedLocked(now);
    work_cv_.Signal();
  }
}

void SchedulerImpl::RefreshAckedLocked(absl::Time now) {
  const uint64_t acked = pending_.acked_seq();
  if (acked <= acked_) return;
  acked_ = acked;
  last_ack_time_ = now;
  acked_cv_.SignalAll();
  report_cv_.Signal();  // the reporting thread hands it on
}

bool SchedulerImpl::NextWork(Batch* batch) {
  absl::MutexLock lock(&state_mu_);
  while (!stopped_) {
    const absl::Time now = absl::Now();
    absl::Time wake = retry_at_;
    if (now >= retry_at_) {
      // Flush only once the managing unit has classified up to the target,
      // so a file is not split by events still in the inbox.
      const uint64_t flush = pending_.highest_seq() >= flush_target_ ? flush_target_ : 0;
      *batch = pending_.TakeBatch(now, policy_, flush);
      if (!batch->empty()) return true;
      wake = pending_.NextReadyTime(policy_);
    }
    work_cv_.WaitWithDeadline(&state_mu_, wake);
  }
  return false;
}

void SchedulerImpl::ReportLoop() {
  absl::MutexLock lock(&state_mu_);
  while (true) {
    while (acked_ <= reported_acked_ && !stopped_) report_cv_.Wait(&state_mu_);
    if (stopped_) return;
    // Only the latest watermark: reports that pile up during a trim merge.
    const uint64_t report = reported_acked_ = acked_;
    state_mu_.Unlock();
    if (on_acked_) on_acked_(report);
    state_mu_.Lock();
    delivered_acked_ = report;
    acked_cv_.SignalAll();
  }
}

void SchedulerImpl::ProcessLoop() {
  while (true) {
    Batch batch;
    if (!NextWork(&batch)) return;
    std::vector<size_t> stale;
    const absl::Status status = executor_->Execute(batch.commands, &stale);
    Settle(std::move(batch), status, stale);
  }
}

void SchedulerImpl::Settle(Batch batch, const absl::Status& status,
                           const std::vector<size_t>& stale) {
  absl::MutexLock lock(&state_mu_);
  const absl::Time now = absl::Now();
  if (status.ok()) {
    commands_executed_ += batch.commands.size() - stale.size();
    stale_commands_ += stale.size();
    pending_.Complete(std::move(batch), stale, now, policy_);
    last_batch_failed_ = false;
    retry_delay_ = policy_.retry_initial;
    retry_at_ = absl::InfinitePast();
  } else {
    pending_.Fail(std::move(batch));
    failed_batches_++;
    last_batch_failed_ = true;
    last_error_ = status.ToString();
    retry_at_ = now + retry_delay_;
    retry_delay_ = std::min(retry_delay_ * 2, policy_.retry_max);
  }
  RefreshAckedLocked(now);
}

absl::Status SchedulerImpl::FlushAndWait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  uint64_t target = 0;
  {
    absl::MutexLock lock(&inbox_mu_);
    target = highest_enqueued_;
  }
  absl::MutexLock lock(&state_mu_);
  flush_target_ = std::max(flush_target_, target);
  work_cv_.Signal();
  // Waits for on_acked too, so the caller may rely on the journal being trimmed.
  while (delivered_acked_ < target && !stopped_) {
    if (acked_cv_.WaitWithDeadline(&state_mu_, deadline) && absl::Now() >= deadline) break;
  }
  if (delivered_acked_ >= target) return absl::OkStatus();
  if (stopped_) return absl::FailedPreconditionError("scheduler stopped before the flush finished");
  return absl::DeadlineExceededError(
      absl::StrCat("FlushAndWait: after ", absl::FormatDuration(timeout),
                   " the server has acknowledged up to seq ", acked_, " of ", target, "; ",
                   pending_.outstanding(), " changes pending",
                   last_error_.empty() ? "" : "; last executor error: ", last_error_));
}

void SchedulerImpl::SetOpenWriters(const OpenWritersView* view) {
  absl::MutexLock lock(&state_mu_);
  pending_.SetOpenWriters(view);
  work_cv_.Signal();
}

void SchedulerImpl::WriterClosed(uint64_t) {
  // The processing thread re-checks readiness; the file's changes go out
  // once quiet. (A close is rare next to writes: waking for every one is fine.)
  absl::MutexLock lock(&state_mu_);
  work_cv_.Signal();
}

SchedulerStats SchedulerImpl::stats() const {
  SchedulerStats stats;
  absl::MutexLock inbox_lock(&inbox_mu_);
  absl::MutexLock state_lock(&state_mu_);
  stats.pending_events = inbox_.size() + pending_.outstanding();
  stats.pending_bytes = pending_.dirty_bytes();
  stats.acked_seq = acked_;
  stats.last_ack_time_ns = absl::ToUnixNanos(last_ack_time_);
  stats.commands_executed = commands_executed_;
  stats.failed_batches = failed_batches_;
  stats.last_batch_failed = last_batch_failed_;
  stats.last_error = last_error_;
  stats.stale_commands = stale_commands_;
  stats.dropped_stale = pending_.dropped_stale();
  return stats;
}

}  // namespace

std::unique_ptr<Scheduler> Scheduler::Create(SchedulerPolicy policy, CommandExecutor* executor,
                                             std::function<void(uint64_t)> on_acked,
                                             uint64_t start_seq) {
  return std::make_unique<SchedulerImpl>(policy, executor, std::move(on_acked), start_seq);
}

}  // namespace replifs::scheduler
