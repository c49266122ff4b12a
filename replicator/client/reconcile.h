// The initial sync: compares the backing tree with the server's latest
// listing and names every path that differs, so changes made while the
// directory was unprotected go out.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>

#include "absl/status/status.h"
#include "replicator/client/chunk_map_store.h"
#include "replicator/client/repo_connection.h"
#include "replifs/v1/events.pb.h"

namespace replifs::client {

struct ReconcileProgress {
  std::atomic<uint64_t> scanned{0};
  std::atomic<uint64_t> queued{0};
  std::atomic<uint64_t> changed_outside{0};  // files whose acknowledged identity no longer holds
  std::atomic<bool> done{false};  // set by the caller once every pass is over
};

// Calls emit(RESCAN event) for each local path whose type, mode, owner, size,
// mtime, xattrs or symlink target differ from the server's (parents first), then for
// each path only the server has (the client finds it gone and removes it).
// With `acknowledged` (the client's chunk maps: each file's identity when the
// server acknowledged it), a regular file is also rescanned when its (size,
// mtime, ctime) differ from that record or no record names its (device,
// inode): this catches a rewrite that kept size and mtime (ctime moves) and
// a replacement by another inode; its stale chunk map is dropped first.
// A regular file whose ctime is at or after `reread_ctime_since_ns` is
// rescanned too (changes were missed then: ChunkMapTrust).
// Content is not read here: the client reads what the rescans name.
absl::Status Reconcile(RepoConnection& connection, int root_fd,
                       const std::function<void(v1::ChangeEvent)>& emit,
                       ReconcileProgress* progress, ChunkMapStore* acknowledged = nullptr,
                       int64_t reread_ctime_since_ns = std::numeric_limits<int64_t>::max());

// Names `path` and everything below it for a rescan, without comparing: for
// a subtree renamed while Reconcile walked (the walk may have missed it).
absl::Status RescanSubtree(int root_fd, const std::string& path,
                           const std::function<void(v1::ChangeEvent)>& emit,
                           ReconcileProgress* progress);

}  // namespace replifs::client
