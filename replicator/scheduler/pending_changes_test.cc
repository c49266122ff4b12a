#include "replicator/scheduler/pending_changes.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "gtest/gtest.h"
#include "replicator/scheduler/test_events.h"

namespace replifs::scheduler {
namespace {

using replifs::v1::BackupCommand;
using namespace replifs::scheduler::testing;  // NOLINT: event builders

class PendingChangesTest : public ::testing::Test {
 protected:
  PendingChangesTest() {
    policy_.quiet_interval = absl::Seconds(1);
    policy_.max_delay = absl::Seconds(10);
  }
  // Everything, ready or not (a flush covering all seqs), without the
  // directory-mtime touches (ATTRIBUTES, no inode) tested on their own below.
  Batch TakeAll() {
    Batch batch = pending_.TakeBatch(now_, policy_, UINT64_MAX);
    std::erase_if(batch.commands, IsDirectoryTouch);
    return batch;
  }
  static bool IsDirectoryTouch(const BackupCommand& command) {
    return command.kind() == BackupCommand::ATTRIBUTES && command.inode() == 0;
  }
  std::vector<std::string> TouchedDirectories(const Batch& batch) {
    std::vector<std::string> paths;
    for (const auto& command : batch.commands) {
      if (IsDirectoryTouch(command)) paths.push_back(command.path());
    }
    return paths;
  }

  SchedulerPolicy policy_;
  PendingChanges pending_{0};
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

std::vector<uint64_t> Seqs(const BackupCommand& command) {
  return {command.seqs().begin(), command.seqs().end()};
}

TEST_F(PendingChangesTest, NamespaceEventsTouchTheirParentDirectories) {
  pending_.Add(Event(1, ChangeEvent::MKDIR, "a"), now_);
  pending_.Add(Event(2, ChangeEvent::CREATE, "a/f", 5), now_);
  pending_.Add(Rename(3, "a", "b"), now_);  // the touch of "a" follows the directory
  Batch batch = pending_.TakeBatch(now_, policy_, UINT64_MAX);
  EXPECT_EQ(TouchedDirectories(batch), (std::vector<std::string>{"", "b"}));
  // Done only when both the namespace commands and the touches are.
  EXPECT_EQ(pending_.acked_seq(), 0u);
  pending_.Complete(std::move(batch), {}, now_, policy_);
  EXPECT_EQ(pending_.acked_seq(), 3u);
}

TEST_F(PendingChangesTest, NamespaceEventsNamingTheRootAreDropped) {
  // Seen from a capture layer that could not name a path: sent on, the
  // server refused the whole batch forever ("remove ''").
  pending_.Add(Event(1, ChangeEvent::UNLINK, ""), now_);
  pending_.Add(Rename(2, "", "x"), now_);
  pending_.Add(Event(3, ChangeEvent::CREATE, "kept", 7), now_);
  Batch batch = pending_.TakeBatch(now_, policy_, UINT64_MAX);
  ASSERT_EQ(batch.namespace_count, 1u);
  EXPECT_EQ(batch.commands[0].path(), "kept");
  pending_.Complete(std::move(batch), {}, now_, policy_);
  EXPECT_EQ(pending_.acked_seq(), 3u) << "dropped events must not hold the watermark back";
}

TEST_F(PendingChangesTest, RmdirDropsTheTouchOfTheRemovedDirectory) {
  pending_.Add(Event(1, ChangeEvent::CREATE, "d/f", 5), now_);
  pending_.Add(Event(2, ChangeEvent::UNLINK, "d/f", 5), now_);
  pending_.Add(Event(3, ChangeEvent::RMDIR, "d"), now_);
  Batch batch = pending_.TakeBatch(now_, policy_, UINT64_MAX);
  EXPECT_EQ(TouchedDirectories(batch), (std::vector<std::string>{""}));
  pending_.Complete(std::move(batch), {}, now_, policy_);
  EXPECT_EQ(pending_.acked_seq(), 3u);
}

TEST_F(PendingChangesTest, RescanOfAnExistingObjectFollowsLaterRenames) {
  // The initial sync names tree/a.txt (inode 5) and the directory (inode 4);
  // the user renames the tree before the client gets to them.
  ChangeEvent file = Event(1, ChangeEvent::RESCAN, "tree/a.txt", 5);
  file.mutable_attributes()->set_mode(S_IFREG | 0644);
  file.mutable_attributes()->set_size(100);
  ChangeEvent dir = Event(2, ChangeEvent::RESCAN, "tree", 4);
  dir.mutable_attributes()->set_mode(S_IFDIR | 0755);
  pending_.Add(file, now_);
  pending_.Add(dir, now_);
  pending_.Add(Rename(3, "tree", "renamed"), now_);
  pending_.Add(Event(4, ChangeEvent::RESCAN, "gone"), now_);  // no inode: only the server has it
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 4u);
  EXPECT_EQ(batch.commands[0].event().op(), ChangeEvent::RENAME);
  EXPECT_EQ(batch.commands[1].event().op(), ChangeEvent::RESCAN);
  EXPECT_EQ(batch.commands[1].path(), "gone");
  EXPECT_EQ(batch.commands[2].kind(), BackupCommand::CONTENT);
  EXPECT_EQ(batch.commands[2].path(), "renamed/a.txt");
  EXPECT_EQ(batch.commands[3].kind(), BackupCommand::ATTRIBUTES);
  EXPECT_EQ(batch.commands[3].path(), "renamed");
}

TEST_F(PendingChangesTest, RescanWithoutAttributesRereadsTheWholeFile) {
  // The fanotify backstop and a mapping flush name a file but not its mode:
  // a store through a shared mapping must still be read, not taken for an
  // attribute change (that left zeros in the backup where the stores were).
  pending_.Add(Event(1, ChangeEvent::TRUNCATE, "m", 7), now_);
  pending_.Add(Event(2, ChangeEvent::RESCAN, "m", 7), now_);
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 1u);
  const BackupCommand& command = batch.commands[0];
  EXPECT_EQ(command.kind(), BackupCommand::CONTENT);
  ASSERT_GE(command.dirty_size(), 1);
  EXPECT_EQ(command.dirty(0).offset(), 0u);
  EXPECT_GE(command.dirty(0).length(), UINT64_MAX / 4);  // recut whole, no map trusted
}

TEST_F(PendingChangesTest, RenameExchangeSwapsPaths) {
  pending_.Add(Write(1, "a/f", 1, 0, 1), now_);
  pending_.Add(Write(2, "b/g", 2, 0, 1), now_);
  pending_.Add(Rename(3, "a", "b", /*RENAME_EXCHANGE*/ 2), now_);
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 3u);
  EXPECT_EQ(batch.commands[0].kind(), BackupCommand::NAMESPACE);
  EXPECT_EQ(batch.commands[1].path(), "b/f");
  EXPECT_EQ(batch.commands[2].path(), "a/g");
}

TEST_F(PendingChangesTest, UnlinkOfLastLinkDropsDataAndCoversItsSeqs) {
  pending_.Add(Write(1, "f", 5, 0, 100), now_);
  pending_.Add(Event(2, ChangeEvent::SETATTR, "g", 6), now_);
  pending_.Add(Event(3, ChangeEvent::UNLINK, "f", 5), now_);  // nlink 0
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 2u);
  EXPECT_EQ(batch.commands[0].event().op(), ChangeEvent::UNLINK);
  EXPECT_EQ(Seqs(batch.commands[0]), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(batch.commands[1].kind(), BackupCommand::ATTRIBUTES);
  EXPECT_EQ(batch.commands[1].path(), "g");
}

TEST_F(PendingChangesTest, UnlinkWithOtherLinksKeepsData) {
  pending_.Add(Write(1, "f", 5, 0, 100), now_);
  ChangeEvent unlink = Event(2, ChangeEvent::UNLINK, "f", 5);
  unlink.mutable_attributes()->set_nlink(1);
  pending_.Add(unlink, now_);
  EXPECT_EQ(TakeAll().commands.size(), 2u);
}

TEST_F(PendingChangesTest, RmdirDropsFilesBelow) {
  pending_.Add(Write(1, "d/x/f", 5, 0, 1), now_);
  pending_.Add(Write(2, "dd/f", 6, 0, 1), now_);
  pending_.Add(Event(3, ChangeEvent::RMDIR, "d"), now_);
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 2u);
  EXPECT_EQ(Seqs(batch.commands[0]), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(batch.commands[1].path(), "dd/f");
}

TEST_F(PendingChangesTest, RenameOverATargetDropsTheReplacedFile) {
  pending_.Add(Write(1, "new", 7, 0, 10), now_);  // the file about to be replaced
  pending_.Add(Write(2, "tmp", 8, 0, 10), now_);  // write-new-then-rename
  pending_.Add(Rename(3, "tmp", "new", 0, 8), now_);
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 2u);
  EXPECT_EQ(Seqs(batch.commands[0]), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(batch.commands[1].path(), "new");
  EXPECT_EQ(batch.commands[1].inode(), 8u);
}

TEST_F(PendingChangesTest, PathKeyedFilesFollowRenames) {
  pending_.Add(Write(1, "a", 0, 0, 10), now_);
  pending_.Add(Rename(2, "a", "b"), now_);
  pending_.Add(Write(3, "b", 0, 10, 10), now_);  // same file, new name
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 2u);
  EXPECT_EQ(batch.commands[1].path(), "b");
  EXPECT_EQ(Seqs(batch.commands[1]), (std::vector<uint64_t>{1, 3}));
  ASSERT_EQ(batch.commands[1].dirty_size(), 1);
  EXPECT_EQ(batch.commands[1].dirty(0).length(), 20u);
}

TEST_F(PendingChangesTest, TruncateClipsRangesAndKeepsSmallestSize) {
  pending_.Add(Write(1, "f", 1, 0, 100), now_);
  ChangeEvent cut = Event(2, ChangeEvent::TRUNCATE, "f", 1);
  cut.set_new_size(50);
  pending_.Add(cut, now_);
  cut.set_seq(3);
  cut.set_time_ns(3000);
  cut.set_new_size(80);
  pending_.Add(cut, now_);
  const Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 1u);
  const BackupCommand& command = batch.commands[0];
  EXPECT_EQ(command.kind(), BackupCommand::CONTENT);
  EXPECT_TRUE(command.was_truncated());
  EXPECT_EQ(command.truncated_to(), 50u);
  ASSERT_EQ(command.dirty_size(), 1);
  EXPECT_EQ(command.dirty(0).length(), 50u);
  EXPECT_EQ(command.time_ns(), 3000);
}

TEST_F(PendingChangesTest, FailKeepsOrderAndMergesNewerChanges) {
  pending_.Add(Event(1, ChangeEvent::MKDIR, "d"), now_);
  pending_.Add(Write(2, "d/f", 9, 0, 10), now_);
  pending_.Add(Event(3, ChangeEvent::CREATE, "d/g"), now_);
  Batch batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 3u);
  pending_.Add(Write(4, "d/f", 9, 10, 10), now_);  // while in flight
  pending_.Add(Event(5, ChangeEvent::CREATE, "d/h"), now_);
  EXPECT_EQ(pending_.acked_seq(), 0u);
  pending_.Fail(std::move(batch));
  EXPECT_EQ(pending_.acked_seq(), 0u);
  batch = TakeAll();
  ASSERT_EQ(batch.commands.size(), 4u);
  EXPECT_EQ(batch.commands[0].path(), "d");
  EXPECT_EQ(batch.commands[1].path(), "d/g");
  EXPECT_EQ(batch.commands[2].path(), "d/h");
  EXPECT_EQ(Seqs(batch.commands[3]), (std::vector<uint64_t>{2, 4}));
  EXPECT_EQ(batch.commands[3].dirty(0).length(), 20u);
  pending_.Complete(std::move(batch), {}, now_, policy_);
  EXPECT_EQ(pending_.acked_seq(), 5u);
  EXPECT_EQ(pending_.outstanding(), 0u);
}

// A directory touch keyed by path that comes back from a failed or stale
// batch keeps its own key: requeued under the root's ("p:") it merged into
// the root's touch and "d"'s mtime never went out (issue 6, server kills).
TEST_F(PendingChangesTest, RequeuedDirectoryTouchKeepsItsOwnPath) {
  for (const bool stale : {false, true}) {
    SCOPED_TRACE(stale ? "stale" : "failed");
    PendingChanges pending(0);
    pending.Add(Event(1, ChangeEvent::MKDIR, "d"), now_);     // touches ""
    pending.Add(Event(2, ChangeEvent::CREATE, "d/g", 5), now_);  // touches "d"
    Batch batch = pending.TakeBatch(now_, policy_, UINT64_MAX);
    std::vector<size_t> d_touch;
    for (size_t i = 0; i < batch.commands.size(); ++i) {
      if (IsDirectoryTouch(batch.commands[i]) && batch.commands[i].path() == "d") d_touch.push_back(i);
    }
    ASSERT_EQ(d_touch.size(), 1u);
    if (stale) {
      pending.Complete(std::move(batch), d_touch, now_, policy_);
    } else {
      pending.Fail(std::move(batch));
    }
    pending.Add(Event(3, ChangeEvent::CREATE, "h", 6), now_);  // touches "" again
    batch = pending.TakeBatch(now_ + absl::Seconds(2), policy_, UINT64_MAX);
    std::vector<std::string> touched = TouchedDirectories(batch);
    std::sort(touched.begin(), touched.end());
    EXPECT_EQ(touched, (std::vector<std::string>{"", "d"}));
    pending.Complete(std::move(batch), {}, now_, policy_);
    EXPECT_EQ(pending.acked_seq(), 3u);
  }
}

TEST_F(PendingChangesTest, MaxBatchHoldsFilesBackUntilNamespaceDrained) {
  policy_.max_batch = 2;
  pending_.Add(Write(1, "f", 9, 0, 10), now_);
  for (uint64_t seq = 2; seq <= 4; ++seq) pending_.Add(Event(seq, ChangeEvent::MKDIR, "d"), now_);
  Batch first = TakeAll();
  EXPECT_EQ(first.commands.size(), 2u);
  EXPECT_EQ(first.namespace_count, 2u);
  pending_.Complete(std::move(first), {}, now_, policy_);
  Batch second = TakeAll();
  ASSERT_EQ(second.commands.size(), 2u);
  EXPECT_EQ(second.commands[1].kind(), BackupCommand::CONTENT);
}

TEST_F(PendingChangesTest, StaleIsGivenUpAfterManyRoundTrips) {
  pending_.Add(Write(1, "f", 9, 0, 10), now_);
  for (int trip = 0; trip <= kMaxStaleRoundTrips; ++trip) {
    now_ += absl::Seconds(2);  // past not_before
    Batch batch = TakeAll();
    ASSERT_EQ(batch.commands.size(), 1u) << trip;
    pending_.Complete(std::move(batch), {0}, now_, policy_);
    if (trip < kMaxStaleRoundTrips) {
      EXPECT_EQ(pending_.acked_seq(), 0u);
      EXPECT_TRUE(TakeAll().empty()) << "not before quiet_interval";
    }
  }
  EXPECT_EQ(pending_.dropped_stale(), 1u);
  EXPECT_EQ(pending_.acked_seq(), 1u);

  // The dropped range is not forgotten: the inode's next change re-reads
  // the whole file, since its chunk map no longer matches the bytes.
  now_ += absl::Seconds(2);
  pending_.Add(Write(2, "f", 9, 100, 5), now_);
  now_ += absl::Seconds(2);
  Batch next = TakeAll();
  ASSERT_EQ(next.commands.size(), 1u);
  ASSERT_EQ(next.commands[0].kind(), BackupCommand::CONTENT);
  bool covers_start = false;
  for (const auto& range : next.commands[0].dirty()) {
    covers_start |= range.offset() == 0 && range.length() >= (uint64_t{1} << 62);
  }
  EXPECT_TRUE(covers_start) << next.commands[0].ShortDebugString();
  pending_.Complete(std::move(next), {}, now_, policy_);
  // ... only once.
  pending_.Add(Write(3, "f", 9, 100, 5), now_);
  now_ += absl::Seconds(2);
  Batch after = TakeAll();
  ASSERT_EQ(after.commands.size(), 1u);
  ASSERT_EQ(after.commands[0].dirty_size(), 1);
  EXPECT_EQ(after.commands[0].dirty(0).offset(), 100u);
}

// A settable view of which inodes a program still has open for writing.
class FakeOpenWriters : public OpenWritersView {
 public:
  bool IsOpenForWriting(uint64_t inode) const override { return open_.count(inode) > 0; }
  std::set<uint64_t> open_;
};

TEST_F(PendingChangesTest, FileOpenForWritingWaitsForItsCloseNotForQuiet) {
  FakeOpenWriters writers;
  pending_.SetOpenWriters(&writers);
  writers.open_ = {9};
  pending_.Add(Write(1, "saving.tmp", 9, 0, 100), now_);
  pending_.Add(Write(2, "other", 10, 0, 100), now_);
  now_ += absl::Seconds(5);  // quiet (1 s) long ago, max delay (10 s) not reached
  Batch batch = pending_.TakeBatch(now_, policy_, 0);
  ASSERT_EQ(batch.commands.size(), 1u) << "only the closed file goes out";
  EXPECT_EQ(batch.commands[0].path(), "other");
  pending_.Complete(std::move(batch), {}, now_, policy_);
  // The open file's wake-up is its max delay, not its quiet time.
  EXPECT_EQ(pending_.NextReadyTime(policy_), absl::FromUnixSeconds(1000) + absl::Seconds(10));
  writers.open_.clear();  // the writer closed it
  EXPECT_EQ(pending_.NextReadyTime(policy_), absl::FromUnixSeconds(1000) + absl::Seconds(1));
  Batch after_close = pending_.TakeBatch(now_, policy_, 0);
  ASSERT_EQ(after_close.commands.size(), 1u);
  EXPECT_EQ(after_close.commands[0].path(), "saving.tmp");
  EXPECT_EQ(Seqs(after_close.commands[0]), (std::vector<uint64_t>{1}));
}

TEST_F(PendingChangesTest, FileNeverClosedStillGoesOutAtMaxDelay) {
  FakeOpenWriters writers;
  writers.open_ = {9};
  pending_.SetOpenWriters(&writers);
  const absl::Time start = now_;
  pending_.Add(Write(1, "app.log", 9, 0, 100), now_);
  now_ = start + absl::Milliseconds(9999);
  pending_.Add(Write(2, "app.log", 9, 100, 100), now_);
  EXPECT_TRUE(pending_.TakeBatch(now_, policy_, 0).empty());
  now_ = start + absl::Seconds(10);
  Batch batch = pending_.TakeBatch(now_, policy_, 0);
  ASSERT_EQ(batch.commands.size(), 1u) << "held open for ever must not mean never sent";
  EXPECT_EQ(Seqs(batch.commands[0]), (std::vector<uint64_t>{1, 2}));
}

TEST_F(PendingChangesTest, FlushSendsAFileStillOpenForWriting) {
  FakeOpenWriters writers;
  writers.open_ = {9};
  pending_.SetOpenWriters(&writers);
  pending_.Add(Write(1, "f", 9, 0, 100), now_);
  Batch batch = pending_.TakeBatch(now_, policy_, /*flush_target=*/1);
  ASSERT_EQ(batch.commands.size(), 1u) << "`replifs sync` sends what was written so far";
}

}  // namespace
}  // namespace replifs::scheduler
