#include "replicator/client/stable_copy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace replifs::client {
namespace {

bool SameGeneration(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

absl::Status Errno(const char* what) { return absl::InternalError(absl::StrCat(what, ": ", strerror(errno))); }

int OpenScratch(int root_fd) {
  int fd = openat(root_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  return memfd_create("replifs-stable-copy", MFD_CLOEXEC);
}

// Copies `size` bytes from offset 0; false if the source got shorter.
absl::StatusOr<bool> CopyBytes(int from, int to, off_t size) {
  off_t in = 0, out = 0;
  bool kernel_copy = true;
  std::vector<char> buffer;
  while (in < size) {
    if (kernel_copy) {
      ssize_t n = copy_file_range(from, &in, to, &out, static_cast<size_t>(size - in), 0);
      if (n > 0) continue;
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS) {
        return Errno("copy_file_range");
      }
      kernel_copy = false;  // another filesystem (a memfd): copy through a buffer
      buffer.resize(1 << 20);
    }
    ssize_t n = pread(from, buffer.data(), std::min<off_t>(buffer.size(), size - in), in);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read");
    if (n == 0) return false;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(to, buffer.data() + done, n - done, out + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Errno("write");
      done += w;
    }
    in += n;
    out += n;
  }
  return true;
}

// The copy still equals the source (read again now).
absl::StatusOr<bool> SameBytes(int a, int b, off_t size) {
  std::vector<char> x(1 << 20), y(1 << 20);
  for (off_t at = 0; at < size;) {
    const size_t want = std::min<off_t>(x.size(), size - at);
    ssize_t n = pread(a, x.data(), want, at);
    ssize_t m = pread(b, y.data(), want, at);
    if (n < 0 || m < 0) return Errno("read");
    if (n != m || n == 0) return false;
    if (std::memcmp(x.data(), y.data(), n) != 0) return false;
    at += n;
  }
  return true;
}

}  // namespace

absl::StatusOr<StableCopy> CopyWhileUnchanged(int root_fd, int source_fd, int attempts) {
  int copy = OpenScratch(root_fd);
  if (copy < 0) return Errno("cannot make a scratch file for a stable copy");
  for (int attempt = 0; attempt < attempts; ++attempt) {
    struct stat before, copied, after;
    if (fstat(source_fd, &before) != 0 || ftruncate(copy, 0) != 0) break;
    absl::StatusOr<bool> complete = CopyBytes(source_fd, copy, before.st_size);
    if (!complete.ok()) {
      close(copy);
      return complete.status();
    }
    if (!*complete || fstat(source_fd, &copied) != 0 || !SameGeneration(before, copied)) continue;
    absl::StatusOr<bool> same = SameBytes(source_fd, copy, before.st_size);
    if (!same.ok()) {
      close(copy);
      return same.status();
    }
    if (*same && fstat(source_fd, &after) == 0 && SameGeneration(before, after)) {
      return StableCopy{copy, before};
    }
  }
  close(copy);
  return absl::AbortedError(absl::StrCat("changed during each of ", attempts, " copies"));
}

}  // namespace replifs::client
