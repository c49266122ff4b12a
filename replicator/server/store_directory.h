// The server's store directory (FORMAT.md, "Store layout"): created if
// absent, locked exclusively for the server's lifetime, and marked so that
// a client refuses to protect a directory containing it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "replicator/server/posix_io.h"

namespace replifs::server {

// Name of the marker file at the top of every store directory.
inline constexpr char kStoreMarkerName[] = "REPLIFS-SERVER-STORE";

class StoreDirectory {
 public:
  // FAILED_PRECONDITION if another process holds the store's LOCK.
  static absl::StatusOr<std::unique_ptr<StoreDirectory>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  std::string catalog_path() const { return path_ + "/catalog.sqlite"; }
  std::string repos_path() const { return path_ + "/repos"; }

 private:
  StoreDirectory(std::string path, UniqueFd lock_fd)
      : path_(std::move(path)), lock_fd_(std::move(lock_fd)) {}

  const std::string path_;
  const UniqueFd lock_fd_;  // holds flock(LOCK_EX) until destroyed
};

}  // namespace replifs::server
