#include "replicator/server/posix_io.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "replicator/server/absl_string_view.h"

namespace replifs::server {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status UniqueFd::Close() {
  const int fd = std::exchange(fd_, -1);
  if (fd >= 0 && ::close(fd) != 0) return ErrnoError(errno, "close");
  return absl::OkStatus();
}

absl::Status ErrnoError(int err, std::string_view what) {
  const std::string message = absl::StrCat(ToAbsl(what), ": ", strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ELOOP:
    case ENOTDIR:
    case EEXIST:
      return absl::FailedPreconditionError(message);
    case EIO:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status WriteFully(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFully(int fd, size_t max_size, std::string_view what) {
  std::string out;
  char buffer[64 * 1024];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      return absl::DataLossError(
          absl::StrCat(ToAbsl(what), ": file is larger than ", max_size, " bytes"));
    }
    out.append(buffer, static_cast<size_t>(n));
  }
}

absl::StatusOr<UniqueFd> OpenDirectoryAt(int parent_fd, const std::string& name) {
  const int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open directory ", name));
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> OpenOrCreateDirectoryAt(int parent_fd, const std::string& name) {
  if (::mkdirat(parent_fd, name.c_str(), 0700) == 0) {
    if (::fsync(parent_fd) != 0) return ErrnoError(errno, absl::StrCat("fsync parent of ", name));
  } else if (errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("create directory ", name));
  }
  return OpenDirectoryAt(parent_fd, name);
}

}  // namespace replifs::server
