// A state the program really wrote, for a file still open for writing.
//
// The client reads the backing file, which with the writeback cache the
// kernel fills page by page, without the inode lock, whenever it writes
// dirty pages back: while a program keeps writing (a file committed at the
// maximum delay), the backing file can hold page mixes the program never
// wrote, and an unchanged size and mtime do not tell them apart. A whole
// state source copies the file at a moment it surely holds a state the
// program wrote (cli: during an fsync through the mount, which the kernel
// serves under the inode lock; fusefs/fsync_copies.h); the version is read
// from that copy (node_snapshot.cc).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "replicator/client/stable_copy.h"

namespace replifs::client {

class WholeStateSource {
 public:
  virtual ~WholeStateSource() = default;
  // `path` is relative to the protected root and names backing inode
  // `inode`. OutOfRange: too large to copy (the caller reads the file as it
  // is); another error (renamed, unmounted): the caller retries later.
  virtual absl::StatusOr<StableCopy> CopyWholeState(uint64_t inode,
                                                    const std::string& path) const = 0;
};

}  // namespace replifs::client
