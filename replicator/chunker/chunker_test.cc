#include <algorithm>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "replicator/chunker/chunker.h"

namespace replifs::chunker {
namespace {

std::vector<uint8_t> RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> data(size);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  return data;
}

std::set<uint64_t> Ends(const std::vector<ChunkSpan>& chunks) {
  std::set<uint64_t> ends;
  for (const auto& c : chunks) ends.insert(c.offset + c.length);
  return ends;
}

TEST(FastCdc, ChunksCoverTheBufferWithinSizeLimits) {
  auto data = RandomBytes(8 << 20, 1);
  ChunkerParams params;
  auto chunks = ChunkBuffer(data, params);
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].offset, expected_offset);
    EXPECT_LE(chunks[i].length, params.max_size);
    if (i + 1 < chunks.size()) EXPECT_GE(chunks[i].length, params.min_size);
    expected_offset += chunks[i].length;
  }
  EXPECT_EQ(expected_offset, data.size());
  // Normalized chunking keeps the mean near avg_size.
  double mean = static_cast<double>(data.size()) / chunks.size();
  EXPECT_GT(mean, params.avg_size * 0.6);
  EXPECT_LT(mean, params.avg_size * 1.6);
}

TEST(FastCdc, BoundariesAwayFromAnEditDoNotMove) {
  auto original = RandomBytes(4 << 20, 2);
  auto edited = original;
  const size_t edit_at = 2 << 20;
  // Insert 100 bytes in the middle: boundaries before stay, after shift by 100.
  std::vector<uint8_t> insert(100, 0xab);
  edited.insert(edited.begin() + edit_at, insert.begin(), insert.end());

  auto before = Ends(ChunkBuffer(original));
  auto after = Ends(ChunkBuffer(edited));
  size_t kept_before = 0, kept_after = 0, total_before = 0, total_after = 0;
  for (uint64_t end : before) {
    if (end < edit_at) {
      ++total_before;
      kept_before += after.count(end);
    } else if (end > edit_at + 300 * 1024) {  // well past the edit: resynchronized
      ++total_after;
      kept_after += after.count(end + insert.size());
    }
  }
  EXPECT_GT(total_before, 10u);
  EXPECT_EQ(kept_before, total_before);
  EXPECT_EQ(kept_after, total_after);
}

TEST(ChunkIdHasher, IdenticalContentGivesIdenticalIds) {
  ChunkIdHasher hasher("repository secret");
  auto data = RandomBytes(100000, 3);
  auto copy = data;
  EXPECT_EQ(hasher.Hash(data), hasher.Hash(copy));
  copy[500] ^= 1;
  EXPECT_NE(hasher.Hash(data), hasher.Hash(copy));
}

TEST(ChunkIdHasher, SecretKeysTheIds) {
  auto data = RandomBytes(5000, 4);
  EXPECT_NE(ChunkIdHasher("repo a").Hash(data), ChunkIdHasher("repo b").Hash(data));
  EXPECT_EQ(ChunkIdHasher("").Hash(data), ChunkIdHasher("").Hash(data));
}

TEST(ChunkId, HexAndBytesRoundTrip) {
  ChunkId id = ChunkIdHasher("s").Hash(std::string_view("hello"));
  EXPECT_EQ(id.ToHex().size(), 32u);
  ChunkId back;
  ASSERT_TRUE(ChunkId::FromBytes(id.ToBytes(), &back));
  EXPECT_EQ(back, id);
  EXPECT_FALSE(ChunkId::FromBytes("short", &back));
}

}  // namespace
}  // namespace replifs::chunker
