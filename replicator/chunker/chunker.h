// Content-defined chunking (FastCDC with normalized chunking) and chunk ids
// (XXH3-128 keyed by a per-repository secret). Shared by client and server:
// the server re-hashes what it receives with the same hasher.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace replifs::chunker {

struct ChunkerParams {
  size_t min_size = 16 * 1024;
  size_t avg_size = 64 * 1024;
  size_t max_size = 256 * 1024;
};

// 16 bytes, big-endian XXH3-128 digest.
struct ChunkId {
  std::array<uint8_t, 16> bytes{};
  std::string ToBytes() const { return std::string(bytes.begin(), bytes.end()); }
  std::string ToHex() const;
  static bool FromBytes(std::string_view raw, ChunkId* out);
  friend bool operator==(const ChunkId&, const ChunkId&) = default;
  friend auto operator<=>(const ChunkId&, const ChunkId&) = default;
};

class ChunkIdHasher {
 public:
  // `repository_secret` may be any length; it is expanded to an XXH3 secret.
  explicit ChunkIdHasher(std::string_view repository_secret);
  ChunkId Hash(std::span<const uint8_t> data) const;
  ChunkId Hash(std::string_view data) const {
    return Hash(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  }

 private:
  std::array<uint8_t, 192> secret_;
};

// Length of the first chunk of `data`. `at_end` says no bytes follow `data`
// (so a short tail is a chunk); otherwise data.size() should be >= max_size.
size_t NextChunkLength(std::span<const uint8_t> data, const ChunkerParams& params, bool at_end);

struct ChunkSpan {
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Cuts a whole buffer into chunks.
std::vector<ChunkSpan> ChunkBuffer(std::span<const uint8_t> data, const ChunkerParams& params = {});

}  // namespace replifs::chunker
