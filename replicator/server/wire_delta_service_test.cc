// Chunk-list deltas and chunk patches through the real gRPC service
// (issue 5): a delta rebuilds exactly the full list, a wrong base or a bad
// patch is refused with a clear error and stores nothing.
#include <zstd.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replicator/delta/chunk_list_delta.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/server/service_test_fixture.h"

namespace replifs::server {
namespace {

class WireDeltaServiceTest : public ServiceTest {
 protected:
  static std::string Content(int n, size_t size = 100) {
    std::mt19937 rng(n);
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    return data;
  }
  v1::ChunkRef Ref(const std::string& data) {
    v1::ChunkRef ref;
    ref.set_id(IdOf(data));
    ref.set_length(static_cast<uint32_t>(data.size()));
    return ref;
  }
  v1::ChunkUpload Whole(const std::string& data) {
    v1::ChunkUpload upload;
    upload.set_repo("home");
    upload.set_id(IdOf(data));
    upload.set_length(static_cast<uint32_t>(data.size()));
    upload.set_data(data);
    return upload;
  }
  grpc::Status Send(const std::vector<v1::ChunkUpload>& uploads) {
    v1::UploadReply reply;
    return SendUploads(uploads, &reply);
  }
  grpc::Status Apply(const v1::Operation& op) {
    v1::ApplyReply reply;
    return ApplyOps({op}, &reply);
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
    v1::NodeState found;
    for (const v1::NodeState& state : ListAll({path})) {
      if (state.path() == path) found = state;
    }
    return found.chunks();
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
    EXPECT_TRUE(Apply(PutFileOp(path, list, 1)).ok());
    return list;
  }
};

TEST_F(WireDeltaServiceTest, DeltaOfAPagedListCommitsTheSameListAsTheFullOne) {
  const delta::ChunkList base = Committed("big", 300);  // > 64 refs: a page tree
  delta::ChunkList target = base;
  *target.Mutable(150) = Ref(Content(1000));
  *target.Add() = Ref(Content(1001));
  target.DeleteSubrange(10, 2);
  ASSERT_TRUE(Send({Whole(Content(1000)), Whole(Content(1001))}).ok());
  v1::Operation op = PutFileOp("big", target, 2);
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
  v1::Operation op = PutFileOp("f", target, 2);
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
  ASSERT_TRUE(Apply(PutFileOp("f", target, 3)).ok());
  EXPECT_EQ(Ids(Listed("f")), Ids(target));
}

TEST_F(WireDeltaServiceTest, ADeltaNamingAnUnstoredChunkIsRefused) {
  const delta::ChunkList base = Committed("f", 10);
  delta::ChunkList target = base;
  *target.Mutable(5) = Ref(Content(777));  // never uploaded
  v1::Operation op = PutFileOp("f", target, 2);
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
  std::vector<v1::ChunkData> read;
  EXPECT_TRUE(ReadChunks({upload.id()}, &read).ok());
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].data(), chunk);
}

TEST_F(WireDeltaServiceTest, BadPatchesAreRefusedAndStoreNothing) {
  Committed("f", 3);
  std::string chunk = Content(1);
  chunk[0] = 'Y';
  v1::ChunkUpload good;
  good.set_repo("home");
  good.set_id(IdOf(chunk));
  good.set_length(100);
  good.set_data("Y");
  v1::ChunkPatchOp* literal = good.add_patch();
  literal->set_length(1);
  v1::ChunkPatchOp* copy = good.add_patch();
  copy->set_copy_from(IdOf(Content(1)));
  copy->set_offset(1);
  copy->set_length(99);

  auto refused = [&](const v1::ChunkUpload& upload, const std::string& words) {
    grpc::Status status = Send({upload});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find(words), std::string::npos) << status.error_message();
    EXPECT_FALSE(Stored(upload.id()));
  };
  v1::ChunkUpload wrong_id = good;
  wrong_id.set_id(IdOf(Content(99)));
  refused(wrong_id, "does not match its content");
  v1::ChunkUpload unknown = good;
  unknown.mutable_patch(1)->set_copy_from(IdOf(Content(98)));
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
    std::vector<v1::ChunkData> read;
    EXPECT_TRUE(ReadChunks({IdOf(text)}, &read, accept).ok());
    ASSERT_EQ(read.size(), 1u);
    const v1::ChunkData& data = read[0];
    EXPECT_EQ(data.compressed(), accept);
    if (accept) {
      EXPECT_LT(data.data().size(), 1000u);
      std::string plain(text.size(), '\0');
      EXPECT_EQ(ZSTD_decompress(plain.data(), plain.size(), data.data().data(), data.data().size()), text.size());
      EXPECT_EQ(plain, text);
    } else {
      EXPECT_EQ(data.data(), text);
    }
  }
}

}  // namespace
}  // namespace replifs::server
