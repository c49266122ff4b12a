// Small POSIX file helpers that report errors as absl::Status.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace replifs::server {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Closes now, reporting the close error (it can carry a deferred write error).
  absl::Status Close();

 private:
  int fd_ = -1;
};

// An absl::Status for `err` (an errno value) while doing `what`.
absl::Status ErrnoError(int err, std::string_view what);

absl::Status WriteFully(int fd, std::string_view data, std::string_view what);
// Reads to EOF, failing with DATA_LOSS past `max_size` bytes.
absl::StatusOr<std::string> ReadFully(int fd, size_t max_size, std::string_view what);

// Opens (creating with mode 0700 if absent) the directory `name` under
// `parent_fd`, never following a symlink. A newly created directory's entry
// is made durable by fsyncing the parent.
absl::StatusOr<UniqueFd> OpenOrCreateDirectoryAt(int parent_fd, const std::string& name);
// As above without creating: NOT_FOUND if absent.
absl::StatusOr<UniqueFd> OpenDirectoryAt(int parent_fd, const std::string& name);

}  // namespace replifs::server
