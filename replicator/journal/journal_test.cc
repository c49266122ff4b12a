#include "replicator/journal/journal.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "replicator/journal/format.h"

namespace replifs::journal {
namespace {

using replifs::v1::ChangeEvent;
namespace fs = std::filesystem;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "journal_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  JournalOptions Options() const {
    JournalOptions options;
    options.directory = dir_;
    return options;
  }

  std::unique_ptr<Journal> OpenOrDie(JournalOptions options) {
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(options);
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? *std::move(journal) : nullptr;
  }
  std::unique_ptr<Journal> OpenOrDie() { return OpenOrDie(Options()); }

  static uint64_t AppendWrite(Journal& journal, const std::string& path, uint64_t offset = 0) {
    ChangeEvent event;
    event.set_op(ChangeEvent::WRITE);
    event.set_path(path);
    event.set_offset(offset);
    event.set_length(4096);
    absl::StatusOr<uint64_t> seq = journal.Append(event);
    EXPECT_TRUE(seq.ok()) << seq.status();
    EXPECT_EQ(event.seq(), seq.value_or(0));
    return seq.value_or(0);
  }

  static std::vector<ChangeEvent> ReplayAll(Journal& journal) {
    std::vector<ChangeEvent> events;
    absl::Status status = journal.Replay([&](const ChangeEvent& e) { events.push_back(e); });
    EXPECT_TRUE(status.ok()) << status;
    return events;
  }

  std::vector<fs::path> SegmentFiles() const {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (ParseSegmentFileName(entry.path().filename().string())) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  std::string dir_;
};

TEST_F(JournalTest, AppendReopenReplay) {
  std::string id;
  {
    auto journal = OpenOrDie();
    id = journal->id();
    EXPECT_EQ(id.size(), kJournalIdBytes);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(AppendWrite(*journal, absl::StrCat("f", i)), i + 1);
    ASSERT_TRUE(journal->Sync().ok());
  }
  auto journal = OpenOrDie();
  EXPECT_EQ(journal->id(), id);
  const std::vector<ChangeEvent> events = ReplayAll(*journal);
  ASSERT_EQ(events.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(events[i].seq(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(events[i].path(), absl::StrCat("f", i));
    EXPECT_EQ(events[i].op(), ChangeEvent::WRITE);
  }
  EXPECT_EQ(journal->stats().torn_records_dropped, 0u);
}

TEST_F(JournalTest, SeqContinuesAfterReopen) {
  {
    auto journal = OpenOrDie();
    for (int i = 0; i < 3; ++i) AppendWrite(*journal, "a");
  }
  {
    auto journal = OpenOrDie();
    EXPECT_EQ(journal->stats().last_seq, 3u);
    EXPECT_EQ(AppendWrite(*journal, "b"), 4u);
  }
  auto journal = OpenOrDie();
  EXPECT_EQ(ReplayAll(*journal).size(), 4u);
}

// Each variant damages the tail of the only segment after 5 appends.
class TornTailTest : public JournalTest {
 protected:
  fs::path WriteFive() {
    auto journal = OpenOrDie();
    for (int i = 0; i < 5; ++i) AppendWrite(*journal, absl::StrCat("f", i));
    const std::vector<fs::path> files = SegmentFiles();
    EXPECT_EQ(files.size(), 1u);
    return files.at(0);
  }

  // Reopens and checks that `intact` records survive and appends continue.
  void ExpectRecovered(uint64_t intact) {
    {
      auto journal = OpenOrDie();
      EXPECT_EQ(journal->stats().torn_records_dropped, 1u);
      EXPECT_GT(journal->stats().torn_bytes_dropped, 0u);
      const std::vector<ChangeEvent> events = ReplayAll(*journal);
      ASSERT_EQ(events.size(), intact);
      for (uint64_t i = 0; i < intact; ++i) EXPECT_EQ(events[i].seq(), i + 1);
      EXPECT_EQ(AppendWrite(*journal, "after"), intact + 1);
    }
    auto journal = OpenOrDie();
    EXPECT_EQ(journal->stats().torn_records_dropped, 0u) << "the tail was cut at the first open";
    const std::vector<ChangeEvent> events = ReplayAll(*journal);
    ASSERT_EQ(events.size(), intact + 1);
    EXPECT_EQ(events.back().path(), "after");
  }
};

TEST_F(TornTailTest, TruncatedMidRecord) {
  const fs::path file = WriteFive();
  fs::resize_file(file, fs::file_size(file) - 7);
  ExpectRecovered(4);
}

TEST_F(TornTailTest, GarbageAppended) {
  const fs::path file = WriteFive();
  std::ofstream(file, std::ios::app | std::ios::binary) << std::string(100, '\x5a');
  ExpectRecovered(5);
}

TEST_F(TornTailTest, ZerosAppended) {
  const fs::path file = WriteFive();
  std::ofstream(file, std::ios::app | std::ios::binary) << std::string(4096, '\0');
  ExpectRecovered(5);
}

TEST_F(TornTailTest, FlippedByteInLastRecord) {
  const fs::path file = WriteFive();
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  stream.seekg(-2, std::ios::end);
  char c = 0;
  stream.read(&c, 1);
  c ^= 0x01;
  stream.seekp(-2, std::ios::end);
  stream.write(&c, 1);
  stream.close();
  ExpectRecovered(4);
}

TEST_F(JournalTest, SegmentCreatedButHeaderNotWrittenIsIgnored) {
  {
    auto journal = OpenOrDie();
    for (int i = 0; i < 3; ++i) AppendWrite(*journal, "a");
  }
  // A crash between creating the next segment and writing its header.
  std::ofstream(fs::path(dir_) / SegmentFileName(4)) << "RPL";
  auto journal = OpenOrDie();
  EXPECT_EQ(ReplayAll(*journal).size(), 3u);
  EXPECT_EQ(AppendWrite(*journal, "b"), 4u);
}

TEST_F(JournalTest, SegmentsWithoutIdAreRefused) {
  {
    auto journal = OpenOrDie();
    AppendWrite(*journal, "a");
  }
  fs::remove(fs::path(dir_) / kJournalIdFile);
  EXPECT_EQ(Journal::Open(Options()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JournalTest, TrimDeletesOldSegmentsAndReplayStartsAfterWatermark) {
  JournalOptions options = Options();
  options.segment_bytes = 256;  // a few records per segment
  {
    auto journal = OpenOrDie(options);
    for (int i = 0; i < 100; ++i) AppendWrite(*journal, "file", i * 4096);
    const size_t before = SegmentFiles().size();
    ASSERT_GT(before, 10u);
    const uint64_t bytes_before = journal->stats().disk_bytes;

    ASSERT_TRUE(journal->Trim(60).ok());
    EXPECT_EQ(journal->stats().acked_seq, 60u);
    EXPECT_LT(SegmentFiles().size(), before);
    EXPECT_LT(journal->stats().disk_bytes, bytes_before);
    // Whatever is left must still hold everything after the watermark.
    const uint64_t first_left = *ParseSegmentFileName(SegmentFiles().front().filename().string());
    EXPECT_LE(first_left, 61u);
    EXPECT_GT(first_left, 40u);

    const std::vector<ChangeEvent> events = ReplayAll(*journal);
    ASSERT_EQ(events.size(), 40u);
    EXPECT_EQ(events.front().seq(), 61u);
    EXPECT_EQ(events.back().seq(), 100u);
    EXPECT_EQ(journal->Trim(101).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(journal->Trim(10).ok()) << "a lower watermark is a no-op";
    EXPECT_EQ(journal->stats().acked_seq, 60u);
  }
  auto journal = OpenOrDie(options);
  EXPECT_EQ(journal->stats().acked_seq, 60u);
  const std::vector<ChangeEvent> events = ReplayAll(*journal);
  ASSERT_EQ(events.size(), 40u);
  EXPECT_EQ(events.front().seq(), 61u);
}

TEST_F(JournalTest, SeqContinuesWhenEverythingWasTrimmed) {
  JournalOptions options = Options();
  options.segment_bytes = 128;
  {
    auto journal = OpenOrDie(options);
    for (int i = 0; i < 20; ++i) AppendWrite(*journal, "f");
    ASSERT_TRUE(journal->Trim(20).ok());
    EXPECT_TRUE(ReplayAll(*journal).empty());
  }
  auto journal = OpenOrDie(options);
  EXPECT_TRUE(ReplayAll(*journal).empty());
  EXPECT_EQ(AppendWrite(*journal, "g"), 21u);
  const std::vector<ChangeEvent> events = ReplayAll(*journal);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq(), 21u);
}

TEST_F(JournalTest, AckedAheadOfLostRecordsNeverReusesSeqs) {
  fs::path file;
  {
    auto journal = OpenOrDie();
    for (int i = 0; i < 10; ++i) AppendWrite(*journal, "f");
    ASSERT_TRUE(journal->Trim(8).ok());
    file = SegmentFiles().at(0);
  }
  // Power loss took records 6..10 although the server had acked up to 8.
  const uint64_t size = fs::file_size(file);
  fs::resize_file(file, kSegmentHeaderSize + (size - kSegmentHeaderSize) / 2 - 1);
  {
    auto journal = OpenOrDie();
    EXPECT_EQ(AppendWrite(*journal, "new"), 9u);
  }
  auto journal = OpenOrDie();
  const std::vector<ChangeEvent> events = ReplayAll(*journal);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq(), 9u);
  EXPECT_EQ(events[0].path(), "new");
}

TEST_F(JournalTest, ConcurrentAppendAndSyncReplayEveryRecordOnceInOrder) {
  JournalOptions options = Options();
  options.segment_bytes = 4096;  // rolls happen while threads append and sync
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  {
    auto journal = OpenOrDie(options);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          AppendWrite(*journal, absl::StrCat("t", t, "/", i));
          if (i % 10 == 9) {
            EXPECT_TRUE(journal->Sync().ok());
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    ASSERT_TRUE(journal->Sync().ok());
    const JournalStats stats = journal->stats();
    EXPECT_EQ(stats.last_seq, uint64_t{kThreads * kPerThread});
    EXPECT_EQ(stats.synced_seq, stats.last_seq);
    EXPECT_LE(stats.syncs, stats.sync_calls);
  }
  auto journal = OpenOrDie(options);
  const std::vector<ChangeEvent> events = ReplayAll(*journal);
  ASSERT_EQ(events.size(), size_t{kThreads * kPerThread});
  std::set<std::string> paths;
  std::vector<int> next_per_thread(kThreads, 0);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq(), i + 1);
    EXPECT_TRUE(paths.insert(events[i].path()).second) << "duplicate " << events[i].path();
    // Each thread's own appends keep their order.
    int t = 0, n = 0;
    ASSERT_EQ(std::sscanf(events[i].path().c_str(), "t%d/%d", &t, &n), 2);
    EXPECT_EQ(n, next_per_thread[t]++);
  }
}

TEST_F(JournalTest, GroupCommitSharesOneFdatasync) {
  constexpr int kWaiters = 7;
  std::atomic<int> appended{0};
  std::atomic<bool> first_sync{true};
  absl::Notification leader_syncing;
  JournalOptions options = Options();
  options.before_fdatasync_for_testing = [&] {
    if (!first_sync.exchange(false)) return;
    // Hold the first fdatasync until the others have appended and queued up.
    leader_syncing.Notify();
    while (appended.load() < kWaiters) absl::SleepFor(absl::Milliseconds(1));
    absl::SleepFor(absl::Milliseconds(200));
  };
  auto journal = OpenOrDie(options);
  AppendWrite(*journal, "leader");
  std::thread leader([&] { EXPECT_TRUE(journal->Sync().ok()); });
  leader_syncing.WaitForNotification();
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&, i] {
      AppendWrite(*journal, absl::StrCat("w", i));
      appended++;
      EXPECT_TRUE(journal->Sync().ok());
    });
  }
  leader.join();
  for (std::thread& thread : waiters) thread.join();
  const JournalStats stats = journal->stats();
  EXPECT_EQ(stats.sync_calls, uint64_t{kWaiters + 1});
  // One for the leader, one shared by all 7 waiters (3 if one was very late).
  EXPECT_GE(stats.syncs, 2u);
  EXPECT_LE(stats.syncs, 3u);
  EXPECT_EQ(stats.synced_seq, uint64_t{kWaiters + 1});
  // Nothing new: Sync returns without another fdatasync.
  ASSERT_TRUE(journal->Sync().ok());
  EXPECT_EQ(journal->stats().syncs, stats.syncs);
}

}  // namespace
}  // namespace replifs::journal
