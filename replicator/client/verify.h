// Compares a tree with the server's latest versions of it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "replicator/client/repo_connection.h"

namespace replifs::client {

struct VerifyResult {
  std::vector<std::string> differences;  // one line each, empty when equal
  uint64_t checked = 0;
};

// root_fd: the protected directory (read through the mount, or the plain
// directory when unprotected).
absl::StatusOr<VerifyResult> VerifyTree(RepoConnection& connection, int root_fd);

// One line per field in which `local` and `remote` differ (content compared
// by chunk ids; hard-link groups only by presence, since st_dev differs
// between a mount and its backing directory).
std::vector<std::string> CompareNodes(const v1::NodeState& local, const v1::NodeState& remote);

}  // namespace replifs::client
