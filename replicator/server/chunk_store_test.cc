#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "replicator/server/chunk_file_format.h"
#include "replicator/server/file_chunk_store.h"

namespace replifs::server {
namespace {

class FileChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/chunk_store_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    auto store = FileChunkStore::Open(dir_ + "/repos");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string ChunkPath(int64_t repo, const std::string& hex) {
    return dir_ + "/repos/" + std::to_string(repo) + "/chunks/" + hex.substr(0, 2) + "/" + hex;
  }
  static std::string RandomBytes(size_t size) {
    std::mt19937_64 rng(7);
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    return data;
  }

  std::string dir_;
  std::unique_ptr<FileChunkStore> store_;
};

const std::string kId = std::string("\xab\x01", 2) + std::string(14, '\x02');
const std::string kHex = "ab010202020202020202020202020202";

TEST_F(FileChunkStoreTest, CompressibleDataRoundTripsAndIsCompressedAtRest) {
  const std::string data(200000, 'a');
  ASSERT_TRUE(store_->Put(1, kId, data).ok());
  const auto on_disk = std::filesystem::file_size(ChunkPath(1, kHex));
  EXPECT_LT(on_disk, 2000u);
  auto read = store_->Get(1, kId);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, data);
}

TEST_F(FileChunkStoreTest, IncompressibleDataRoundTripsStoredRaw) {
  const std::string data = RandomBytes(70000);
  ASSERT_TRUE(store_->Put(1, kId, data).ok());
  EXPECT_EQ(std::filesystem::file_size(ChunkPath(1, kHex)), data.size() + kChunkFileHeaderSize);
  auto read = store_->Get(1, kId);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, data);
}

TEST_F(FileChunkStoreTest, EmptyChunkRoundTrips) {
  ASSERT_TRUE(store_->Put(1, kId, "").ok());
  auto read = store_->Get(1, kId);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "");
}

TEST_F(FileChunkStoreTest, TmpFileLeftByCrashIsIgnored) {
  ASSERT_TRUE(store_->Put(1, kId, "complete").ok());
  // A crash after creating a tmp file but before the rename leaves this.
  const std::string other_id = std::string("\xab", 1) + std::string(15, '\x03');
  const std::string tmp = dir_ + "/repos/1/chunks/ab/tmp-ab030303030303030303030303030303-1-0";
  std::ofstream(tmp) << "half written";
  EXPECT_TRUE(absl::IsNotFound(store_->Get(1, other_id).status()));
  EXPECT_EQ(*store_->Get(1, kId), "complete");
  // A later upload of the same chunk still works.
  ASSERT_TRUE(store_->Put(1, other_id, "later").ok());
  EXPECT_EQ(*store_->Get(1, other_id), "later");
}

TEST_F(FileChunkStoreTest, RepositoriesHaveSeparateNamespaces) {
  ASSERT_TRUE(store_->Put(1, kId, "one").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get(2, kId).status()));
}

TEST_F(FileChunkStoreTest, DamagedFileIsDataLoss) {
  ASSERT_TRUE(store_->Put(1, kId, RandomBytes(1000)).ok());
  ASSERT_EQ(truncate(ChunkPath(1, kHex).c_str(), 500), 0);
  EXPECT_EQ(store_->Get(1, kId).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(FileChunkStoreTest, SymlinkInStoreIsNotFollowed) {
  ASSERT_TRUE(store_->Put(1, kId, "x").ok());
  std::filesystem::create_directories(dir_ + "/elsewhere");
  std::filesystem::create_directory_symlink(dir_ + "/elsewhere", dir_ + "/repos/2");
  EXPECT_FALSE(store_->Put(2, kId, "y").ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/elsewhere"));
}

TEST_F(FileChunkStoreTest, RejectsBadIds) {
  EXPECT_EQ(store_->Put(1, "short", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Put(0, kId, "x").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChunkFileFormatTest, RejectsGarbage) {
  EXPECT_EQ(DecodeChunkFile("").status().code(), absl::StatusCode::kDataLoss);
  std::string file = EncodeChunkFile(std::string(1000, 'q'));
  file[5] = 4;  // unknown flag
  EXPECT_EQ(DecodeChunkFile(file).status().code(), absl::StatusCode::kDataLoss);
  file = EncodeChunkFile(std::string(1000, 'q'));
  file[8] = static_cast<char>(0xe9);  // wrong length
  EXPECT_EQ(DecodeChunkFile(file).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace replifs::server
