#include <algorithm>
#include <array>
#include <bit>
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

// The byte-at-a-time FastCDC loop the optimized scanner must agree with: the
// gear table is rebuilt here from its definition (splitmix64 from "replifs!").
size_t ReferenceChunkLength(std::span<const uint8_t> data, const ChunkerParams& params) {
  std::array<uint64_t, 256> gear{};
  uint64_t state = 0x7265706c69667321ull;
  for (auto& entry : gear) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    entry = z ^ (z >> 31);
  }
  size_t n = data.size();
  if (n <= params.min_size) return n;
  if (n > params.max_size) n = params.max_size;
  const size_t normal = std::min(params.avg_size, n);
  const int avg_bits = std::bit_width(params.avg_size) - 1;
  const uint64_t hard = ~0ull << (64 - (avg_bits + 2));
  const uint64_t easy = ~0ull << (64 - (avg_bits - 2));
  uint64_t hash = 0;
  for (size_t i = params.min_size; i < n; ++i) {
    hash = (hash << 1) + gear[data[i]];
    if ((hash & (i < normal ? hard : easy)) == 0) return i + 1;
  }
  return n;
}

TEST(FastCdc, CutsExactlyWhereTheByteAtATimeLoopCuts) {
  // Random data, text-like data (few distinct bytes) and runs of one byte,
  // with the default sizes and with odd ones (ends not multiples of 4).
  std::vector<std::vector<uint8_t>> inputs;
  inputs.push_back(RandomBytes(6 << 20, 7));
  std::vector<uint8_t> text = RandomBytes(3 << 20, 8);
  for (auto& b : text) b = static_cast<uint8_t>('a' + b % 7);
  inputs.push_back(text);
  std::vector<uint8_t> runs(2 << 20, 0);
  for (size_t i = 0; i < runs.size(); ++i) runs[i] = static_cast<uint8_t>((i / 70001) * 37);
  inputs.push_back(runs);
  const ChunkerParams odd{.min_size = 1001, .avg_size = 4096, .max_size = 16383};
  size_t compared = 0;
  for (const ChunkerParams& params : {ChunkerParams{}, odd}) {
    for (const auto& input : inputs) {
      std::span<const uint8_t> all(input);
      for (size_t offset = 0; offset < input.size();) {
        const size_t want = ReferenceChunkLength(all.subspan(offset), params);
        ASSERT_EQ(NextChunkLength(all.subspan(offset), params, true), want) << "at offset " << offset;
        // Also from offsets that are not chunk starts (other alignments).
        const size_t shifted = std::min(offset + offset % 3 + 1, input.size() - 1);
        ASSERT_EQ(NextChunkLength(all.subspan(shifted), params, true),
                  ReferenceChunkLength(all.subspan(shifted), params))
            << "at offset " << shifted;
        offset += want;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 1000u);
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
