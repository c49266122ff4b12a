#include "replicator/scheduler/scheduler.h"

#include <atomic>
#include <deque>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "replicator/scheduler/test_events.h"

namespace replifs::scheduler {
namespace {

using replifs::v1::BackupCommand;
using namespace replifs::scheduler::testing;  // NOLINT: event builders

// Records every batch; answers with scripted results (OK when the script is empty).
class FakeExecutor : public CommandExecutor {
 public:
  struct Result {
    absl::Status status;
    std::vector<size_t> stale;
  };

  absl::Status Execute(const std::vector<BackupCommand>& batch,
                       std::vector<size_t>* stale) override {
    absl::MutexLock lock(&mu_);
    batches_.push_back(batch);
    times_.push_back(absl::Now());
    if (always_fail_) return absl::UnavailableError("disk on fire");
    if (script_.empty()) return absl::OkStatus();
    Result result = std::move(script_.front());
    script_.pop_front();
    *stale = result.stale;
    return result.status;
  }

  void Script(Result result) {
    absl::MutexLock lock(&mu_);
    script_.push_back(std::move(result));
  }
  void AlwaysFail(bool fail) {
    absl::MutexLock lock(&mu_);
    always_fail_ = fail;
  }
  bool WaitForBatches(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return batches_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Without the directory-mtime touches (ATTRIBUTES, no inode) that every
  // namespace event adds for its parent; PendingChangesTest covers those.
  std::vector<std::vector<BackupCommand>> batches() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::vector<BackupCommand>> out;
    for (const auto& batch : batches_) {
      std::vector<BackupCommand> kept;
      for (const auto& command : batch) {
        if (command.kind() != BackupCommand::ATTRIBUTES || command.inode() != 0) kept.push_back(command);
      }
      if (!kept.empty()) out.push_back(std::move(kept));
    }
    return out;
  }
  std::vector<absl::Time> times() const {
    absl::MutexLock lock(&mu_);
    return times_;
  }
  // Every command of every successful-or-not batch, in send order.
  std::vector<BackupCommand> AllCommands() const {
    std::vector<BackupCommand> all;
    for (const auto& batch : batches()) all.insert(all.end(), batch.begin(), batch.end());
    return all;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::vector<BackupCommand>> batches_;
  std::vector<absl::Time> times_;
  std::deque<Result> script_;
  bool always_fail_ = false;
};

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() {
    policy_.quiet_interval = absl::Seconds(30);  // only flushes send files, unless a test says
    policy_.max_delay = absl::Seconds(60);
    policy_.retry_initial = absl::Milliseconds(5);
    policy_.retry_max = absl::Milliseconds(20);
  }
  ~SchedulerTest() override {
    if (scheduler_) scheduler_->Stop();
  }

  void StartScheduler(uint64_t start_seq = 0) {
    CreateScheduler(start_seq);
    scheduler_->Start();
  }
  void CreateScheduler(uint64_t start_seq = 0) {
    scheduler_ = Scheduler::Create(
        policy_, &executor_,
        [this](uint64_t seq) {
          absl::MutexLock lock(&acked_mu_);
          acked_calls_.push_back({seq, executor_.batches().size()});
        },
        start_seq);
  }

  std::vector<uint64_t> AckedCalls() {
    absl::MutexLock lock(&acked_mu_);
    std::vector<uint64_t> seqs;
    for (const auto& [seq, batches] : acked_calls_) seqs.push_back(seq);
    return seqs;
  }

  uint64_t LastAcked() {
    const std::vector<uint64_t> calls = AckedCalls();
    return calls.empty() ? 0 : calls.back();
  }

  static std::vector<BackupCommand> OfKind(const std::vector<BackupCommand>& commands,
                                           BackupCommand::Kind kind) {
    std::vector<BackupCommand> out;
    for (const BackupCommand& c : commands) {
      if (c.kind() == kind) out.push_back(c);
    }
    return out;
  }

  SchedulerPolicy policy_;
  FakeExecutor executor_;
  absl::Mutex acked_mu_;
  std::vector<std::pair<uint64_t, size_t>> acked_calls_;  // (seq, batches seen by then)
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, ThousandWritesCoalesceIntoOneContentCommand) {
  StartScheduler();
  for (uint64_t i = 0; i < 1000; ++i) {
    // Sequential 100-byte writes, every tenth also rewriting its predecessor.
    const uint64_t offset = i % 10 == 9 ? (i - 1) * 100 : i * 100;
    scheduler_->Enqueue(Write(i + 1, "big", 42, offset, i % 10 == 9 ? 200 : 100));
  }
  EXPECT_EQ(scheduler_->stats().pending_events, 1000u);
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const std::vector<BackupCommand> content =
      OfKind(executor_.AllCommands(), BackupCommand::CONTENT);
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0].path(), "big");
  EXPECT_EQ(content[0].inode(), 42u);
  ASSERT_EQ(content[0].dirty_size(), 1);
  EXPECT_EQ(content[0].dirty(0).offset(), 0u);
  EXPECT_EQ(content[0].dirty(0).length(), 100000u);
  EXPECT_EQ(content[0].seqs_size(), 1000);
  EXPECT_EQ(content[0].time_ns(), 1000 * 1000);
  const SchedulerStats stats = scheduler_->stats();
  EXPECT_EQ(stats.acked_seq, 1000u);
  EXPECT_EQ(stats.pending_events, 0u);
  EXPECT_EQ(stats.pending_bytes, 0u);
  EXPECT_GT(stats.last_ack_time_ns, 0);
}

// The journal's trim (on_acked: two fsyncs) runs beside the next batch,
// never before it: with quiet interval 0 it sat between every two batches.
TEST_F(SchedulerTest, SlowAcknowledgementDoesNotDelayTheNextBatch) {
  policy_.quiet_interval = absl::ZeroDuration();
  absl::Notification first_ack_started;
  std::atomic<int> acks{0};
  scheduler_ = Scheduler::Create(
      policy_, &executor_,
      [&](uint64_t) {
        if (acks++ == 0) {
          first_ack_started.Notify();
          absl::SleepFor(absl::Milliseconds(800));  // a trim on a slow disk
        }
      },
      0);
  scheduler_->Start();
  scheduler_->Enqueue(Write(1, "a", 11, 0, 10));
  ASSERT_TRUE(first_ack_started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const absl::Time enqueued = absl::Now();
  scheduler_->Enqueue(Write(2, "b", 12, 0, 10));
  ASSERT_TRUE(executor_.WaitForBatches(2));
  const absl::Duration waited = executor_.times()[1] - enqueued;
  EXPECT_LT(waited, absl::Milliseconds(400)) << "the second batch waited for the first one's ack";
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  EXPECT_GE(acks.load(), 2);
}

TEST_F(SchedulerTest, NamespaceOrderKeptForMoveMkdirCreate) {
  // mv d e; mkdir d; echo x > d/f
  StartScheduler();
  scheduler_->Enqueue(Rename(1, "d", "e"));
  scheduler_->Enqueue(Event(2, ChangeEvent::MKDIR, "d", 20));
  scheduler_->Enqueue(Event(3, ChangeEvent::CREATE, "d/f", 21));
  scheduler_->Enqueue(Write(4, "d/f", 21, 0, 2));
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const std::vector<BackupCommand> all = executor_.AllCommands();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].event().op(), ChangeEvent::RENAME);
  EXPECT_EQ(all[1].event().op(), ChangeEvent::MKDIR);
  EXPECT_EQ(all[2].event().op(), ChangeEvent::CREATE);
  EXPECT_EQ(all[3].kind(), BackupCommand::CONTENT);
  EXPECT_EQ(all[3].path(), "d/f") << "written after the rename: stays d/f";
  EXPECT_EQ(all[0].seqs(0), 1u);
  EXPECT_EQ(LastAcked(), 4u);
}

TEST_F(SchedulerTest, ContentFollowsDirectoryRename) {
  // Enqueued before Start so the rename is seen before the file is sent
  // (sending d/f first and then the rename would be correct too).
  CreateScheduler();
  scheduler_->Enqueue(Write(1, "d/f", 7, 0, 10));
  scheduler_->Enqueue(Rename(2, "d", "e"));
  scheduler_->Start();
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const std::vector<BackupCommand> all = executor_.AllCommands();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].event().op(), ChangeEvent::RENAME);
  EXPECT_EQ(all[1].kind(), BackupCommand::CONTENT);
  EXPECT_EQ(all[1].path(), "e/f");
}

TEST_F(SchedulerTest, QuietIntervalRespected) {
  policy_.quiet_interval = absl::Milliseconds(100);
  StartScheduler();
  const absl::Time start = absl::Now();
  scheduler_->Enqueue(Write(1, "f", 1, 0, 10));
  ASSERT_TRUE(executor_.WaitForBatches(1));
  // Lower bounds only: never sent early; late is fine on a busy box.
  EXPECT_GE(executor_.times()[0] - start, absl::Milliseconds(100));
  EXPECT_EQ(executor_.batches()[0][0].kind(), BackupCommand::CONTENT);
}

TEST_F(SchedulerTest, MaxDelayForcesOutAFileWrittenContinuously) {
  policy_.quiet_interval = absl::Milliseconds(300);
  policy_.max_delay = absl::Milliseconds(400);
  StartScheduler();
  const absl::Time start = absl::Now();
  std::atomic<bool> sent{false};
  uint64_t seq = 0;
  // Keep writing well past max_delay; each write resets the quiet clock.
  while (!sent && absl::Now() - start < absl::Seconds(20)) {
    ++seq;
    scheduler_->Enqueue(Write(seq, "log", 3, seq * 10, 10));
    absl::SleepFor(absl::Milliseconds(5));
    sent = !executor_.batches().empty();
  }
  ASSERT_TRUE(sent.load()) << "never sent while being written";
  EXPECT_GE(executor_.times()[0] - start, absl::Milliseconds(300));
  const BackupCommand command = executor_.batches()[0][0];
  EXPECT_EQ(command.path(), "log");
  EXPECT_GT(command.seqs_size(), 1);
}

// fusefs's view in the daemon: a settable set of open inodes.
class SettableOpenWriters : public OpenWritersView {
 public:
  bool IsOpenForWriting(uint64_t inode) const override {
    absl::MutexLock lock(&mu_);
    return open_.count(inode) > 0;
  }
  void Set(uint64_t inode, bool open) {
    absl::MutexLock lock(&mu_);
    if (open) {
      open_.insert(inode);
    } else {
      open_.erase(inode);
    }
  }

 private:
  mutable absl::Mutex mu_;
  std::set<uint64_t> open_;
};

TEST_F(SchedulerTest, FileOpenForWritingIsSentOnceAtItsClose) {
  policy_.quiet_interval = absl::Milliseconds(50);
  policy_.max_delay = absl::Seconds(30);
  SettableOpenWriters writers;
  writers.Set(7, true);
  StartScheduler();
  scheduler_->SetOpenWriters(&writers);
  // Written slowly: gaps far longer than the quiet interval.
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    scheduler_->Enqueue(Write(seq, "doc.tmp", 7, (seq - 1) * 10, 10));
    absl::SleepFor(absl::Milliseconds(150));
  }
  EXPECT_TRUE(executor_.batches().empty()) << "sent while still open for writing";
  const absl::Time closed = absl::Now();
  writers.Set(7, false);
  scheduler_->WriterClosed(7);
  ASSERT_TRUE(executor_.WaitForBatches(1));
  // Woken by the close, not by the 30 s max delay.
  EXPECT_LT(executor_.times()[0] - closed, absl::Seconds(10));
  ASSERT_EQ(executor_.batches().size(), 1u);
  ASSERT_EQ(executor_.batches()[0].size(), 1u);
  EXPECT_EQ(executor_.batches()[0][0].seqs_size(), 5) << "one command for every write";
  scheduler_->SetOpenWriters(nullptr);
}

TEST_F(SchedulerTest, FileNeverClosedIsSentAtMaxDelay) {
  policy_.quiet_interval = absl::Milliseconds(50);
  policy_.max_delay = absl::Milliseconds(600);
  SettableOpenWriters writers;
  writers.Set(7, true);
  StartScheduler();
  scheduler_->SetOpenWriters(&writers);
  const absl::Time start = absl::Now();
  scheduler_->Enqueue(Write(1, "app.log", 7, 0, 10));
  ASSERT_TRUE(executor_.WaitForBatches(1));
  EXPECT_GE(executor_.times()[0] - start, absl::Milliseconds(600));
  scheduler_->SetOpenWriters(nullptr);
}

TEST_F(SchedulerTest, FailedBatchIsRetriedInOrderAndHoldsTheWatermark) {
  executor_.Script({absl::UnavailableError("server down"), {}});
  executor_.Script({absl::UnavailableError("server still down"), {}});
  StartScheduler();
  scheduler_->Enqueue(Event(1, ChangeEvent::CREATE, "a", 1));
  scheduler_->Enqueue(Write(2, "a", 1, 0, 5));
  scheduler_->Enqueue(Event(3, ChangeEvent::MKDIR, "b", 2));
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const auto batches = executor_.batches();
  ASSERT_GE(batches.size(), 3u);
  // The last batch succeeded; together the attempts kept the namespace order.
  std::vector<std::string> last;
  for (size_t b = 0; b < batches.size(); ++b) {
    std::vector<std::string> order;
    for (const BackupCommand& c : batches[b]) {
      order.push_back(absl::StrCat(c.kind(), ":", c.path()));
    }
    if (b > 0 && batches[b].size() == batches[0].size()) {
      EXPECT_EQ(order, last);
    }
    last = order;
  }
  const SchedulerStats stats = scheduler_->stats();
  EXPECT_EQ(stats.failed_batches, 2u);
  EXPECT_FALSE(stats.last_batch_failed);
  EXPECT_TRUE(absl::StrContains(stats.last_error, "server still down"));
  EXPECT_EQ(stats.acked_seq, 3u);
  {
    absl::MutexLock lock(&acked_mu_);
    ASSERT_FALSE(acked_calls_.empty());
    EXPECT_GE(acked_calls_.front().second, 3u) << "acked before the successful batch";
  }
  // Everything arrived: two namespace commands and the content.
  const auto commands = executor_.AllCommands();
  EXPECT_EQ(OfKind({commands.end() - 3, commands.end()}, BackupCommand::CONTENT).size(), 1u);
}

TEST_F(SchedulerTest, FlushTimeoutNamesTheLastExecutorError) {
  executor_.AlwaysFail(true);
  StartScheduler();
  scheduler_->Enqueue(Event(1, ChangeEvent::MKDIR, "d"));
  const absl::Status status = scheduler_->FlushAndWait(absl::Milliseconds(200));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(absl::StrContains(status.message(), "disk on fire")) << status;
  EXPECT_EQ(scheduler_->stats().acked_seq, 0u);
  EXPECT_TRUE(AckedCalls().empty());
  executor_.AlwaysFail(false);
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  EXPECT_EQ(LastAcked(), 1u);
}

TEST_F(SchedulerTest, StaleCommandIsSentAgainAfterRename) {
  policy_.quiet_interval = absl::Milliseconds(20);
  executor_.Script({absl::OkStatus(), {0}});  // the first CONTENT: path no longer names inode 7
  StartScheduler();
  scheduler_->Enqueue(Write(1, "a/f", 7, 0, 10));
  ASSERT_TRUE(executor_.WaitForBatches(1));
  EXPECT_EQ(scheduler_->stats().acked_seq, 0u);
  scheduler_->Enqueue(Rename(2, "a", "b"));
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const std::vector<BackupCommand> content =
      OfKind(executor_.AllCommands(), BackupCommand::CONTENT);
  ASSERT_GE(content.size(), 2u);
  EXPECT_EQ(content.front().path(), "a/f");
  EXPECT_EQ(content.back().path(), "b/f");
  EXPECT_EQ(content.back().seqs(0), 1u);
  EXPECT_EQ(scheduler_->stats().stale_commands, 1u);
  EXPECT_EQ(scheduler_->stats().acked_seq, 2u);
}

TEST_F(SchedulerTest, WatermarkNeverPassesAnOutstandingSeq) {
  StartScheduler();
  scheduler_->Enqueue(Write(1, "f", 1, 0, 10));            // waits for quiet (30 s)
  scheduler_->Enqueue(Event(2, ChangeEvent::MKDIR, "d"));  // sent at once
  ASSERT_TRUE(executor_.WaitForBatches(1));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(executor_.batches()[0].size(), 1u);
  EXPECT_EQ(scheduler_->stats().acked_seq, 0u);
  // seq 1 (the write) and seq 2 (held by the root directory's mtime touch).
  EXPECT_EQ(scheduler_->stats().pending_events, 2u);
  EXPECT_EQ(scheduler_->stats().pending_bytes, 10u);
  EXPECT_TRUE(AckedCalls().empty());
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  EXPECT_EQ(LastAcked(), 2u);
}

TEST_F(SchedulerTest, EventsUpToStartSeqAreIgnored) {
  StartScheduler(/*start_seq=*/10);
  EXPECT_EQ(scheduler_->stats().acked_seq, 10u);
  scheduler_->Enqueue(Event(5, ChangeEvent::MKDIR, "old"));
  scheduler_->Enqueue(Event(11, ChangeEvent::MKDIR, "new"));
  scheduler_->Enqueue(Event(11, ChangeEvent::MKDIR, "dup"));
  ASSERT_TRUE(scheduler_->FlushAndWait(absl::Seconds(10)).ok());
  const std::vector<BackupCommand> all = executor_.AllCommands();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].path(), "new");
  EXPECT_EQ(scheduler_->stats().acked_seq, 11u);
}

TEST_F(SchedulerTest, StopIsPromptWithWorkPending) {
  StartScheduler();
  scheduler_->Enqueue(Write(1, "f", 1, 0, 10));  // quiet interval is 30 s
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time start = absl::Now();
  scheduler_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(scheduler_->FlushAndWait(absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace replifs::scheduler
