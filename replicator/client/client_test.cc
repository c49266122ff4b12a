#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "replicator/client/chunk_map_store.h"
#include "replicator/client/chunk_map_trust.h"
#include "replicator/client/node_snapshot.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/tree_walk.h"
#include "replicator/client/verify.h"

namespace replifs::client {
namespace {

TEST(PathRules, AcceptsOnlyPlainRelativePaths) {
  EXPECT_TRUE(IsSafeRelativePath(""));
  EXPECT_TRUE(IsSafeRelativePath("a/b/c"));
  EXPECT_TRUE(IsSafeRelativePath("a/\xff\xfe"));
  EXPECT_FALSE(IsSafeRelativePath("/a"));
  EXPECT_FALSE(IsSafeRelativePath("a/../b"));
  EXPECT_FALSE(IsSafeRelativePath(".."));
  EXPECT_FALSE(IsSafeRelativePath("a//b"));
  EXPECT_FALSE(IsSafeRelativePath("a/"));
  EXPECT_FALSE(IsSafeRelativePath(std::string("a\0b", 3)));
  EXPECT_FALSE(IsSafeRelativePath(std::string(256, 'x')));
}

TEST(ChunkMapTrust, MissedChangesDistrustMapsUntilAReconcileWithoutNewLossEnds) {
  ChunkMapTrust trust;
  EXPECT_TRUE(trust.trusted());
  EXPECT_EQ(trust.lost_since_ns(), ChunkMapTrust::kNever);
  trust.NoteLostChanges(10'000'000'000);
  EXPECT_FALSE(trust.trusted());
  // Files changed shortly before the loss was noticed are re-read too.
  EXPECT_LT(trust.lost_since_ns(), 10'000'000'000);
  const int64_t since = trust.lost_since_ns();
  const uint64_t reconcile_started = trust.epoch();
  trust.NoteLostChanges(20'000'000'000);  // during the walk
  EXPECT_EQ(trust.lost_since_ns(), since) << "the earliest loss bounds the re-read";
  trust.RestoreIfNoLossSince(reconcile_started);
  EXPECT_FALSE(trust.trusted()) << "a loss during the walk needs another walk";
  trust.RestoreIfNoLossSince(trust.epoch());
  EXPECT_TRUE(trust.trusted());
}

TEST(PathRules, ParentsAndPrefixes) {
  EXPECT_EQ(ParentPath("a/b/c"), "a/b");
  EXPECT_EQ(ParentPath("a"), "");
  EXPECT_TRUE(PathIsAtOrBelow("a/b", "a"));
  EXPECT_TRUE(PathIsAtOrBelow("a", "a"));
  EXPECT_FALSE(PathIsAtOrBelow("ab", "a"));
  EXPECT_TRUE(PathIsAtOrBelow("x", ""));
}

class TempTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/replifs-client-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    root_fd_ = open(dir_.c_str(), O_PATH | O_DIRECTORY);
    ASSERT_GE(root_fd_, 0);
  }
  void TearDown() override {
    close(root_fd_);
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  void Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << content;
  }
  std::string dir_;
  int root_fd_ = -1;
};

TEST_F(TempTree, WalkVisitsParentsBeforeChildrenWithoutFollowingLinks) {
  ASSERT_EQ(mkdir((dir_ + "/d").c_str(), 0755), 0);
  Write("d/f", "x");
  Write("a", "y");
  ASSERT_EQ(symlink("/", (dir_ + "/link").c_str()), 0);
  std::vector<std::string> seen;
  ASSERT_TRUE(WalkTree(root_fd_, [&](const std::string& path, const struct stat&) {
    seen.push_back(path);
    return true;
  }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"", "a", "d", "d/f", "link"}));
}

TEST_F(TempTree, SnapshotChunksContentAndReadsXattrs) {
  std::string content(300000, 'q');
  for (size_t i = 0; i < content.size(); i += 7) content[i] = static_cast<char>(i * 31);
  Write("f", content);
  ASSERT_EQ(setxattr((dir_ + "/f").c_str(), "user.k", "v", 1, 0), 0);
  chunker::ChunkIdHasher hasher("secret");
  uint64_t total = 0;
  auto sink = [&](const chunker::ChunkId&, std::span<const uint8_t> data) {
    total += data.size();
    return absl::OkStatus();
  };
  absl::StatusOr<v1::NodeState> state = SnapshotNode(root_fd_, "f", hasher, sink);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->type(), v1::NodeState::REGULAR);
  EXPECT_EQ(state->size(), content.size());
  EXPECT_EQ(total, content.size());
  EXPECT_GE(state->chunks_size(), 2);
  ASSERT_EQ(state->xattrs_size(), 1);
  EXPECT_EQ(state->xattrs(0).name(), "user.k");
  EXPECT_EQ(state->link_group(), 0u);

  // Same content elsewhere: same chunk ids, so CompareNodes sees no content change.
  Write("g", content);
  absl::StatusOr<v1::NodeState> copy = SnapshotNode(root_fd_, "g", hasher, sink);
  ASSERT_TRUE(copy.ok());
  copy->set_path("f");
  copy->set_mtime_ns(state->mtime_ns());
  copy->clear_xattrs();
  auto diff = CompareNodes(*state, *copy);
  ASSERT_EQ(diff.size(), 1u);
  EXPECT_NE(diff[0].find("xattrs"), std::string::npos);
}

TEST_F(TempTree, SnapshotRefusesAnotherInodeAndReportsMissing) {
  Write("f", "abc");
  chunker::ChunkIdHasher hasher("s");
  auto sink = [](const chunker::ChunkId&, std::span<const uint8_t>) { return absl::OkStatus(); };
  ContentSnapshotOptions options;
  options.expected_inode = 1;  // never a regular file's inode
  EXPECT_TRUE(absl::IsFailedPrecondition(SnapshotNode(root_fd_, "f", hasher, sink, options).status()));
  EXPECT_TRUE(absl::IsNotFound(SnapshotNode(root_fd_, "nope", hasher, sink).status()));
}

TEST_F(TempTree, HardLinksShareALinkGroup) {
  Write("f", "abc");
  ASSERT_EQ(link((dir_ + "/f").c_str(), (dir_ + "/g").c_str()), 0);
  auto f = StatNode(root_fd_, "f");
  auto g = StatNode(root_fd_, "g");
  ASSERT_TRUE(f.ok() && g.ok());
  EXPECT_NE(f->link_group(), 0u);
  EXPECT_EQ(f->link_group(), g->link_group());
}

TEST_F(TempTree, IncrementalSnapshotReadsNearTheEditAndMatchesAFullRead) {
  std::string content(8 << 20, '\0');
  uint64_t x = 99;
  for (auto& c : content) c = static_cast<char>((x = x * 6364136223846793005ull + 1) >> 56);
  Write("big", content);
  chunker::ChunkIdHasher hasher("secret");
  auto sink = [](const chunker::ChunkId&, std::span<const uint8_t>) { return absl::OkStatus(); };

  auto store = ChunkMapStore::Open(dir_ + "/maps.sqlite");
  ASSERT_TRUE(store.ok()) << store.status();
  ChunkMap first_map;
  ContentSnapshotOptions first;
  first.map_out = &first_map;
  ASSERT_TRUE(SnapshotNode(root_fd_, "big", hasher, sink, first).ok());
  ASSERT_TRUE((*store)->PutAll({first_map}).ok());
  EXPECT_EQ((*store)->size(), 1u);

  // Overwrite 4 KiB in the middle, as a program through the mount would.
  {
    int fd = open((dir_ + "/big").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::string patch(4096, 'Z');
    ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), 4 << 20), 4096);
    close(fd);
    content.replace(4 << 20, 4096, patch);
  }
  uint64_t bytes_read = 0;
  std::vector<std::string> reused;
  ContentSnapshotOptions incremental;
  incremental.previous_map = [&](uint64_t device, uint64_t inode) { return (*store)->Get(device, inode); };
  incremental.changed = {{4 << 20, 4096}};
  incremental.bytes_read = &bytes_read;
  incremental.reused_ids = &reused;
  auto recut = SnapshotNode(root_fd_, "big", hasher, sink, incremental);
  ASSERT_TRUE(recut.ok()) << recut.status();
  EXPECT_LT(bytes_read, 2u << 20) << "an 8 MiB file was read whole for a 4 KiB edit";
  EXPECT_GT(reused.size(), 50u);

  auto full = SnapshotNode(root_fd_, "big", hasher, sink);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(recut->chunks_size(), full->chunks_size());
  for (int i = 0; i < full->chunks_size(); ++i) EXPECT_EQ(recut->chunks(i).id(), full->chunks(i).id());

  // An attribute change reuses the list without reading anything.
  ChunkMap second_map;
  ContentSnapshotOptions keep = incremental;
  keep.map_out = &second_map;
  ASSERT_TRUE(SnapshotNode(root_fd_, "big", hasher, sink, keep).ok());
  ASSERT_TRUE((*store)->PutAll({second_map}).ok());
  ASSERT_EQ(chmod((dir_ + "/big").c_str(), 0600), 0);
  bytes_read = 0;
  ContentSnapshotOptions attributes;
  attributes.previous_map = incremental.previous_map;
  attributes.content_unchanged = true;
  attributes.bytes_read = &bytes_read;
  auto chmodded = SnapshotNode(root_fd_, "big", hasher, sink, attributes);
  ASSERT_TRUE(chmodded.ok());
  EXPECT_EQ(bytes_read, 0u);
  EXPECT_EQ(chmodded->mode(), 0600u);
  EXPECT_EQ(chmodded->chunks_size(), full->chunks_size());
}

TEST_F(TempTree, AttributesOnlyIsNotTrustedOnceTheFileChanged) {
  Write("f", std::string(200000, 'a'));
  chunker::ChunkIdHasher hasher("secret");
  auto sink = [](const chunker::ChunkId&, std::span<const uint8_t>) { return absl::OkStatus(); };
  ChunkMap map;
  ContentSnapshotOptions first;
  first.map_out = &map;
  ASSERT_TRUE(SnapshotNode(root_fd_, "f", hasher, sink, first).ok());
  // Changed behind our back (same size): an ATTRIBUTES command must not reuse the old list.
  usleep(10000);
  Write("f", std::string(200000, 'b'));
  uint64_t bytes_read = 0;
  ContentSnapshotOptions attributes;
  attributes.previous_map = [&](uint64_t, uint64_t) { return std::optional<ChunkMap>(map); };
  attributes.content_unchanged = true;
  attributes.bytes_read = &bytes_read;
  auto state = SnapshotNode(root_fd_, "f", hasher, sink, attributes);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(bytes_read, 200000u);
  auto full = SnapshotNode(root_fd_, "f", hasher, sink);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(state->chunks(0).id(), full->chunks(0).id());
}

TEST_F(TempTree, AMapOfAnotherInodeIsNotUsed) {
  Write("f", std::string(100000, 'a'));
  chunker::ChunkIdHasher hasher("secret");
  auto sink = [](const chunker::ChunkId&, std::span<const uint8_t>) { return absl::OkStatus(); };
  ChunkMap stale;
  stale.identity.inode = 1;  // never f's inode
  stale.chunks = {{0, 100000, chunker::ChunkId{}}};
  uint64_t bytes_read = 0;
  ContentSnapshotOptions options;
  options.previous_map = [&](uint64_t, uint64_t inode) -> std::optional<ChunkMap> {
    return inode == stale.identity.inode ? std::optional<ChunkMap>(stale) : std::nullopt;
  };
  options.content_unchanged = true;
  options.bytes_read = &bytes_read;
  auto state = SnapshotNode(root_fd_, "f", hasher, sink, options);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(bytes_read, 100000u);
  EXPECT_EQ(state->chunks(0).id(), hasher.Hash(std::string(100000, 'a')).ToBytes());
}

TEST_F(TempTree, ChunkMapIdentitiesListAndInvalidate) {
  auto store = ChunkMapStore::Open(dir_ + "/maps.sqlite");
  ASSERT_TRUE(store.ok()) << store.status();
  ChunkMap a, b;
  a.identity = {1, 10, 100, 111, 112};
  b.identity = {1, 11, 200, 211, 212};
  a.chunks.push_back({0, 100, chunker::ChunkIdHasher("s").Hash(std::string_view("a"))});
  ASSERT_TRUE((*store)->PutAll({a, b}).ok());
  auto identities = (*store)->Identities();
  ASSERT_TRUE(identities.ok()) << identities.status();
  ASSERT_EQ(identities->size(), 2u);
  EXPECT_EQ(identities->at({1, 10}), a.identity);
  EXPECT_EQ(identities->at({1, 11}), b.identity);
  ASSERT_TRUE((*store)->Invalidate(1, 10).ok());
  EXPECT_FALSE((*store)->Get(1, 10).has_value()) << "an invalidated map must not be trusted again";
  EXPECT_TRUE((*store)->Get(1, 11).has_value());
  EXPECT_EQ((*store)->Identities()->size(), 1u);
}

}  // namespace
}  // namespace replifs::client
