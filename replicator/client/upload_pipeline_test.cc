// UploadPipeline against a real in-process replifs server on 127.0.0.1:0:
// every chunk of every group ends up stored (each once), groups with chunks
// the server has send only the rest, a healthy link grows its streams past
// the starting size, and a server that is gone turns into an error.
#include "replicator/client/upload_pipeline.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/client/repo_connection.h"
#include "replicator/server/backup_server.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/sqlite_catalog.h"

namespace replifs::client {
namespace {

class UploadPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/upload_pipeline_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.store_dir = dir_ + "/store";
    auto started = server::BackupServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    auto catalog = server::SqliteCatalog::Open(dir_ + "/store/catalog.sqlite");
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    auto token = server::CreateRepoWithToken(**catalog, "home");
    ASSERT_TRUE(token.ok()) << token.status();
    ConnectionOptions connection;
    connection.server = server_->address();
    connection.repo = "home";
    connection.journal_id = "j1";
    connection.token = *token;
    connection.rpc_timeout = absl::Seconds(20);
    auto opened = RepoConnection::Open(connection);
    ASSERT_TRUE(opened.ok()) << opened.status();
    connection_ = std::move(*opened);
  }
  void TearDown() override {
    connection_.reset();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A chunk of `size` bytes: seeded random (incompressible), or text-like.
  RepoConnection::UploadItem Chunk(size_t size, uint32_t seed, bool compressible = false) {
    std::mt19937 rng(seed);
    std::string data(size, '\0');
    for (char& c : data) c = compressible ? "replifs "[rng() % 8] : static_cast<char>(rng());
    return {connection_->hasher().Hash(data).ToBytes(), std::move(data), std::nullopt};
  }
  std::vector<std::string> Missing(const std::vector<std::string>& ids) {
    auto missing = connection_->MissingChunks(ids);
    EXPECT_TRUE(missing.ok()) << missing.status();
    return missing.ok() ? *missing : ids;
  }

  std::string dir_;
  std::unique_ptr<server::BackupServer> server_;
  std::unique_ptr<RepoConnection> connection_;
};

TEST_F(UploadPipelineTest, EveryGroupIsStoredAndEachChunkSentOnce) {
  std::vector<std::vector<RepoConnection::UploadItem>> groups(6);
  std::vector<std::string> all_ids;
  std::set<std::string> unique;
  size_t raw_bytes = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (uint32_t i = 0; i < 20; ++i) {
      // Groups 0-2 hold text-like chunks (compressed on the wire), 3-5 random ones.
      RepoConnection::UploadItem item = Chunk(16384 + 977 * i, 1000 * g + i, g < 3);
      all_ids.push_back(item.id);
      if (unique.insert(item.id).second) raw_bytes += item.data.size();
      groups[g].push_back(std::move(item));
    }
  }
  // The last group repeats chunks of the first: stored by then, not sent again.
  for (int i = 0; i < 5; ++i) {
    RepoConnection::UploadItem copy = groups[0][i];
    groups.back().push_back(std::move(copy));
  }
  ASSERT_EQ(Missing(all_ids).size(), unique.size());

  UploadPipeline pipeline(connection_.get(), /*workers=*/2, /*max_queued=*/1);
  for (auto& group : groups) ASSERT_TRUE(pipeline.Submit(std::move(group)).ok());
  ASSERT_TRUE(pipeline.Submit({}).ok()) << "an empty group is a no-op";
  ASSERT_TRUE(pipeline.Drain().ok());
  EXPECT_TRUE(Missing(all_ids).empty()) << "a submitted chunk is not on the server after Drain";
  // Two workers may both send a chunk only if two groups hold it at once;
  // here the repeats come after their first group was drained out.
  EXPECT_LE(pipeline.chunks_uploaded(), unique.size() + 5);
  EXPECT_GE(pipeline.chunks_uploaded(), unique.size());
  EXPECT_GT(pipeline.bytes_uploaded(), 0u);
  EXPECT_LT(pipeline.bytes_uploaded(), raw_bytes) << "text-like chunks travel compressed";
}

TEST_F(UploadPipelineTest, ChunksTheServerHasAreNotSent) {
  std::vector<RepoConnection::UploadItem> first, second;
  for (uint32_t i = 0; i < 10; ++i) first.push_back(Chunk(20000, 77 + i));
  second = first;
  {
    UploadPipeline pipeline(connection_.get());
    ASSERT_TRUE(pipeline.Submit(std::move(first)).ok());
    ASSERT_TRUE(pipeline.Drain().ok());
    EXPECT_EQ(pipeline.chunks_uploaded(), 10u);
  }
  UploadPipeline again(connection_.get());
  ASSERT_TRUE(again.Submit(std::move(second)).ok());
  ASSERT_TRUE(again.Drain().ok());
  EXPECT_EQ(again.chunks_uploaded(), 0u) << "MissingChunks said the server has them all";
  EXPECT_EQ(again.bytes_uploaded(), 0u);
}

TEST_F(UploadPipelineTest, AHealthyLinkGrowsItsStreamsPastTheStartingSize) {
  ASSERT_EQ(connection_->stream_bytes(), RepoConnection::kStartStreamBytes);
  std::vector<RepoConnection::UploadItem> group;
  for (uint32_t i = 0; i < 100; ++i) group.push_back(Chunk(200000, 5000 + i));  // 20 MB, incompressible
  UploadPipeline pipeline(connection_.get(), /*workers=*/1);
  ASSERT_TRUE(pipeline.Submit(std::move(group)).ok());
  ASSERT_TRUE(pipeline.Drain().ok());
  EXPECT_EQ(pipeline.chunks_uploaded(), 100u);
  EXPECT_GT(connection_->stream_bytes(), RepoConnection::kStartStreamBytes)
      << "complete streams must double the next one's size";
  EXPECT_LE(connection_->stream_bytes(), RepoConnection::kMaxStreamBytes);
  EXPECT_EQ(connection_->upload_retries(), 0u);
}

TEST_F(UploadPipelineTest, AServerThatIsGoneIsAnErrorAndLaterGroupsAreNotSent) {
  server_.reset();  // stopped: MissingChunks fails
  UploadPipeline pipeline(connection_.get(), /*workers=*/1, /*max_queued=*/1);
  std::vector<RepoConnection::UploadItem> group = {Chunk(20000, 9)};
  ASSERT_TRUE(pipeline.Submit(std::move(group)).ok());  // queued; fails in the background
  const absl::Status drained = pipeline.Drain();
  EXPECT_FALSE(drained.ok());
  EXPECT_TRUE(absl::IsUnavailable(drained)) << drained;
  // Once a group failed, Submit reports it and queues nothing more.
  EXPECT_FALSE(pipeline.Submit({Chunk(20000, 10)}).ok());
  EXPECT_EQ(pipeline.chunks_uploaded(), 0u);
}

}  // namespace
}  // namespace replifs::client
