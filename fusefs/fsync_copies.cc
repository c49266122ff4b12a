#include "fusefs/fsync_copies.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

namespace replifs::fusefs {
namespace {

// Copies `size` bytes of `from` into `to` from offset 0; false on error.
bool CopyAll(int from, int to, off_t size) {
  loff_t in = 0, out = 0;
  while (in < size) {
    ssize_t n = copy_file_range(from, &in, to, &out, static_cast<size_t>(size - in), 0);
    if (n > 0) continue;
    if (n == 0) return false;  // shorter than its stat said: cannot be (lock held)
    if (errno == EINTR) continue;
    break;  // another filesystem (a memfd): through a buffer below
  }
  std::vector<char> buffer;
  while (in < size) {
    if (buffer.empty()) buffer.resize(1 << 20);
    ssize_t n = pread(from, buffer.data(), std::min<off_t>(buffer.size(), size - in), in);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(to, buffer.data() + done, n - done, out + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return false;
      done += w;
    }
    in += n;
    out += n;
  }
  return true;
}

}  // namespace

FsyncCopies::~FsyncCopies() {
  for (auto& [ino, copy] : wanted_) {
    if (copy.fd >= 0) close(copy.fd);
  }
}

void FsyncCopies::Request(uint64_t ino) {
  std::lock_guard lock(mutex_);
  wanted_.try_emplace(ino);
}

void FsyncCopies::CopyIfWanted(uint64_t ino, int fd, int root_fd) {
  {
    std::lock_guard lock(mutex_);
    auto it = wanted_.find(ino);
    if (it == wanted_.end() || it->second.fd >= 0) return;  // not asked, or copied already
  }
  FsyncCopy copy;
  if (fstat(fd, &copy.source) != 0 || !S_ISREG(copy.source.st_mode) ||
      copy.source.st_size > kMaxBytes)
    return;
  // The handle may be write-only: read through a fresh descriptor.
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  const int source = open(proc.c_str(), O_RDONLY | O_CLOEXEC);
  if (source < 0) return;
  copy.fd = openat(root_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (copy.fd < 0) copy.fd = memfd_create("replifs-fsync-copy", MFD_CLOEXEC);
  const bool copied = copy.fd >= 0 && CopyAll(source, copy.fd, copy.source.st_size);
  close(source);
  if (!copied) {
    if (copy.fd >= 0) close(copy.fd);
    return;
  }
  std::lock_guard lock(mutex_);
  auto it = wanted_.find(ino);
  if (it == wanted_.end() || it->second.fd >= 0) {  // taken meanwhile, or another FSYNC won
    close(copy.fd);
    return;
  }
  it->second = copy;
}

std::optional<FsyncCopy> FsyncCopies::Take(uint64_t ino) {
  std::lock_guard lock(mutex_);
  auto it = wanted_.find(ino);
  if (it == wanted_.end()) return std::nullopt;
  const FsyncCopy copy = it->second;
  wanted_.erase(it);
  if (copy.fd < 0) return std::nullopt;
  return copy;
}

}  // namespace replifs::fusefs
