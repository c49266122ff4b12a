// The on-disk encoding of one chunk file (FORMAT.md, "Chunk file").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace replifs::server {

inline constexpr size_t kChunkFileHeaderSize = 16;
// Upper bound on a stored chunk's uncompressed length, to bound allocations
// when reading a damaged file. The service's max_chunk_size is far below.
inline constexpr uint32_t kMaxStoredChunkLength = 64 << 20;

// Header + payload: zstd level 3, or raw when compression does not shrink it.
std::string EncodeChunkFile(std::string_view data);
// The uncompressed data; DATA_LOSS on any inconsistency.
absl::StatusOr<std::string> DecodeChunkFile(std::string_view file);

}  // namespace replifs::server
