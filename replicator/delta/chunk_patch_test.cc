#include "replicator/delta/chunk_patch.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <map>
#include <random>

namespace replifs::delta {
namespace {

using chunker::ChunkRecord;

std::string Bytes(size_t n, int seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

chunker::ChunkId IdOf(int n) {
  chunker::ChunkId id;
  id.bytes[0] = static_cast<uint8_t>(n);
  id.bytes[15] = 'p';
  return id;
}

// A previous version of three chunks and a store holding them.
struct Previous {
  std::string content = Bytes(30000, 1);
  std::vector<ChunkRecord> chunks = {{0, 10000, IdOf(1)}, {10000, 12000, IdOf(2)}, {22000, 8000, IdOf(3)}};
  std::map<std::string, std::string> store;
  Previous() {
    for (const ChunkRecord& c : chunks) store[c.id.ToBytes()] = content.substr(c.offset, c.length);
  }
  StoredChunkFn Fn() {
    return [this](const std::string& id) -> absl::StatusOr<std::string> {
      auto found = store.find(id);
      if (found == store.end()) return absl::NotFoundError("no such chunk");
      return found->second;
    };
  }
};

v1::ChunkUpload UploadOf(const ChunkPatch& patch, const std::string& chunk, bool compress) {
  v1::ChunkUpload upload;
  upload.set_id(std::string(16, 'i'));
  upload.set_length(chunk.size());
  for (const v1::ChunkPatchOp& op : patch.ops) *upload.add_patch() = op;
  if (compress) {
    std::string out(ZSTD_compressBound(patch.literals.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), patch.literals.data(), patch.literals.size(), 1));
    upload.set_data(out);
    upload.set_compressed(true);
  } else {
    upload.set_data(patch.literals);
  }
  return upload;
}

std::span<const uint8_t> Span(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(ChunkPatch, InPlaceEditAcrossOldBoundariesRebuildsTheChunk) {
  Previous previous;
  std::string now = previous.content;
  for (int i = 9000; i < 9000 + 4096; ++i) now[i] = 'E';  // spans old chunks 1 and 2
  now += Bytes(500, 2);                                     // grown past the old end
  // A new chunk from 5000 to the end.
  const std::string chunk = now.substr(5000);
  std::optional<ChunkPatch> patch = MakeInPlacePatch(
      5000, Span(chunk), previous.chunks, previous.content.size(), {{9000, 4096}, {30000, 500}});
  ASSERT_TRUE(patch.has_value());
  EXPECT_EQ(patch->literals.size(), 4096u + 500u);
  EXPECT_EQ(patch->copied, chunk.size() - 4096 - 500);
  for (bool compress : {false, true}) {
    absl::StatusOr<std::string> built =
        BuildPatchedChunk(UploadOf(*patch, chunk, compress), 1 << 20, previous.Fn());
    ASSERT_TRUE(built.ok()) << built.status();
    EXPECT_EQ(*built, chunk);
  }
}

TEST(ChunkPatch, NothingToCopyMeansNoPatch) {
  Previous previous;
  const std::string chunk = Bytes(1000, 3);
  EXPECT_FALSE(MakeInPlacePatch(30000, Span(chunk), previous.chunks, 30000, {}).has_value());
  EXPECT_FALSE(MakeInPlacePatch(0, Span(chunk), previous.chunks, 30000, {{0, 1000}}).has_value());
}

TEST(ChunkPatch, HostilePatchesAreRefusedWithAClearError) {
  Previous previous;
  const std::string chunk = previous.content.substr(0, 20000);
  std::optional<ChunkPatch> patch = MakeInPlacePatch(0, Span(chunk), previous.chunks, 30000, {{100, 10}});
  ASSERT_TRUE(patch.has_value());
  const v1::ChunkUpload good = UploadOf(*patch, chunk, false);
  ASSERT_TRUE(BuildPatchedChunk(good, 1 << 20, previous.Fn()).ok());

  auto refused = [&](v1::ChunkUpload upload, const std::string& words) {
    absl::StatusOr<std::string> built = BuildPatchedChunk(upload, 1 << 20, previous.Fn());
    ASSERT_FALSE(built.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(built.status())) << built.status();
    EXPECT_NE(built.status().message().find(words), std::string::npos) << built.status();
    EXPECT_EQ(built.status().message().find('\n'), std::string::npos);
  };
  v1::ChunkUpload out_of_range = good;
  out_of_range.mutable_patch(0)->set_offset(UINT32_MAX);
  refused(out_of_range, "which has 10000 bytes");
  v1::ChunkUpload unknown = good;
  unknown.mutable_patch(0)->set_copy_from(std::string(16, 'u'));
  refused(unknown, "which is not stored");
  v1::ChunkUpload short_id = good;
  short_id.mutable_patch(0)->set_copy_from("abc");
  refused(short_id, "3-byte chunk id");
  v1::ChunkUpload huge_literal = good;
  huge_literal.mutable_patch(1)->set_length(UINT32_MAX);
  refused(huge_literal, "ops add up to");
  v1::ChunkUpload too_long = good;
  too_long.set_length(2 << 20);
  refused(too_long, "the limit is");
  v1::ChunkUpload lying_literals = good;
  lying_literals.set_data(good.data() + "x");
  refused(lying_literals, "literal bytes");
  v1::ChunkUpload bomb = UploadOf(*patch, chunk, true);
  bomb.set_data(std::string("\x28\xb5\x2f\xfd") + std::string(20, '\xff'));
  refused(bomb, "do not decompress");
  v1::ChunkUpload many = good;
  for (int i = 0; i < kMaxPatchOps; ++i) *many.add_patch() = good.patch(0);
  refused(many, "ops; the limit is");
}

}  // namespace
}  // namespace replifs::delta
