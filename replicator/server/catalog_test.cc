#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/server/sqlite_catalog.h"

namespace replifs::server {
namespace {

constexpr uint32_t kRenameExchange = 2;

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/catalog_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    auto catalog = SqliteCatalog::Open(dir_ + "/catalog.sqlite");
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = std::move(*catalog);
    auto repo = catalog_->FindOrCreateRepo("main", std::string(32, 's'));
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = repo->id;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static v1::Operation Put(std::string path, v1::NodeState::Type type, int64_t time_ns,
                           uint64_t seq = 0) {
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    op.mutable_put()->set_path(std::move(path));
    op.mutable_put()->set_type(type);
    op.mutable_put()->set_mode(0644);
    return op;
  }
  static v1::Operation File(std::string path, int64_t time_ns, uint32_t mode = 0644) {
    v1::Operation op = Put(std::move(path), v1::NodeState::REGULAR, time_ns);
    op.mutable_put()->set_mode(mode);
    return op;
  }
  static v1::Operation Dir(std::string path, int64_t time_ns) {
    return Put(std::move(path), v1::NodeState::DIRECTORY, time_ns);
  }
  static v1::Operation Remove(std::string path, uint64_t seq, int64_t time_ns) {
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    op.set_remove(std::move(path));
    return op;
  }
  static v1::Operation Rename(std::string from, std::string to, uint64_t seq, int64_t time_ns,
                              uint32_t flags = 0) {
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    op.mutable_rename()->set_from(std::move(from));
    op.mutable_rename()->set_to(std::move(to));
    op.mutable_rename()->set_flags(flags);
    return op;
  }

  absl::StatusOr<uint64_t> Apply(std::vector<v1::Operation> ops, int64_t repo = 0) {
    google::protobuf::RepeatedPtrField<v1::Operation> field(ops.begin(), ops.end());
    return catalog_->Apply(repo != 0 ? repo : repo_, "journal", field, /*now_ns=*/1);
  }

  std::vector<v1::NodeState> List(int64_t at_time_ns = 0, std::vector<std::string> paths = {},
                                  int64_t repo = 0) {
    auto states = catalog_->List(repo != 0 ? repo : repo_, at_time_ns, paths);
    EXPECT_TRUE(states.ok()) << states.status();
    return states.ok() ? *states : std::vector<v1::NodeState>{};
  }
  std::vector<std::string> ListPaths(int64_t at_time_ns = 0) {
    std::vector<std::string> paths;
    for (const v1::NodeState& state : List(at_time_ns)) paths.push_back(state.path());
    return paths;
  }
  v1::NodeState Find(const std::string& path) {
    for (const v1::NodeState& state : List()) {
      if (state.path() == path) return state;
    }
    ADD_FAILURE() << "no live path " << path;
    return {};
  }

  std::string dir_;
  std::unique_ptr<SqliteCatalog> catalog_;
  int64_t repo_ = 0;
};

using Paths = std::vector<std::string>;

TEST_F(CatalogTest, PutThenListShowsLatestState) {
  ASSERT_TRUE(Apply({Dir("", 10), Dir("d", 10), File("d/f", 10, 0600)}).ok());
  ASSERT_TRUE(Apply({File("d/f", 20, 0640)}).ok());
  EXPECT_EQ(ListPaths(), (Paths{"", "d", "d/f"}));
  const v1::NodeState file = Find("d/f");
  EXPECT_EQ(file.mode(), 0640u);
  EXPECT_EQ(file.time_ns(), 20);
}

TEST_F(CatalogTest, ListAsOfTimeBetweenVersionsReturnsEarlier) {
  ASSERT_TRUE(Apply({File("f", 100, 0600)}).ok());
  ASSERT_TRUE(Apply({File("f", 200, 0640)}).ok());
  const std::vector<v1::NodeState> before = List(150);
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].mode(), 0600u);
  EXPECT_EQ(before[0].time_ns(), 100);
  EXPECT_TRUE(List(50).empty());
  EXPECT_EQ(List(200)[0].mode(), 0640u);
}

TEST_F(CatalogTest, ClockSteppingBackDoesNotHideNewerVersion) {
  ASSERT_TRUE(Apply({File("f", 200, 0600)}).ok());
  ASSERT_TRUE(Apply({File("f", 100, 0640)}).ok());
  EXPECT_EQ(Find("f").mode(), 0640u);
}

TEST_F(CatalogTest, RemoveDeletesWholeSubtreeOnly) {
  ASSERT_TRUE(Apply({Dir("a", 10), File("a/x", 10), Dir("a/b", 10), File("a/b/y", 10),
                     File("ab", 10), File("a.txt", 10)})
                  .ok());
  auto applied = Apply({Remove("a", 5, 20)});
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(*applied, 5u);
  EXPECT_EQ(ListPaths(), (Paths{"a.txt", "ab"}));
  EXPECT_EQ(ListPaths(15).size(), 6u);  // history is kept
}

TEST_F(CatalogTest, PutOfFileOverDirectoryRemovesWhatWasBelow) {
  ASSERT_TRUE(Apply({Dir("a", 10), File("a/x", 10), File("a.txt", 10), File("ab", 10)}).ok());
  ASSERT_TRUE(Apply({File("a", 20)}).ok());
  EXPECT_EQ(ListPaths(), (Paths{"a", "a.txt", "ab"}));  // "a.txt" sorts between "a" and "a/"
  EXPECT_EQ(Find("a").type(), v1::NodeState::REGULAR);
}

TEST_F(CatalogTest, RenameDirectoryMovesEverythingBelow) {
  ASSERT_TRUE(Apply({Dir("d", 10), File("d/f", 10, 0600), Dir("d/s", 10), File("d/s/g", 10),
                     File("d2", 10)})
                  .ok());
  ASSERT_TRUE(Apply({Rename("d", "e", 3, 20)}).ok());
  EXPECT_EQ(ListPaths(), (Paths{"d2", "e", "e/f", "e/s", "e/s/g"}));
  EXPECT_EQ(Find("e/f").mode(), 0600u);
  EXPECT_EQ(Find("e/f").seq(), 3u);
  EXPECT_EQ(ListPaths(15), (Paths{"d", "d/f", "d/s", "d/s/g", "d2"}));
}

TEST_F(CatalogTest, RenameOverExistingPathReplacesItsSubtree) {
  ASSERT_TRUE(Apply({Dir("src", 10), File("src/a", 10, 0600), Dir("dst", 10),
                     File("dst/a", 10, 0644), File("dst/old", 10)})
                  .ok());
  ASSERT_TRUE(Apply({Rename("src", "dst", 4, 20)}).ok());
  EXPECT_EQ(ListPaths(), (Paths{"dst", "dst/a"}));
  EXPECT_EQ(Find("dst/a").mode(), 0600u);
}

TEST_F(CatalogTest, RenameExchangeSwapsSubtrees) {
  ASSERT_TRUE(Apply({Dir("x", 10), File("x/only_x", 10, 0600), File("y", 10, 0644)}).ok());
  ASSERT_TRUE(Apply({Rename("x", "y", 6, 20, kRenameExchange)}).ok());
  EXPECT_EQ(ListPaths(), (Paths{"x", "y", "y/only_x"}));
  EXPECT_EQ(Find("x").type(), v1::NodeState::REGULAR);
  EXPECT_EQ(Find("y").type(), v1::NodeState::DIRECTORY);
  EXPECT_EQ(Find("y/only_x").mode(), 0600u);
}

TEST_F(CatalogTest, RenameOfMissingSourceIsNoOp) {
  ASSERT_TRUE(Apply({File("keep", 10)}).ok());
  auto applied = Apply({Rename("ghost", "keep", 2, 20)});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(*applied, 2u);
  EXPECT_EQ(ListPaths(), (Paths{"keep"}));
}

TEST_F(CatalogTest, RetriedRenameAtOrBelowAppliedSeqIsSkipped) {
  ASSERT_TRUE(Apply({File("a", 10)}).ok());
  ASSERT_TRUE(Apply({Rename("a", "b", 7, 20)}).ok());
  // `a` is recreated; a retry of the old rename must not move it again.
  ASSERT_TRUE(Apply({File("a", 30)}).ok());
  auto applied = Apply({Rename("a", "b", 7, 20), Remove("b", 6, 20)});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(*applied, 7u);
  EXPECT_EQ(ListPaths(), (Paths{"a", "b"}));
  EXPECT_EQ(*catalog_->AppliedSeq(repo_, "journal"), 7u);
  EXPECT_EQ(*catalog_->AppliedSeq(repo_, "other journal"), 0u);
}

TEST_F(CatalogTest, HardLinkGroupSharesContentChanges) {
  const std::string id(16, 'c');
  ASSERT_TRUE(catalog_->RecordChunk(repo_, id, 5).ok());
  v1::Operation first = File("one", 10, 0600);
  first.mutable_put()->set_link_group(42);
  v1::Operation second = File("two", 10, 0600);
  second.mutable_put()->set_link_group(42);
  v1::Operation unrelated = File("three", 10, 0600);
  unrelated.mutable_put()->set_link_group(43);
  ASSERT_TRUE(Apply({first, second, unrelated}).ok());

  v1::Operation write = File("one", 20, 0640);
  write.mutable_put()->set_link_group(42);
  write.mutable_put()->set_size(5);
  v1::ChunkRef* chunk = write.mutable_put()->add_chunks();
  chunk->set_id(id);
  chunk->set_length(5);
  ASSERT_TRUE(Apply({write}).ok());

  const v1::NodeState two = Find("two");
  EXPECT_EQ(two.size(), 5u);
  EXPECT_EQ(two.mode(), 0640u);
  ASSERT_EQ(two.chunks_size(), 1);
  EXPECT_EQ(two.chunks(0).id(), id);
  EXPECT_EQ(Find("three").size(), 0u);
}

TEST_F(CatalogTest, PutNamingUnrecordedChunkRollsBackWholeBatch) {
  v1::Operation put = File("f", 20);
  put.mutable_put()->set_size(3);
  v1::ChunkRef* chunk = put.mutable_put()->add_chunks();
  chunk->set_id(std::string(16, 'z'));
  chunk->set_length(3);
  auto applied = Apply({File("other", 10), Remove("x", 9, 10), put});
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ListPaths().empty());
  EXPECT_EQ(*catalog_->AppliedSeq(repo_, "journal"), 0u);
}

TEST_F(CatalogTest, RepositoriesAreIsolated) {
  auto other = catalog_->FindOrCreateRepo("other", std::string(32, 't'));
  ASSERT_TRUE(other.ok());
  ASSERT_NE(other->id, repo_);
  ASSERT_TRUE(Apply({File("mine", 10)}).ok());
  ASSERT_TRUE(catalog_->RecordChunk(repo_, std::string(16, 'c'), 1).ok());
  EXPECT_TRUE(List(0, {}, other->id).empty());
  EXPECT_TRUE(absl::IsNotFound(catalog_->ChunkLength(other->id, std::string(16, 'c')).status()));
  auto missing = catalog_->MissingChunks(other->id, {std::string(16, 'c')});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 1u);
  // Removing in the other repo does not touch ours.
  google::protobuf::RepeatedPtrField<v1::Operation> ops;
  *ops.Add() = Remove("mine", 1, 20);
  ASSERT_TRUE(catalog_->Apply(other->id, "journal", ops, 1).ok());
  EXPECT_EQ(ListPaths(), (Paths{"mine"}));
}

TEST_F(CatalogTest, FindOrCreateRepoKeepsFirstSecret) {
  auto again = catalog_->FindOrCreateRepo("main", std::string(32, 'x'));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, repo_);
  EXPECT_EQ(again->chunk_secret, std::string(32, 's'));
  EXPECT_TRUE(absl::IsNotFound(catalog_->FindRepo("nope").status()));
}

TEST_F(CatalogTest, ListOfPathsSelectsSubtrees) {
  ASSERT_TRUE(Apply({Dir("a", 10), File("a/f", 10), File("b", 10), File("a-b", 10)}).ok());
  std::vector<std::string> paths;
  for (const auto& state : List(0, {"a", "a/f"})) paths.push_back(state.path());
  EXPECT_EQ(paths, (Paths{"a", "a/f"}));
}

TEST_F(CatalogTest, SurvivesReopen) {
  ASSERT_TRUE(Apply({File("f", 10), Remove("g", 3, 10)}).ok());
  catalog_.reset();
  auto reopened = SqliteCatalog::Open(dir_ + "/catalog.sqlite");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  catalog_ = std::move(*reopened);
  EXPECT_EQ(ListPaths(), (Paths{"f"}));
  EXPECT_EQ(*catalog_->AppliedSeq(repo_, "journal"), 3u);
}

}  // namespace
}  // namespace replifs::server
