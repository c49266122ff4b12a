// The few POSIX file operations the journal needs, returning absl::Status.
// Kept apart so a fault-injecting variant can replace them later.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace replifs::journal {

// Maps errno to a Status: ENOSPC/EDQUOT -> ResourceExhausted, ENOENT ->
// NotFound, everything else -> Internal; `what` says which call failed.
absl::Status ErrnoStatus(absl::string_view what, int err);

// An owned file descriptor; closes on destruction.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  const int fd_;
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir);
absl::Status SyncDirectory(const std::string& dir);

// Writes `contents` to dir/name.tmp, fsyncs it, renames it over dir/name and
// fsyncs the directory: readers see either the old or the new file, whole.
absl::Status ReplaceFileAtomically(const std::string& dir, absl::string_view name,
                                   std::string_view contents);

// pwrite of all of `data` at `offset`, retrying on EINTR and short writes.
absl::Status WriteAllAt(int fd, std::string_view data, uint64_t offset);

}  // namespace replifs::journal
