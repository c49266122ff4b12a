// Reads the current state of one path of a tree (the backing directory for
// backup, or any directory for verify) as a NodeState, cutting a regular
// file's content into chunks.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <optional>
#include <vector>

#include "replicator/chunker/chunker.h"
#include "replicator/chunker/incremental.h"
#include "replicator/client/chunk_map_store.h"
#include "replicator/client/whole_state.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::client {

// Receives each chunk of a file as it is read; may keep a copy of the data.
using ChunkSink =
    std::function<absl::Status(const chunker::ChunkId& id, std::span<const uint8_t> data)>;

// Non-zero only for a regular file with several hard links: names the inode.
uint64_t LinkGroupOf(const struct stat& st);

v1::NodeState::Type NodeTypeOf(mode_t mode);

// Type, mode, owner, size, mtime, rdev, symlink target and xattrs of `path`
// (relative to root_fd; "" is the root), not following a final symlink. No
// content. NotFoundError if the path does not exist.
absl::StatusOr<v1::NodeState> StatNode(int root_fd, const std::string& path,
                                       struct stat* st_out = nullptr);

struct ContentSnapshotOptions {
  uint64_t expected_inode = 0;  // non-zero: FailedPrecondition if the path names another inode
  int attempts = 3;             // reads retried while the file changes under us
  // Then, for a file that never stops changing, copies tried (stable_copy.h); 0: none.
  int stable_copy_attempts = 200;
  // A file still open for writing: its content is read, whole, from a copy
  // of a state the program wrote (whole_state.h), if one can be made. Needs
  // expected_inode. Null: read the file as it is.
  const WholeStateSource* whole_state = nullptr;

  // Incremental chunking: the file's chunk map as last committed (looked up
  // by device and inode once the file is open) and the ranges changed since;
  // without them, or for another inode, the whole file is read.
  std::function<std::optional<ChunkMap>(uint64_t device, uint64_t inode)> previous_map;
  std::vector<chunker::ChangedRange> changed;
  // Only attributes changed: reuse the previous chunks without reading if
  // size and mtime still match them.
  bool content_unchanged = false;
  // Incremental chunking only: told of each newly cut chunk with its file
  // offset and the map it was re-chunked from, just before `sink` gets it
  // (the backup client builds patches from this, delta/chunk_patch.h).
  std::function<void(const ChunkMap& previous, const chunker::ChunkRecord& record,
                     std::span<const uint8_t> data)>
      on_recut_chunk;
  // Receives the new chunk map of a regular file.
  ChunkMap* map_out = nullptr;
  // Chunks taken from the previous map without reading (the caller checks
  // that the server still has them).
  std::vector<std::string>* reused_ids = nullptr;
  uint64_t* bytes_read = nullptr;
};

// StatNode plus, for a regular file, its chunk list; every chunk goes to
// `sink`. A version is only returned if the file did not change while it was
// read (size, mtime, ctime compared before and after); after `attempts` torn
// reads, from a copy that held still (stable_copy.h); failing that too:
// AbortedError.
absl::StatusOr<v1::NodeState> SnapshotNode(int root_fd, const std::string& path,
                                           const chunker::ChunkIdHasher& hasher,
                                           const ChunkSink& sink,
                                           const ContentSnapshotOptions& options = {});

}  // namespace replifs::client
