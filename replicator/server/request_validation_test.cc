#include "replicator/server/request_validation.h"

#include <string>

#include "gtest/gtest.h"

namespace replifs::server {
namespace {

TEST(ValidatePathTest, AcceptsOrdinaryRelativePaths) {
  EXPECT_TRUE(ValidatePath("a", false).ok());
  EXPECT_TRUE(ValidatePath("a/b c/.hidden/..x", false).ok());
  EXPECT_TRUE(ValidatePath(std::string(255, 'n'), false).ok());
  EXPECT_TRUE(ValidatePath("", true).ok());
}

TEST(ValidatePathTest, RejectsHostilePaths) {
  for (const std::string& path :
       {std::string(""), std::string("/abs"), std::string("../x"), std::string("a/../b"),
        std::string("a/./b"), std::string("."), std::string("a//b"), std::string("a/"),
        std::string("a\0b", 3), std::string(5000, 'x'), std::string(256, 'n')}) {
    EXPECT_EQ(ValidatePath(path, false).code(), absl::StatusCode::kInvalidArgument) << path;
  }
}

TEST(ValidateRepoNameTest, Limits) {
  EXPECT_TRUE(ValidateRepoName("home").ok());
  EXPECT_FALSE(ValidateRepoName("").ok());
  EXPECT_FALSE(ValidateRepoName(std::string(256, 'r')).ok());
  EXPECT_FALSE(ValidateRepoName(std::string("a\0b", 3)).ok());
}

TEST(ValidateOperationsTest, RootOnlyAsDirectoryPut) {
  google::protobuf::RepeatedPtrField<v1::Operation> ops;
  v1::Operation* op = ops.Add();
  op->mutable_put()->set_type(v1::NodeState::DIRECTORY);
  EXPECT_TRUE(ValidateOperations(ops).ok());
  op->mutable_put()->set_type(v1::NodeState::REGULAR);
  EXPECT_FALSE(ValidateOperations(ops).ok());
  op->set_remove("");
  EXPECT_FALSE(ValidateOperations(ops).ok());
}

TEST(ValidateOperationsTest, ChunkLengthsMustAddUpToSize) {
  google::protobuf::RepeatedPtrField<v1::Operation> ops;
  v1::NodeState* put = ops.Add()->mutable_put();
  put->set_path("f");
  put->set_type(v1::NodeState::REGULAR);
  put->set_size(10);
  v1::ChunkRef* chunk = put->add_chunks();
  chunk->set_id(std::string(16, 'i'));
  chunk->set_length(9);
  EXPECT_EQ(ValidateOperations(ops).code(), absl::StatusCode::kInvalidArgument);
  chunk->set_length(10);
  EXPECT_TRUE(ValidateOperations(ops).ok());
  chunk->set_id("short");
  EXPECT_FALSE(ValidateOperations(ops).ok());
}

TEST(ValidateOperationsTest, RejectsRenameIntoItselfAndEmptyOps) {
  google::protobuf::RepeatedPtrField<v1::Operation> ops;
  v1::Operation* op = ops.Add();
  op->mutable_rename()->set_from("a");
  op->mutable_rename()->set_to("a/b");
  EXPECT_FALSE(ValidateOperations(ops).ok());
  op->mutable_rename()->set_to("ab");
  EXPECT_TRUE(ValidateOperations(ops).ok());
  ops.Add();
  EXPECT_FALSE(ValidateOperations(ops).ok());
}

}  // namespace
}  // namespace replifs::server
