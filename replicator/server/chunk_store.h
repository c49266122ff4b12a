// Content-addressed chunk storage, one namespace per repository. An
// interface so a distributed backend can replace the file one
// (FileChunkStore). Callers verify chunk ids; the store keeps bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace replifs::server {

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Stores `data` (uncompressed) under the 16-byte `id`. Durable on OK
  // return; storing an id again is harmless.
  virtual absl::Status Put(int64_t repo_id, std::string_view id, std::string_view data) = 0;
  // The uncompressed bytes; NOT_FOUND if absent, DATA_LOSS if damaged.
  virtual absl::StatusOr<std::string> Get(int64_t repo_id, std::string_view id) = 0;
};

}  // namespace replifs::server
