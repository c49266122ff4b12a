// Incremental re-chunking: given a file's previous chunk list and the byte
// ranges changed since (in-place writes, truncates, extends), recompute the
// chunk list reading only from the chunk boundary before each change until a
// new boundary meets an old one. The result is always identical to chunking
// the whole new file (FastCDC cut decisions depend only on the bytes since
// the chunk's start), so dedup against stored versions is unaffected.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "replicator/chunker/chunker.h"

namespace replifs::chunker {

struct ChunkRecord {
  uint64_t offset = 0;
  uint32_t length = 0;
  ChunkId id;
  friend bool operator==(const ChunkRecord&, const ChunkRecord&) = default;
};

struct ChangedRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Reads exactly out.size() bytes at `offset` of the new file content.
using ReadAt = std::function<absl::Status(uint64_t offset, std::span<uint8_t> out)>;

// Receives each newly cut chunk (its data is only valid during the call).
using NewChunkSink = std::function<absl::Status(const ChunkRecord&, std::span<const uint8_t>)>;

struct RechunkStats {
  uint64_t bytes_read = 0;
  uint64_t chunks_reused = 0;
  uint64_t chunks_cut = 0;
};

// `previous` must be the chunk list of the file before the changes (ordered,
// contiguous from 0); `changed` lists every range written since, in new-file
// offsets (order and overlaps do not matter). A final size change needs no
// range, but a truncate to T followed by growth does: pass
// [T, new_size) (the scheduler's truncated_to), since the bytes from T on
// may be zeros now without any write naming them.
absl::StatusOr<std::vector<ChunkRecord>> Rechunk(const std::vector<ChunkRecord>& previous,
                                                 uint64_t new_size,
                                                 std::vector<ChangedRange> changed,
                                                 const ReadAt& read, const ChunkIdHasher& hasher,
                                                 const NewChunkSink& sink, RechunkStats* stats,
                                                 const ChunkerParams& params = {});

}  // namespace replifs::chunker
