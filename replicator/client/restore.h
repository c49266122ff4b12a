// Writes a tree (or some paths of it) as of a time from the server into a
// destination directory: content, type, mode, owner, symlink targets,
// hard-link groups, xattrs, holes and mtimes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "replicator/client/repo_connection.h"

namespace replifs::client {

struct RestoreOptions {
  std::string destination;          // created if missing
  int64_t at_time_ns = 0;           // 0: latest
  std::vector<std::string> paths;   // relative to the protected root; empty: everything
};

struct RestoreStats {
  uint64_t entries = 0;
  uint64_t files = 0;
  uint64_t bytes = 0;
};

absl::StatusOr<RestoreStats> RestoreTree(RepoConnection& connection, const RestoreOptions& options);

}  // namespace replifs::client
