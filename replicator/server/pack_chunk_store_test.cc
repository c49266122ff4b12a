// PackChunkStore on a real directory: pack files, the SQLite index, torn
// tails, rebuilding the index from the packs, compaction, and reading the
// per-chunk files of older servers.
#include "replicator/server/pack_chunk_store.h"

#include <unistd.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/server/file_chunk_store.h"
#include "replicator/server/pack_format.h"

namespace replifs::server {
namespace {

namespace fs = std::filesystem;

std::string Id(int n) {
  std::string id(16, '\0');
  std::mt19937_64 rng(static_cast<uint64_t>(n) * 7919 + 1);
  for (char& c : id) c = static_cast<char>(rng());
  return id;
}

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  return data;
}

class PackChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/pack_store_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  void Reopen(uint64_t target = 32 << 20) {
    store_.reset();
    auto store = PackChunkStore::Open(dir_ + "/repos", {.target_pack_size = target});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  std::vector<std::string> Packs(int64_t repo = 1) {
    std::vector<std::string> packs;
    const std::string dir = dir_ + "/repos/" + std::to_string(repo) + "/packs";
    if (!fs::exists(dir)) return packs;
    for (const auto& entry : fs::directory_iterator(dir)) packs.push_back(entry.path());
    std::sort(packs.begin(), packs.end());
    return packs;
  }
  uint64_t PackBytes() {
    uint64_t total = 0;
    for (const std::string& pack : Packs()) total += fs::file_size(pack);
    return total;
  }
  void ExpectReads(PackChunkStore& store, int64_t repo, const std::string& id,
                   const std::string& data) {
    auto read = store.Get(repo, id);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, data);
  }

  std::string dir_;
  std::unique_ptr<PackChunkStore> store_;
};

TEST_F(PackChunkStoreTest, ChunksRoundTripCompressedWhenThatShrinksThem) {
  const std::string text(200000, 'a');
  const std::string noise = RandomBytes(70000, 1);
  ASSERT_TRUE(store_->Put(1, Id(1), text).ok());
  ASSERT_TRUE(store_->Put(1, Id(2), noise).ok());
  ASSERT_TRUE(store_->Put(1, Id(3), "").ok());
  ExpectReads(*store_, 1, Id(1), text);
  ExpectReads(*store_, 1, Id(2), noise);
  ExpectReads(*store_, 1, Id(3), "");
  // zstd for the text, raw for the noise: header + entries + noise + a little.
  EXPECT_LT(PackBytes(), noise.size() + 3000);
  EXPECT_GT(PackBytes(), noise.size());
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, Id(4)).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Get(2, Id(1)).status()));  // per-repository
}

TEST_F(PackChunkStoreTest, TheClientsZstdFrameIsStoredAsItIs) {
  // A frame at level 1 differs from what the store's own level 3 makes: the
  // pack holding exactly its bytes shows it was kept, not recompressed.
  const std::string text = "a line of text that repeats, " + std::string(100000, 'x');
  std::string frame(ZSTD_compressBound(text.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), text.data(), text.size(), 1));
  ASSERT_TRUE(store_->PutMany(1, {{Id(1), text, frame}}).ok());
  ExpectReads(*store_, 1, Id(1), text);
  std::ifstream pack(Packs().at(0), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(pack)), std::istreambuf_iterator<char>());
  EXPECT_NE(bytes.find(frame), std::string::npos);
  // A frame no smaller than the data is not kept: raw bytes are stored.
  const std::string noise = RandomBytes(5000, 2);
  ASSERT_TRUE(store_->PutMany(1, {{Id(2), noise, noise + "pad"}}).ok());
  ExpectReads(*store_, 1, Id(2), noise);
}

TEST_F(PackChunkStoreTest, ManySmallChunksShareOnePackFile) {
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(store_->Put(1, Id(i), "chunk " + std::to_string(i)).ok());
  ASSERT_TRUE(store_->Put(1, Id(5), "stored again: ignored").ok());
  EXPECT_EQ(Packs().size(), 1u);
  EXPECT_EQ(store_->entries_written(EntryKind::kChunk), 300u);
  for (int i = 0; i < 300; i += 37) ExpectReads(*store_, 1, Id(i), "chunk " + std::to_string(i));
}

// 10,000 small files' chunks, uploaded in batches as the service does: the
// store holds a handful of files (one-file-per-chunk stores held 10,000+).
TEST_F(PackChunkStoreTest, TenThousandSmallChunksLandInOnePackFile) {
  std::vector<ChunkStore::PendingChunk> batch;
  for (int i = 0; i < 10000; ++i) {
    batch.push_back({Id(i), "small file " + std::to_string(i) + "\n"});
    if (batch.size() == 128 || i == 9999) {
      ASSERT_TRUE(store_->PutMany(1, batch).ok());
      batch.clear();
    }
  }
  EXPECT_EQ(store_->entries_written(EntryKind::kChunk), 10000u);
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir_)) files += entry.is_regular_file();
  std::cout << "[ files    ] 10,000 small chunks: " << Packs().size() << " pack, " << files
            << " files in the store, " << PackBytes() << " pack bytes" << std::endl;
  EXPECT_EQ(Packs().size(), 1u);
  EXPECT_LE(files, 5);  // the pack, the index (+ -wal, -shm), GC.LOCK
  for (int i = 0; i < 10000; i += 999) ExpectReads(*store_, 1, Id(i), "small file " + std::to_string(i) + "\n");
}

TEST_F(PackChunkStoreTest, PacksAreSealedAtTheTargetSize) {
  Reopen(/*target=*/64 << 10);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store_->Put(1, Id(i), RandomBytes(20000, i)).ok());
  EXPECT_GE(Packs().size(), 3u);
  EXPECT_LE(Packs().size(), 4u);
  for (int i = 0; i < 10; ++i) ExpectReads(*store_, 1, Id(i), RandomBytes(20000, i));
}

TEST_F(PackChunkStoreTest, PagesAndChunksWithOneIdAreKeptApart) {
  ASSERT_TRUE(store_->Put(1, Id(1), "a chunk").ok());
  EXPECT_FALSE(*store_->HasPage(1, Id(1)));
  ASSERT_TRUE(store_->PutPage(1, Id(1), "a page").ok());
  EXPECT_TRUE(*store_->HasPage(1, Id(1)));
  EXPECT_EQ(*store_->GetPage(1, Id(1)), "a page");
  ExpectReads(*store_, 1, Id(1), "a chunk");
  EXPECT_EQ(store_->ListIds(1, EntryKind::kPage)->size(), 1u);
  ASSERT_TRUE(store_->DeletePage(1, Id(1)).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetPage(1, Id(1)).status()));
  ExpectReads(*store_, 1, Id(1), "a chunk");
}

TEST_F(PackChunkStoreTest, AFlippedByteInAPackIsDataLossForThatChunkOnly) {
  ASSERT_TRUE(store_->Put(1, Id(1), "first chunk, will be damaged").ok());
  ASSERT_TRUE(store_->Put(1, Id(2), "second chunk, stays fine").ok());
  const std::string pack = Packs().at(0);
  {
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    // Inside the first entry's payload.
    f.seekp(static_cast<std::streamoff>(kPackHeaderSize + kPackEntryHeaderSize + 3));
    f.put('X');
  }
  EXPECT_TRUE(absl::IsDataLoss(store_->Get(1, Id(1)).status())) << store_->Get(1, Id(1)).status();
  ExpectReads(*store_, 1, Id(2), "second chunk, stays fine");
}

TEST_F(PackChunkStoreTest, ADeletedIndexIsRebuiltFromThePacks) {
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(store_->Put(1, Id(i), RandomBytes(1000 + i, i)).ok());
  ASSERT_TRUE(store_->Put(2, Id(7), "another repository").ok());
  ASSERT_TRUE(store_->PutPage(1, Id(100), "page bytes").ok());
  store_.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    fs::remove(dir_ + "/repos/" + PackChunkStore::kIndexName + suffix);
  }
  Reopen();
  EXPECT_TRUE(store_->needs_rebuild());
  // Opening created an empty index; the next opener still knows it is stale.
  Reopen();
  EXPECT_TRUE(store_->needs_rebuild());
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, Id(3)).status()));
  int chunks_seen = 0;
  auto stats = store_->RebuildIndex([&](int64_t, const std::string&, uint32_t) {
    ++chunks_seen;
    return absl::OkStatus();
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->entries, 52u);
  EXPECT_EQ(stats->packs, 2);
  EXPECT_EQ(stats->torn_bytes, 0u);
  EXPECT_EQ(chunks_seen, 51);
  for (int i = 0; i < 50; ++i) ExpectReads(*store_, 1, Id(i), RandomBytes(1000 + i, i));
  ExpectReads(*store_, 2, Id(7), "another repository");
  EXPECT_EQ(*store_->GetPage(1, Id(100)), "page bytes");
  EXPECT_FALSE(store_->needs_rebuild());
  Reopen();
  EXPECT_FALSE(store_->needs_rebuild());
}

TEST_F(PackChunkStoreTest, ATornTailIsIgnoredAndCutOffByRebuild) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->Put(1, Id(i), "whole " + std::to_string(i)).ok());
  const std::string pack = Packs().at(0);
  const uint64_t whole = fs::file_size(pack);
  // A crash in the middle of an append: half an entry at the end.
  const std::string torn = EncodePackEntry(EntryKind::kChunk, Id(9), RandomBytes(5000, 9)).substr(0, 2000);
  {
    std::ofstream f(pack, std::ios::binary | std::ios::app);
    f << torn;
  }
  Reopen();
  for (int i = 0; i < 3; ++i) ExpectReads(*store_, 1, Id(i), "whole " + std::to_string(i));
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, Id(9)).status()));
  // New data goes to a new pack, never after the torn bytes.
  ASSERT_TRUE(store_->Put(1, Id(5), "after the crash").ok());
  EXPECT_EQ(Packs().size(), 2u);
  EXPECT_EQ(fs::file_size(pack), whole + torn.size());
  auto stats = store_->RebuildIndex(nullptr);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->torn_bytes, torn.size());
  EXPECT_EQ(stats->entries, 4u);
  EXPECT_EQ(fs::file_size(pack), whole);
  for (int i = 0; i < 3; ++i) ExpectReads(*store_, 1, Id(i), "whole " + std::to_string(i));
  ExpectReads(*store_, 1, Id(5), "after the crash");
}

TEST_F(PackChunkStoreTest, CompactionRewritesMostlyDeadPacksAndKeepsLiveChunks) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store_->Put(1, Id(i), RandomBytes(10000, i)).ok());
  const uint64_t before = PackBytes();
  for (int i = 2; i < 10; ++i) ASSERT_TRUE(store_->Delete(1, Id(i)).ok());
  auto stats = store_->Compact(1, 0.5);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->packs_removed, 1);
  EXPECT_LT(PackBytes(), before / 3);
  EXPECT_GT(stats->bytes_freed, 70000u);
  ExpectReads(*store_, 1, Id(0), RandomBytes(10000, 0));
  ExpectReads(*store_, 1, Id(1), RandomBytes(10000, 1));
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, Id(5)).status()));
  // The writer's pack was sealed: new chunks go to a new pack.
  ASSERT_TRUE(store_->Put(1, Id(20), "after compaction").ok());
  ExpectReads(*store_, 1, Id(20), "after compaction");
  // A pack with nothing live is simply removed.
  ASSERT_TRUE(store_->Delete(1, Id(20)).ok());
  ASSERT_TRUE(store_->Compact(1, 0.5).ok());
  ExpectReads(*store_, 1, Id(0), RandomBytes(10000, 0));
  EXPECT_EQ(Packs().size(), 1u);
}

// The server and `replifs-server prune` are two processes on one store: a
// compaction by one must never lose what the other appends afterwards.
TEST_F(PackChunkStoreTest, AWriterNeverAppendsToAPackAnotherInstanceCompacted) {
  auto other = PackChunkStore::Open(dir_ + "/repos");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(store_->Put(1, Id(1), RandomBytes(5000, 1)).ok());
  ASSERT_TRUE(store_->Put(1, Id(2), RandomBytes(5000, 2)).ok());
  ASSERT_TRUE(store_->Delete(1, Id(1)).ok());
  ASSERT_TRUE(store_->Delete(1, Id(2)).ok());
  ASSERT_TRUE((*other)->Compact(1, 0.5).ok());  // removes the writer's pack
  ASSERT_TRUE(store_->Put(1, Id(3), "appended after the collection").ok());
  ASSERT_TRUE((*other)->Compact(1, 0.5).ok());
  ExpectReads(*store_, 1, Id(3), "appended after the collection");
  ExpectReads(**other, 1, Id(3), "appended after the collection");
}

TEST_F(PackChunkStoreTest, ChunkFilesOfAnOlderServerAreStillReadAndDeleted) {
  auto legacy = FileChunkStore::Open(dir_ + "/repos");
  ASSERT_TRUE(legacy.ok());
  ASSERT_TRUE((*legacy)->Put(1, Id(1), "stored one file per chunk").ok());
  ExpectReads(*store_, 1, Id(1), "stored one file per chunk");
  ASSERT_TRUE(store_->Delete(1, Id(1)).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, Id(1)).status()));
  EXPECT_TRUE(absl::IsNotFound((*legacy)->Get(1, Id(1)).status()));
}

TEST_F(PackChunkStoreTest, RejectsBadIdsAndRepositories) {
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Put(1, "short", "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Put(0, Id(1), "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Get(-1, Id(1)).status()));
}

}  // namespace
}  // namespace replifs::server
