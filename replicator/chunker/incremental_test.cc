#include "replicator/chunker/incremental.h"

#include <cstring>
#include <random>

#include <gtest/gtest.h>

namespace replifs::chunker {
namespace {

class IncrementalTest : public ::testing::Test {
 protected:
  std::vector<ChunkRecord> FullChunks(const std::vector<uint8_t>& data) {
    std::vector<ChunkRecord> out;
    for (const ChunkSpan& span : ChunkBuffer(data)) {
      out.push_back({span.offset, span.length,
                     hasher_.Hash(std::span<const uint8_t>(data.data() + span.offset, span.length))});
    }
    return out;
  }

  std::vector<ChunkRecord> Recut(const std::vector<ChunkRecord>& previous,
                                 const std::vector<uint8_t>& data, std::vector<ChangedRange> changed,
                                 RechunkStats* stats) {
    ReadAt read = [&](uint64_t offset, std::span<uint8_t> out) {
      EXPECT_LE(offset + out.size(), data.size());
      std::memcpy(out.data(), data.data() + offset, out.size());
      return absl::OkStatus();
    };
    uint64_t sunk = 0;
    NewChunkSink sink = [&](const ChunkRecord&, std::span<const uint8_t> bytes) {
      sunk += bytes.size();
      return absl::OkStatus();
    };
    auto result = Rechunk(previous, data.size(), std::move(changed), read, hasher_, sink, stats);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : std::vector<ChunkRecord>{};
  }

  static std::vector<uint8_t> Random(size_t size, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> data(size);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    return data;
  }

  ChunkIdHasher hasher_{"incremental"};
};

TEST_F(IncrementalTest, SmallEditInABigFileReadsAFewChunks) {
  std::vector<uint8_t> data = Random(64 << 20, 1);
  const auto before = FullChunks(data);
  for (size_t i = 0; i < 4096; ++i) data[(32 << 20) + i] ^= 0x5a;
  RechunkStats stats;
  const auto after = Recut(before, data, {{32 << 20, 4096}}, &stats);
  EXPECT_EQ(after, FullChunks(data));
  EXPECT_LE(stats.bytes_read, 2u << 20) << "reads near the edit only";
  EXPECT_LE(stats.chunks_cut, 6u);
  EXPECT_GT(stats.chunks_reused, before.size() - 8);
}

TEST_F(IncrementalTest, AppendTruncateAndExtendMatchAFullRechunk) {
  std::vector<uint8_t> data = Random(3 << 20, 2);
  auto chunks = FullChunks(data);
  RechunkStats stats;
  // Append.
  auto extra = Random(100000, 3);
  const uint64_t old_size = data.size();
  data.insert(data.end(), extra.begin(), extra.end());
  chunks = Recut(chunks, data, {{old_size, extra.size()}}, &stats);
  EXPECT_EQ(chunks, FullChunks(data));
  // Truncate shorter: no range listed, the size says it.
  data.resize(1234567);
  chunks = Recut(chunks, data, {}, &stats);
  EXPECT_EQ(chunks, FullChunks(data));
  // Extend with zeros (a hole), again by size alone.
  data.resize(5 << 20, 0);
  chunks = Recut(chunks, data, {}, &stats);
  EXPECT_EQ(chunks, FullChunks(data));
  // Truncate to nothing.
  data.clear();
  chunks = Recut(chunks, data, {}, &stats);
  EXPECT_TRUE(chunks.empty());
}

TEST_F(IncrementalTest, RandomEditsAlwaysMatchAFullRechunk) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> data = Random(2 << 20, 4);
  auto chunks = FullChunks(data);
  for (int round = 0; round < 150; ++round) {
    std::vector<ChangedRange> changed;
    uint64_t truncated_to = data.size();  // smallest size within the round, as the scheduler reports
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const int kind = static_cast<int>(rng() % 5);
      if (kind == 0) {  // resize
        data.resize(rng() % (4 << 20), 0);
        truncated_to = std::min<uint64_t>(truncated_to, data.size());
        continue;
      }
      if (data.empty()) data.resize(1000, 1);
      const uint64_t offset = rng() % data.size();
      const uint64_t length = 1 + rng() % (kind == 1 ? 300000 : 5000);
      if (offset + length > data.size()) data.resize(offset + length, 0);
      for (uint64_t i = 0; i < length; ++i) data[offset + i] = static_cast<uint8_t>(rng());
      changed.push_back({offset, length});
    }
    if (truncated_to < data.size()) changed.push_back({truncated_to, data.size() - truncated_to});
    RechunkStats stats;
    chunks = Recut(chunks, data, changed, &stats);
    ASSERT_EQ(chunks, FullChunks(data)) << "round " << round;
  }
}

TEST_F(IncrementalTest, RejectsAPreviousListWithAGap) {
  std::vector<ChunkRecord> broken = {{0, 10, {}}, {20, 10, {}}};
  ReadAt read = [](uint64_t, std::span<uint8_t>) { return absl::OkStatus(); };
  NewChunkSink sink = [](const ChunkRecord&, std::span<const uint8_t>) { return absl::OkStatus(); };
  RechunkStats stats;
  EXPECT_FALSE(Rechunk(broken, 30, {}, read, hasher_, sink, &stats).ok());
}

}  // namespace
}  // namespace replifs::chunker
