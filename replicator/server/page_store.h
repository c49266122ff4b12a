// Content-addressed storage of chunk-list pages (chunk_tree.h), one
// namespace per repository. Separate from ChunkStore because pages are the
// server's own data: their ids are unkeyed XXH3-128 of the page bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace replifs::server {

class PageStore {
 public:
  virtual ~PageStore() = default;
  virtual absl::StatusOr<bool> HasPage(int64_t repo_id, std::string_view id) = 0;
  // Durable on OK return; storing an id again is harmless.
  virtual absl::Status PutPage(int64_t repo_id, std::string_view id, std::string_view data) = 0;
  // NOT_FOUND if absent, DATA_LOSS if damaged.
  virtual absl::StatusOr<std::string> GetPage(int64_t repo_id, std::string_view id) = 0;
};

}  // namespace replifs::server
