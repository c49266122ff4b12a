// Copies of backing files taken while the kernel holds their inode lock, for
// the replicator's versions of files that never stop changing.
//
// With the writeback cache the kernel writes a file's dirty pages back in
// pieces and without the inode lock, so while a program keeps writing, the
// backing file can hold page mixes the program never wrote (and without the
// cache a large write(2) arrives as several WRITEs). An FSYNC is the one
// request served while the backing file surely holds a state the program
// wrote: the kernel takes the inode lock (no write(2) runs), writes every
// dirty page back and waits for them, then sends FSYNC and holds the lock
// until the reply. A copy made in OpFsync is that state; the writer waits
// for the copy, so only files up to kMaxBytes are copied.
// Thread-safe; its mutex is a leaf lock (not held while copying).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

namespace replifs::fusefs {

struct FsyncCopy {
  int fd = -1;            // an unnamed copy, open for reading; the taker closes it
  struct stat source {};  // the backing file as copied
};

class FsyncCopies {
 public:
  static constexpr off_t kMaxBytes = off_t{64} << 20;

  FsyncCopies() = default;
  FsyncCopies(const FsyncCopies&) = delete;
  FsyncCopies& operator=(const FsyncCopies&) = delete;
  ~FsyncCopies();

  // The next FSYNC of backing inode `ino` (any caller's) also copies it.
  void Request(uint64_t ino);
  // OpFsync: if a copy of `ino` is wanted, copies `fd` (the backing file)
  // into an unnamed file beside `root_fd`'s tree. Never fails the FSYNC.
  void CopyIfWanted(uint64_t ino, int fd, int root_fd);
  // The copy made since Request (nullopt: none, or it failed, or too big);
  // ends the request either way.
  std::optional<FsyncCopy> Take(uint64_t ino);

 private:
  std::mutex mutex_;
  // Requested inodes; a copy once made (fd -1: not yet, or failed).
  std::map<uint64_t, FsyncCopy> wanted_;
};

}  // namespace replifs::fusefs
