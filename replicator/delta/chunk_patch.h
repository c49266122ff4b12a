// A changed chunk sent as a patch of chunks the server already stores
// (ChunkUpload.patch in backup.proto). Writes through the mount are in
// place, so every byte of a new chunk outside the captured dirty ranges
// equals the previous version's byte at the same file offset: those bytes
// travel as COPY ops naming the previous chunks, the rest as literals. The
// server rebuilds the chunk and checks its keyed id, so a wrong patch is
// refused, never stored.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "replicator/chunker/incremental.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::delta {

// Refused beyond this many ops or distinct source chunks: a patch that
// fragmented is not worth it, and a hostile one must stay cheap.
inline constexpr int kMaxPatchOps = 4096;
inline constexpr int kMaxPatchSources = 64;

struct ChunkPatch {
  std::vector<v1::ChunkPatchOp> ops;
  std::string literals;  // the bytes of the literal ops, in order, uncompressed
  uint64_t copied = 0;   // bytes the COPY ops cover
};

// The patch of the new chunk `data` at file offset `offset`, given the
// previous version's chunks (`previous`, contiguous from 0, covering
// `previous_size` bytes) and every range written since. nullopt if nothing
// could be copied or the patch would exceed kMaxPatchOps. Only valid when
// the ranges are trusted to name every change (chunk_map_trust.h).
std::optional<ChunkPatch> MakeInPlacePatch(uint64_t offset, std::span<const uint8_t> data,
                                           const std::vector<chunker::ChunkRecord>& previous,
                                           uint64_t previous_size,
                                           const std::vector<chunker::ChangedRange>& changed);

// Sets data, compressed and patch of an upload of `chunk` (id, length and
// repo are the caller's): the patch when given and smaller on the wire,
// else the whole chunk; either zstd-compressed when that shrinks it.
void FillChunkUpload(std::string_view chunk, const ChunkPatch* patch, v1::ChunkUpload* message);

// Returns a stored chunk's uncompressed bytes; NOT_FOUND if not stored.
using StoredChunkFn = std::function<absl::StatusOr<std::string>(const std::string& id)>;

// Builds the chunk a patched upload describes, at most `max_length` bytes.
// INVALID_ARGUMENT ("patch of chunk ...") for any op out of range, an
// unknown source, lengths that do not add up, literals that do not
// decompress to exactly what the ops take, or too many ops or sources. The
// caller still checks the result against upload.id().
absl::StatusOr<std::string> BuildPatchedChunk(const v1::ChunkUpload& upload, uint32_t max_length,
                                              const StoredChunkFn& stored_chunk);

}  // namespace replifs::delta
