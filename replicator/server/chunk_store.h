// Content-addressed chunk storage, one namespace per repository. An
// interface so a distributed backend can replace the file one
// (FileChunkStore). Callers verify chunk ids; the store keeps bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace replifs::server {

// Held while alive; see ChunkStore::GuardWrite.
class ChunkStoreGuard {
 public:
  virtual ~ChunkStoreGuard() = default;
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Garbage collection and writers exclude each other, across processes: a
  // writer holds GuardWrite() (shared) from before Put until the chunk's
  // catalog row is recorded; the collector holds GuardCollection()
  // (exclusive) while it deletes rows and files. Otherwise a chunk stored
  // again just as the collector unlinks it would be recorded without data.
  virtual absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardWrite() = 0;
  virtual absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardCollection() = 0;
  // Removes a chunk's file; OK if it is already gone.
  virtual absl::Status Delete(int64_t repo_id, std::string_view id) = 0;

  // Stores `data` (uncompressed) under the 16-byte `id`. Durable on OK
  // return; storing an id again is harmless.
  virtual absl::Status Put(int64_t repo_id, std::string_view id, std::string_view data) = 0;
  // Stores several chunks, all durable on OK return. A pack store syncs once
  // for the batch (group commit); the default stores them one by one.
  struct PendingChunk {
    std::string id;
    std::string data;
    // The client's zstd frame of `data`, checked already: a store that
    // compresses keeps it as it is rather than compressing again. May be empty.
    std::string zstd_frame;
  };
  virtual absl::Status PutMany(int64_t repo_id, const std::vector<PendingChunk>& chunks) {
    for (const PendingChunk& chunk : chunks) {
      if (absl::Status status = Put(repo_id, chunk.id, chunk.data); !status.ok()) return status;
    }
    return absl::OkStatus();
  }
  // The uncompressed bytes; NOT_FOUND if absent, DATA_LOSS if damaged.
  virtual absl::StatusOr<std::string> Get(int64_t repo_id, std::string_view id) = 0;
  // The chunk as stored, for sending as it is (ReadChunks): one zstd frame
  // when `compressed`. The store checks its own checksum, not the id (the
  // reader does). The default is Get.
  struct StoredChunk {
    std::string data;
    bool compressed = false;
  };
  virtual absl::StatusOr<StoredChunk> GetStored(int64_t repo_id, std::string_view id) {
    absl::StatusOr<std::string> data = Get(repo_id, id);
    if (!data.ok()) return data.status();
    return StoredChunk{std::move(*data), false};
  }
};

}  // namespace replifs::server
