// The client's record of each file's chunk list as last committed, keyed by
// inode, so a change re-chunks only around its dirty ranges (and a chmod
// re-reads nothing). A record is trusted only while the file's identity
// (device, inode) matches and, for reuse without any dirty range, its size,
// mtime and ctime too; anything else falls back to reading the whole file.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "replicator/chunker/incremental.h"

namespace replifs::client {

struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

struct ChunkMap {
  FileIdentity identity;  // the file when `chunks` was computed
  std::vector<chunker::ChunkRecord> chunks;
};

class ChunkMapStore {
 public:
  // SQLite file at `path` (created). Losing it only costs full re-reads.
  static absl::StatusOr<std::unique_ptr<ChunkMapStore>> Open(const std::string& path);
  ~ChunkMapStore();

  std::optional<ChunkMap> Get(uint64_t device, uint64_t inode);
  // Stores every map in one transaction (after the server acknowledged them).
  absl::Status PutAll(const std::vector<ChunkMap>& maps);
  size_t size();

  // Every record's identity, keyed by (device, inode), without the chunk
  // lists: the last acknowledged state Reconcile compares the tree with.
  absl::StatusOr<std::map<std::pair<uint64_t, uint64_t>, FileIdentity>> Identities();
  // Forgets a file's record (it changed outside capture): its next backup
  // reads the whole file instead of trusting stale chunk boundaries.
  absl::Status Invalidate(uint64_t device, uint64_t inode);

 private:
  explicit ChunkMapStore(sqlite3* db) : db_(db) {}
  std::mutex mutex_;  // one connection, used by one thread at a time
  sqlite3* db_;
};

}  // namespace replifs::client
