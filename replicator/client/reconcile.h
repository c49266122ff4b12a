// The initial sync: compares the backing tree with the server's latest
// listing and names every path that differs, so changes made while the
// directory was unprotected go out.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "replicator/client/repo_connection.h"
#include "replifs/v1/events.pb.h"

namespace replifs::client {

struct ReconcileProgress {
  std::atomic<uint64_t> scanned{0};
  std::atomic<uint64_t> queued{0};
  std::atomic<bool> done{false};  // set by the caller once every pass is over
};

// Calls emit(RESCAN event) for each local path whose type, mode, owner, size,
// mtime, xattrs or symlink target differ from the server's (parents first), then for
// each path only the server has (the client finds it gone and removes it).
// Content is not read here: the client reads what the rescans name.
absl::Status Reconcile(RepoConnection& connection, int root_fd,
                       const std::function<void(v1::ChangeEvent)>& emit,
                       ReconcileProgress* progress);

// Names `path` and everything below it for a rescan, without comparing: for
// a subtree renamed while Reconcile walked (the walk may have missed it).
absl::Status RescanSubtree(int root_fd, const std::string& path,
                           const std::function<void(v1::ChangeEvent)>& emit,
                           ReconcileProgress* progress);

}  // namespace replifs::client
