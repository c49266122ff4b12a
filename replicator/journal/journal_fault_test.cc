// The journal under injected faults (replicator/server/fault_injection.h):
// short writes, EIO and ENOSPC on append, a failed fdatasync, a failed ACKED
// replace, and a power loss that drops everything after the last fdatasync.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/journal/format.h"
#include "replicator/journal/journal.h"
#include "replicator/server/fault_injection.h"

namespace replifs::journal {
namespace {

using replifs::v1::ChangeEvent;
namespace fs = std::filesystem;

class JournalFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "journal_fault_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    ASSERT_TRUE(fault::Arm("").ok());
    fs::remove_all(dir_);
  }
  std::unique_ptr<Journal> Open() {
    JournalOptions options;
    options.directory = dir_;
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(options);
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? *std::move(journal) : nullptr;
  }
  static absl::StatusOr<uint64_t> Append(Journal& journal, const std::string& path) {
    ChangeEvent event;
    event.set_op(ChangeEvent::CREATE);
    event.set_path(path);
    return journal.Append(event);
  }
  static std::vector<std::string> Replayed(Journal& journal) {
    std::vector<std::string> out;
    EXPECT_TRUE(journal.Replay([&](const ChangeEvent& e) {
      out.push_back(absl::StrCat(e.seq(), ":", e.path()));
    }).ok());
    return out;
  }
  std::string dir_;
};

TEST_F(JournalFaultTest, ShortWriteIsTakenBackAndItsSeqReused) {
  auto journal = Open();
  ASSERT_TRUE(fault::Arm("journal-append-write:short@2").ok());
  ASSERT_EQ(Append(*journal, "a").value_or(0), 1u);
  absl::StatusOr<uint64_t> torn = Append(*journal, "b");
  EXPECT_FALSE(torn.ok());
  EXPECT_EQ(fault::Hits("journal-append-write"), 2);
  // The half record was cut away: the next one follows "a" directly.
  ASSERT_EQ(Append(*journal, "c").value_or(0), 2u);
  journal.reset();
  auto reopened = Open();
  EXPECT_EQ(reopened->stats().torn_records_dropped, 0u) << "the short write left bytes behind";
  EXPECT_EQ(Replayed(*reopened), (std::vector<std::string>{"1:a", "2:c"}));
}

TEST_F(JournalFaultTest, EioAndEnospcFailTheAppendOnly) {
  auto journal = Open();
  ASSERT_TRUE(fault::Arm("journal-append-write:enospc@1").ok());
  absl::StatusOr<uint64_t> full = Append(*journal, "a");
  EXPECT_TRUE(absl::IsResourceExhausted(full.status())) << full.status();
  ASSERT_TRUE(fault::Arm("journal-append-write:eio@1").ok());
  absl::StatusOr<uint64_t> eio = Append(*journal, "b");
  EXPECT_TRUE(absl::IsInternal(eio.status())) << eio.status();
  EXPECT_EQ(Append(*journal, "c").value_or(0), 1u);
  EXPECT_TRUE(journal->Sync().ok());
  EXPECT_EQ(Replayed(*journal), (std::vector<std::string>{"1:c"}));
}

TEST_F(JournalFaultTest, FailedFdatasyncStopsTheJournalUntilReopened) {
  auto journal = Open();
  ASSERT_EQ(Append(*journal, "a").value_or(0), 1u);
  ASSERT_TRUE(fault::Arm("journal-fdatasync:eio").ok());
  EXPECT_FALSE(journal->Sync().ok());
  // Linux may have dropped the dirty pages: no append or sync may pretend.
  EXPECT_FALSE(Append(*journal, "b").ok());
  EXPECT_FALSE(journal->Sync().ok());
  journal.reset();
  auto reopened = Open();
  EXPECT_EQ(Replayed(*reopened), (std::vector<std::string>{"1:a"}));
  EXPECT_EQ(Append(*reopened, "b").value_or(0), 2u);
}

TEST_F(JournalFaultTest, FailedAckedReplaceKeepsEverythingForReplay) {
  auto journal = Open();
  for (const char* p : {"a", "b", "c"}) ASSERT_TRUE(Append(*journal, p).ok());
  ASSERT_TRUE(fault::Arm("journal-write-acked:eio").ok());
  EXPECT_FALSE(journal->Trim(2).ok());
  journal.reset();
  auto reopened = Open();
  EXPECT_EQ(reopened->stats().acked_seq, 0u);
  EXPECT_EQ(Replayed(*reopened).size(), 3u);
}

// Power loss keeps what the last fdatasync covered (stats().synced_*) and
// nothing more. Seqs up to synced_seq survive and are never handed out
// again; the daemon sends only synced seqs to the server (SyncBeforeSend in
// cli/daemon.cc), so a seq the server has seen is never reused.
TEST_F(JournalFaultTest, PowerLossDropsOnlyTheUnsyncedTail) {
  auto journal = Open();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Append(*journal, absl::StrCat("synced", i)).ok());
  ASSERT_TRUE(journal->Sync().ok());
  const JournalStats synced = journal->stats();
  ASSERT_EQ(synced.synced_seq, 5u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Append(*journal, absl::StrCat("lost", i)).ok());
  journal.reset();
  const std::string segment = absl::StrCat(dir_, "/", SegmentFileName(synced.synced_segment));
  ASSERT_GT(fs::file_size(segment), synced.synced_bytes);
  ASSERT_EQ(::truncate(segment.c_str(), static_cast<off_t>(synced.synced_bytes)), 0);

  auto reopened = Open();
  const std::vector<std::string> replayed = Replayed(*reopened);
  ASSERT_EQ(replayed.size(), 5u);
  EXPECT_EQ(replayed.back(), "5:synced4");
  EXPECT_GT(Append(*reopened, "after").value_or(0), synced.synced_seq);
}

TEST_F(JournalFaultTest, FullJournalRefusesAppendsUntilTrimmed) {
  JournalOptions options;
  options.directory = dir_;
  options.segment_bytes = 1024;
  options.max_bytes = 4096;
  auto journal = *Journal::Open(options);
  uint64_t last = 0;
  absl::StatusOr<uint64_t> seq;
  for (int i = 0; i < 1000 && (seq = Append(*journal, std::string(100, 'x'))).ok(); ++i) last = *seq;
  EXPECT_TRUE(absl::IsResourceExhausted(seq.status())) << seq.status();
  EXPECT_LE(journal->stats().disk_bytes, options.max_bytes);
  EXPECT_GT(last, 20u);
  // The refused append used no seq; trimming frees whole segments.
  ASSERT_TRUE(journal->Trim(last).ok());
  EXPECT_EQ(Append(*journal, "after").value_or(0), last + 1);
}

TEST_F(JournalFaultTest, UnknownPointOrActionIsRefused) {
  EXPECT_FALSE(fault::Arm("no-such-point").ok());
  EXPECT_FALSE(fault::Arm("before-send:explode").ok());
  EXPECT_FALSE(fault::Arm("before-send@0").ok());
  EXPECT_TRUE(fault::Arm("before-send:delay=1@3").ok());
}

}  // namespace
}  // namespace replifs::journal
