// Chunk-list deltas and chunk patches through the real gRPC service
// (issue 5): a delta rebuilds exactly the full list, a wrong base or a bad
// patch is refused with a clear error and stores nothing.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <zstd.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replicator/delta/chunk_list_delta.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/server/backup_server.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/sqlite_catalog.h"

namespace replifs::server {
namespace {

class WireDeltaServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/wire_delta_service_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.store_dir = dir_ + "/store";
    auto server = BackupServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    {
      auto catalog = SqliteCatalog::Open(dir_ + "/store/catalog.sqlite");
      ASSERT_TRUE(catalog.ok()) << catalog.status();
      auto token = CreateRepoWithToken(**catalog, "home");
      ASSERT_TRUE(token.ok()) << token.status();
      token_ = *token;
    }
    stub_ = v1::Backup::NewStub(grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    v1::HelloRequest hello;
    hello.set_repo("home");
    hello.set_journal_id("j1");
    v1::HelloReply reply;
    grpc::ClientContext context;
    Authorize(&context);
    ASSERT_TRUE(stub_->Hello(&context, hello, &reply).ok());
    hasher_.emplace(reply.chunk_secret());
  }
  void TearDown() override {
    stub_.reset();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Authorize(grpc::ClientContext* context) { context->AddMetadata("authorization", "Bearer " + token_); }

  static std::string Content(int n, size_t size = 100) {
    std::mt19937 rng(n);
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    return data;
  }
  v1::ChunkRef Ref(const std::string& data) {
    v1::ChunkRef ref;
    ref.set_id(hasher_->Hash(data).ToBytes());
    ref.set_length(static_cast<uint32_t>(data.size()));
    return ref;
  }
  v1::ChunkUpload Whole(const std::string& data) {
    v1::ChunkUpload upload;
    upload.set_repo("home");
    upload.set_id(hasher_->Hash(data).ToBytes());
    upload.set_length(static_cast<uint32_t>(data.size()));
    upload.set_data(data);
    return upload;
  }
  grpc::Status Send(const std::vector<v1::ChunkUpload>& uploads) {
    grpc::ClientContext context;
    Authorize(&context);
    v1::UploadReply reply;
    auto writer = stub_->UploadChunks(&context, &reply);
    for (const auto& upload : uploads) {
      if (!writer->Write(upload)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  grpc::Status Apply(const v1::Operation& op) {
    v1::ApplyRequest request;
    request.set_repo("home");
    request.set_journal_id("j1");
    *request.add_operations() = op;
    grpc::ClientContext context;
    Authorize(&context);
    v1::ApplyReply reply;
    return stub_->Apply(&context, request, &reply);
  }
  bool Stored(const std::string& id) {
    v1::MissingChunksRequest request;
    request.set_repo("home");
    request.add_ids(id);
    grpc::ClientContext context;
    Authorize(&context);
    v1::MissingChunksReply reply;
    EXPECT_TRUE(stub_->MissingChunks(&context, request, &reply).ok());
    return reply.ids_size() == 0;
  }
  // The latest chunk list of `path`.
  delta::ChunkList Listed(const std::string& path) {
    v1::ListRequest request;
    request.set_repo("home");
    request.add_paths(path);
    grpc::ClientContext context;
    Authorize(&context);
    auto reader = stub_->List(&context, request);
    v1::NodeState state, found;
    while (reader->Read(&state)) {
      if (state.path() == path) found = state;
    }
    EXPECT_TRUE(reader->Finish().ok());
    return found.chunks();
  }
  static v1::Operation Put(const std::string& path, const delta::ChunkList& chunks, uint64_t seq) {
    v1::Operation op;
    op.set_seq(seq);
    v1::NodeState* put = op.mutable_put();
    put->set_path(path);
    put->set_type(v1::NodeState::REGULAR);
    put->set_mode(0644);
    uint64_t size = 0;
    for (const v1::ChunkRef& ref : chunks) size += ref.length();
    put->set_size(size);
    *put->mutable_chunks() = chunks;
    return op;
  }
  static std::vector<std::string> Ids(const delta::ChunkList& list) {
    std::vector<std::string> ids;
    for (const v1::ChunkRef& ref : list) ids.push_back(ref.id());
    return ids;
  }
  // Stores `count` chunks and commits them as `path`; returns the list.
  delta::ChunkList Committed(const std::string& path, int count) {
    std::vector<v1::ChunkUpload> uploads;
    delta::ChunkList list;
    for (int i = 0; i < count; ++i) {
      uploads.push_back(Whole(Content(i)));
      *list.Add() = Ref(Content(i));
    }
    EXPECT_TRUE(Send(uploads).ok());
    EXPECT_TRUE(Apply(Put(path, list, 1)).ok());
    return list;
  }

  std::string dir_, token_;
  std::unique_ptr<BackupServer> server_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  std::optional<chunker::ChunkIdHasher> hasher_;
};

TEST_F(WireDeltaServiceTest, DeltaOfAPagedListCommitsTheSameListAsTheFullOne) {
  const delta::ChunkList base = Committed("big", 300);  // > 64 refs: a page tree
  delta::ChunkList target = base;
  *target.Mutable(150) = Ref(Content(1000));
  *target.Add() = Ref(Content(1001));
  target.DeleteSubrange(10, 2);
  ASSERT_TRUE(Send({Whole(Content(1000)), Whole(Content(1001))}).ok());
  v1::Operation op = Put("big", target, 2);
  op.mutable_put()->clear_chunks();
  *op.mutable_put_chunks_delta() = delta::MakeChunkListDelta(base, target);
  EXPECT_LT(op.ByteSizeLong(), 300u);
  grpc::Status status = Apply(op);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Ids(Listed("big")), Ids(target));
}

TEST_F(WireDeltaServiceTest, AWrongBaseIsRefusedAndNothingIsCommitted) {
  const delta::ChunkList base = Committed("f", 100);
  delta::ChunkList other = base;
  other.SwapElements(3, 4);  // same count and size, other order
  delta::ChunkList target = base;
  target.RemoveLast();
  v1::Operation op = Put("f", target, 2);
  op.mutable_put()->clear_chunks();
  *op.mutable_put_chunks_delta() = delta::MakeChunkListDelta(other, target);
  grpc::Status status = Apply(op);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("chunk-list base of \"f\" does not match"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(Ids(Listed("f")), Ids(base));
  // No file at the path at all: refused the same way.
  op.mutable_put()->set_path("nothing-here");
  EXPECT_EQ(Apply(op).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // The client's fallback, the full list, commits.
  ASSERT_TRUE(Apply(Put("f", target, 3)).ok());
  EXPECT_EQ(Ids(Listed("f")), Ids(target));
}

TEST_F(WireDeltaServiceTest, ADeltaNamingAnUnstoredChunkIsRefused) {
  const delta::ChunkList base = Committed("f", 10);
  delta::ChunkList target = base;
  *target.Mutable(5) = Ref(Content(777));  // never uploaded
  v1::Operation op = Put("f", target, 2);
  op.mutable_put()->clear_chunks();
  *op.mutable_put_chunks_delta() = delta::MakeChunkListDelta(base, target);
  EXPECT_EQ(Apply(op).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Ids(Listed("f")), Ids(base));
}

TEST_F(WireDeltaServiceTest, APatchedUploadStoresTheRightChunk) {
  Committed("f", 3);
  // The new chunk: chunk 1 with bytes 40..50 rewritten, then chunk 2's start.
  std::string chunk = Content(1) + Content(2).substr(0, 30);
  for (int i = 40; i < 50; ++i) chunk[i] = 'X';
  std::vector<chunker::ChunkRecord> previous;
  for (int i = 0; i < 3; ++i) previous.push_back({uint64_t(i) * 100, 100, hasher_->Hash(Content(i))});
  std::optional<delta::ChunkPatch> patch = delta::MakeInPlacePatch(
      100, {reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()}, previous, 300, {{140, 10}});
  ASSERT_TRUE(patch.has_value());
  v1::ChunkUpload upload = Whole(chunk);
  delta::FillChunkUpload(chunk, &*patch, &upload);
  ASSERT_GT(upload.patch_size(), 0);
  EXPECT_LT(upload.data().size(), 20u);
  grpc::Status status = Send({upload});
  ASSERT_TRUE(status.ok()) << status.error_message();
  // Read back through the service: the bytes are the chunk's.
  v1::ReadChunksRequest read;
  read.set_repo("home");
  read.add_ids(upload.id());
  grpc::ClientContext context;
  Authorize(&context);
  auto reader = stub_->ReadChunks(&context, read);
  v1::ChunkData data;
  ASSERT_TRUE(reader->Read(&data));
  EXPECT_EQ(data.data(), chunk);
  while (reader->Read(&data)) {}
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(WireDeltaServiceTest, BadPatchesAreRefusedAndStoreNothing) {
  Committed("f", 3);
  std::string chunk = Content(1);
  chunk[0] = 'Y';
  v1::ChunkUpload good;
  good.set_repo("home");
  good.set_id(hasher_->Hash(chunk).ToBytes());
  good.set_length(100);
  good.set_data("Y");
  v1::ChunkPatchOp* literal = good.add_patch();
  literal->set_length(1);
  v1::ChunkPatchOp* copy = good.add_patch();
  copy->set_copy_from(hasher_->Hash(Content(1)).ToBytes());
  copy->set_offset(1);
  copy->set_length(99);

  auto refused = [&](const v1::ChunkUpload& upload, const std::string& words) {
    grpc::Status status = Send({upload});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find(words), std::string::npos) << status.error_message();
    EXPECT_FALSE(Stored(upload.id()));
  };
  v1::ChunkUpload wrong_id = good;
  wrong_id.set_id(hasher_->Hash(Content(99)).ToBytes());
  refused(wrong_id, "does not match its content");
  v1::ChunkUpload unknown = good;
  unknown.mutable_patch(1)->set_copy_from(hasher_->Hash(Content(98)).ToBytes());
  refused(unknown, "which is not stored");
  v1::ChunkUpload out_of_range = good;
  out_of_range.mutable_patch(1)->set_offset(2);
  refused(out_of_range, "which has 100 bytes");
  v1::ChunkUpload huge = good;
  huge.set_length(1u << 30);
  huge.mutable_patch(0)->set_length((1u << 30) - 99);
  refused(huge, "the limit is");
  // The good one is stored.
  ASSERT_TRUE(Send({good}).ok());
  EXPECT_TRUE(Stored(good.id()));
}

TEST_F(WireDeltaServiceTest, DownloadsSendStoredFramesOnlyWhenAccepted) {
  const std::string text(200000, 'a');  // compresses well
  ASSERT_TRUE(Send({Whole(text)}).ok());
  for (bool accept : {false, true}) {
    v1::ReadChunksRequest read;
    read.set_repo("home");
    read.add_ids(hasher_->Hash(text).ToBytes());
    read.set_accept_compressed(accept);
    grpc::ClientContext context;
    Authorize(&context);
    auto reader = stub_->ReadChunks(&context, read);
    v1::ChunkData data;
    ASSERT_TRUE(reader->Read(&data));
    EXPECT_EQ(data.compressed(), accept);
    if (accept) {
      EXPECT_LT(data.data().size(), 1000u);
      std::string plain(text.size(), '\0');
      EXPECT_EQ(ZSTD_decompress(plain.data(), plain.size(), data.data().data(), data.data().size()), text.size());
      EXPECT_EQ(plain, text);
    } else {
      EXPECT_EQ(data.data(), text);
    }
    while (reader->Read(&data)) {}
    EXPECT_TRUE(reader->Finish().ok());
  }
}

}  // namespace
}  // namespace replifs::server
