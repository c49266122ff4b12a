// Chunk lists as page trees, on a real PackChunkStore and SqliteCatalog: an
// edit of one chunk in a list of >= 10,000 writes O(depth) new pages, lists
// read back whole, garbage collection follows trees, damage is DATA_LOSS.
#include "replicator/server/chunk_tree.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "gtest/gtest.h"
#include "replicator/server/pack_chunk_store.h"
#include "replicator/server/sqlite_catalog.h"
#include "replicator/server/sqlite_db.h"

namespace replifs::server {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kChunkLength = 65536;  // a 1 GiB file: 16,384 chunks of 64 KiB

std::string Id(uint64_t n) {
  std::string id(16, '\0');
  std::mt19937_64 rng(n * 104729 + 3);
  for (char& c : id) c = static_cast<char>(rng());
  return id;
}

v1::NodeState FileOfChunks(int count, uint64_t first_id = 0) {
  v1::NodeState state;
  state.set_path("big.img");
  state.set_type(v1::NodeState::REGULAR);
  state.set_mode(0644);
  for (int i = 0; i < count; ++i) {
    v1::ChunkRef* chunk = state.add_chunks();
    chunk->set_id(Id(first_id + static_cast<uint64_t>(i)));
    chunk->set_length(kChunkLength);
  }
  state.set_size(uint64_t{kChunkLength} * static_cast<uint64_t>(count));
  return state;
}

int Levels(PackChunkStore& pages, const std::string& root) {
  auto page = pages.GetPage(1, root);
  return page.ok() ? static_cast<uint8_t>((*page)[5]) + 1 : -1;
}

class ChunkTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/chunk_tree_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    auto pages = PackChunkStore::Open(dir_ + "/repos");
    ASSERT_TRUE(pages.ok()) << pages.status();
    pages_ = std::move(*pages);
  }
  void TearDown() override {
    pages_.reset();
    fs::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<PackChunkStore> pages_;
};

TEST_F(ChunkTreeTest, AListOfTenThousandChunksReadsBackWhole) {
  const v1::NodeState file = FileOfChunks(10000);
  int written = 0;
  auto root = WriteChunkTree(*pages_, 1, file, &written);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_GE(Levels(*pages_, *root), 2);
  EXPECT_GT(written, 10);
  v1::NodeState read;
  ASSERT_TRUE(ReadChunkTree(*pages_, 1, *root, &read).ok());
  ASSERT_EQ(read.chunks_size(), 10000);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_EQ(read.chunks(i).id(), file.chunks(i).id()) << i;
    ASSERT_EQ(read.chunks(i).length(), kChunkLength);
  }
  // The same list again: nothing new.
  int again = 0;
  EXPECT_EQ(*WriteChunkTree(*pages_, 1, file, &again), *root);
  EXPECT_EQ(again, 0);
}

TEST_F(ChunkTreeTest, EditingOneChunkOfAHugeListWritesOnlyThePagesAboveIt) {
  v1::NodeState file = FileOfChunks(16384);
  auto root = WriteChunkTree(*pages_, 1, file);
  ASSERT_TRUE(root.ok()) << root.status();
  const int levels = Levels(*pages_, *root);
  const uint64_t bytes_before = pages_->bytes_appended();
  for (int edit : {0, 5000, 8191, 16383}) {
    SCOPED_TRACE("edit at chunk " + std::to_string(edit));
    file.mutable_chunks(edit)->set_id(Id(1000000 + static_cast<uint64_t>(edit)));
    int written = 0;
    const uint64_t appended = pages_->bytes_appended();
    auto edited = WriteChunkTree(*pages_, 1, file, &written);
    ASSERT_TRUE(edited.ok()) << edited.status();
    EXPECT_NE(*edited, *root);
    // One page per level on the path, plus one when a cut moved (split).
    EXPECT_GE(written, levels);
    EXPECT_LE(written, levels + 1);
    std::cout << "[ pages    ] edit of chunk " << edit << " of 16384 (1 GiB): " << written
              << " new pages, " << pages_->bytes_appended() - appended
              << " bytes appended; the flat list is " << 16384 * 20 << " bytes" << std::endl;
  }
  // An inserted chunk shifts everything after it, yet only pages near it change.
  auto* inserted = file.mutable_chunks()->Add();
  inserted->set_id(Id(2000000));
  inserted->set_length(kChunkLength);
  std::rotate(file.mutable_chunks()->begin() + 7000, file.mutable_chunks()->end() - 1,
              file.mutable_chunks()->end());
  int written = 0;
  ASSERT_TRUE(WriteChunkTree(*pages_, 1, file, &written).ok());
  EXPECT_LE(written, levels + 1);
  EXPECT_GT(pages_->bytes_appended(), bytes_before);
}

TEST_F(ChunkTreeTest, ADamagedPageIsDataLoss) {
  auto root = WriteChunkTree(*pages_, 1, FileOfChunks(500));
  ASSERT_TRUE(root.ok());
  // Damage every pack byte past the header: each page entry fails its check.
  for (const auto& entry : fs::recursive_directory_iterator(dir_ + "/repos/1/packs")) {
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  v1::NodeState read;
  EXPECT_TRUE(absl::IsDataLoss(ReadChunkTree(*pages_, 1, *root, &read)));
  absl::flat_hash_set<std::string> seen;
  EXPECT_FALSE(WalkChunkTree(*pages_, 1, *root, &seen, [](const std::string&) {}).ok());
}

// Through the catalog: Apply stores long lists as trees, List and
// ListVersions expand them, and GC sees chunks named only inside pages.
class CatalogTreeTest : public ChunkTreeTest {
 protected:
  void SetUp() override {
    ChunkTreeTest::SetUp();
    auto catalog = SqliteCatalog::Open(dir_ + "/catalog.sqlite", pages_.get());
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = std::move(*catalog);
    auto repo = catalog_->FindOrCreateRepo("main", std::string(32, 's'));
    ASSERT_TRUE(repo.ok());
    ASSERT_EQ(repo->id, 1);
  }
  void TearDown() override {
    catalog_.reset();
    ChunkTreeTest::TearDown();
  }
  absl::Status Put(const v1::NodeState& state, uint64_t seq, int64_t time_ns) {
    google::protobuf::RepeatedPtrField<v1::Operation> ops;
    v1::Operation* op = ops.Add();
    op->set_seq(seq);
    op->set_time_ns(time_ns);
    *op->mutable_put() = state;
    return catalog_->Apply(1, "journal", ops, time_ns).status();
  }
  // Bytes this process passed to write(2)/pwrite(2): packs, index, catalog.
  static uint64_t WrittenBytes() {
    std::ifstream io("/proc/self/io");
    std::string key;
    uint64_t value = 0;
    while (io >> key >> value) {
      if (key == "wchar:") return value;
    }
    return 0;
  }
  static std::string Noise(size_t size) {
    std::mt19937_64 rng(99);
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    return data;
  }
  std::unique_ptr<SqliteCatalog> catalog_;
};

TEST_F(CatalogTreeTest, ACommitOfAOneChunkEditWritesAFewPagesAndListsTheWholeFile) {
  v1::NodeState file = FileOfChunks(16384);
  std::vector<SqliteCatalog::ChunkRecord> records;
  for (const v1::ChunkRef& chunk : file.chunks()) records.push_back({chunk.id(), chunk.length()});
  ASSERT_TRUE(catalog_->RecordChunks(1, records).ok());
  ASSERT_TRUE(Put(file, 1, 1000).ok());
  const int first = catalog_->pages_written();
  EXPECT_GT(first, 16);

  // A 4 KiB overwrite re-chunks one 64 KiB chunk: the server stores it
  // (incompressible here), records it and commits the new version.
  const uint64_t written_before = WrittenBytes();
  const uint64_t pack_before = pages_->bytes_appended();
  const std::string new_chunk = Noise(kChunkLength);
  file.mutable_chunks(9000)->set_id(Id(3000000));
  ASSERT_TRUE(pages_->Put(1, file.chunks(9000).id(), new_chunk).ok());
  ASSERT_TRUE(catalog_->RecordChunk(1, file.chunks(9000).id(), kChunkLength).ok());
  ASSERT_TRUE(Put(file, 2, 2000).ok());
  const int edit_pages = catalog_->pages_written() - first;
  const uint64_t written = WrittenBytes() - written_before;
  EXPECT_GE(edit_pages, 1);
  EXPECT_LE(edit_pages, 4);
  // The chunk, a few pages and SQLite's WAL frames (4 KiB pages); never the
  // 320 KiB list.
  EXPECT_LT(written, 256u << 10);
  std::cout << "[ 4k edit  ] 1 GiB file (16384 chunks): " << edit_pages << " new pages; pack +"
            << pages_->bytes_appended() - pack_before << " bytes (chunk " << new_chunk.size()
            << "); all writes to the store " << written << " bytes (a flat list is "
            << 16384 * 20 << " bytes per version)" << std::endl;

  auto listed = catalog_->List(1, 0, {});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  ASSERT_EQ((*listed)[0].chunks_size(), 16384);
  EXPECT_EQ((*listed)[0].chunks(9000).id(), Id(3000000));
  auto versions = catalog_->ListVersions(1, "big.img");
  ASSERT_TRUE(versions.ok());
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].chunks(9000).id(), Id(9000));

  // GC: every chunk is named inside some version's pages; nothing goes.
  auto garbage = catalog_->DeleteUnreferencedChunks(1, int64_t{1} << 62, /*dry_run=*/true,
                                                    [](const std::string&) { return absl::OkStatus(); });
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  EXPECT_TRUE(garbage->empty());
  auto reachable = catalog_->ReachablePages(1);
  ASSERT_TRUE(reachable.ok());
  EXPECT_EQ(reachable->size(), pages_->ListIds(1, EntryKind::kPage)->size());

  // Without the first version the replaced chunk and its old pages are garbage.
  auto rows = catalog_->ListVersionRows(1);
  ASSERT_TRUE(rows.ok());
  ASSERT_TRUE(catalog_->DeleteVersionRows(1, {(*rows)[0].row_id}).ok());
  garbage = catalog_->DeleteUnreferencedChunks(1, int64_t{1} << 62, /*dry_run=*/true,
                                               [](const std::string&) { return absl::OkStatus(); });
  ASSERT_TRUE(garbage.ok());
  ASSERT_EQ(garbage->size(), 1u);
  EXPECT_EQ((*garbage)[0], Id(9000));
  reachable = catalog_->ReachablePages(1);
  ASSERT_TRUE(reachable.ok());
  EXPECT_EQ(pages_->ListIds(1, EntryKind::kPage)->size() - reachable->size(),
            static_cast<size_t>(edit_pages));
}

TEST_F(CatalogTreeTest, ShortListsStayInlineAndNeedNoPages) {
  v1::NodeState file = FileOfChunks(kMaxInlineChunks);
  std::vector<SqliteCatalog::ChunkRecord> records;
  for (const v1::ChunkRef& chunk : file.chunks()) records.push_back({chunk.id(), chunk.length()});
  ASSERT_TRUE(catalog_->RecordChunks(1, records).ok());
  ASSERT_TRUE(Put(file, 1, 1000).ok());
  EXPECT_EQ(catalog_->pages_written(), 0);
  EXPECT_EQ(catalog_->List(1, 0, {})->at(0).chunks_size(), kMaxInlineChunks);
}

// A catalog written by the previous server (schema 2, lists inline) opens,
// is upgraded in place to schema 3, and its versions read as before.
TEST_F(ChunkTreeTest, AVersionTwoCatalogIsUpgradedInPlace) {
  const std::string path = dir_ + "/old.sqlite";
  {
    auto db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec(R"sql(
CREATE TABLE repos(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, chunk_secret BLOB NOT NULL,
  created_ns INTEGER NOT NULL, token_hash BLOB NOT NULL DEFAULT x'');
CREATE TABLE journals(repo_id INTEGER NOT NULL, journal_id BLOB NOT NULL,
  applied_seq INTEGER NOT NULL, PRIMARY KEY(repo_id, journal_id)) WITHOUT ROWID;
CREATE TABLE chunks(repo_id INTEGER NOT NULL, id BLOB NOT NULL, length INTEGER NOT NULL,
  touched_ns INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(repo_id, id)) WITHOUT ROWID;
CREATE TABLE versions(id INTEGER PRIMARY KEY, repo_id INTEGER NOT NULL, path BLOB NOT NULL,
  time_ns INTEGER NOT NULL, seq INTEGER NOT NULL, deleted INTEGER NOT NULL, type INTEGER NOT NULL,
  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, rdev INTEGER NOT NULL, symlink_target BLOB NOT NULL,
  xattrs BLOB NOT NULL, chunks BLOB NOT NULL, link_group INTEGER NOT NULL);
INSERT INTO repos VALUES (1, 'main', x'00', 1, x'');
INSERT INTO versions VALUES (1, 1, x'6f6c64', 5, 0, 0, 1, 420, 0, 0, 3, 0, 0, x'', x'',
  x'0102030405060708090a0b0c0d0e0f1003000000', 0);
PRAGMA user_version = 2;
)sql").ok());
  }
  auto catalog = SqliteCatalog::Open(path, pages_.get());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  auto listed = (*catalog)->List(1, 0, {});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].path(), "old");
  ASSERT_EQ((*listed)[0].chunks_size(), 1);
  EXPECT_EQ((*listed)[0].chunks(0).length(), 3u);
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok());
  auto version = db->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version.ok());
  ASSERT_TRUE(*version->Step());
  EXPECT_EQ(version->ColumnInt(0), 3);
}

}  // namespace
}  // namespace replifs::server
