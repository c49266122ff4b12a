#include "cli/overlay_whole_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "replicator/telemetry/log.h"

namespace replifs::cli {

absl::StatusOr<client::StableCopy> OverlayWholeState::CopyWholeState(
    uint64_t inode, const std::string& path) const {
  const std::string on_mount = absl::StrCat(mountpoint_, "/", path);
  // O_NONBLOCK: a fifo put in its place must not hang the executor.
  int fd = open(on_mount.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("open ", on_mount, ": ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > fusefs::FsyncCopies::kMaxBytes) {
    close(fd);  // the writer would wait for the copy too long
    return absl::OutOfRangeError(absl::StrCat(on_mount, " is too large to copy under an fsync"));
  }
  copies_->Request(inode);
  const int rc = fdatasync(fd);
  const int error = errno;
  close(fd);
  // Taken in any case: it ends the request.
  std::optional<fusefs::FsyncCopy> copy = copies_->Take(inode);
  if (rc != 0) {
    if (copy.has_value()) close(copy->fd);
    return absl::UnavailableError(absl::StrCat("fdatasync ", on_mount, ": ", strerror(error)));
  }
  // None: the path names another inode, is not on the mount (unmounted), or
  // the file is over FsyncCopies::kMaxBytes.
  if (!copy.has_value()) {
    telemetry::LogWarn("daemon", "no whole-state copy; read again later",
                       {{"path", path}, {"inode", inode}});
    return absl::FailedPreconditionError(absl::StrCat(on_mount, ": no copy of inode ", inode));
  }
  return client::StableCopy{copy->fd, copy->source};
}

}  // namespace replifs::cli
