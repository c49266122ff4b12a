#include "kmod-shim/reader/fanotify_backstop.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace replifs::shim {
namespace {

constexpr size_t kMaxCachedVerdicts = 1 << 16;
constexpr useconds_t kBatchDelayUs = 50 * 1000;

std::string FdPath(int fd) {
  char link[64], buf[PATH_MAX];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, n);
}

}  // namespace

absl::StatusOr<std::unique_ptr<FanotifyBackstop>> FanotifyBackstop::Start(int root_fd, uint32_t ignore_tgid,
                                                                           ChangeFn on_change, SeenFn seen_by_shim) {
  // fanotify_mark and open_by_handle_at refuse O_PATH descriptors (the
  // daemon's root_fd is one): a real one on the same directory.
  const std::string magic = absl::StrCat("/proc/self/fd/", root_fd);
  int dir_fd = open(magic.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return absl::UnavailableError(absl::StrCat("cannot open the protected directory: ", strerror(errno)));
  // File handles (FAN_REPORT_FID), not open descriptors: no open per event
  // anywhere on the filesystem. Unlimited queue: an overflow costs a rescan.
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_FID | FAN_UNLIMITED_QUEUE,
                         O_RDONLY | O_LARGEFILE);
  if (fd < 0) {
    const int err = errno;
    close(dir_fd);
    return absl::UnavailableError(absl::StrCat("fanotify_init: ", strerror(err)));
  }
  if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_MODIFY | FAN_CLOSE_WRITE, dir_fd, nullptr) != 0) {
    const int err = errno;
    close(fd);
    close(dir_fd);
    return absl::UnavailableError(absl::StrCat("fanotify_mark (filesystem): ", strerror(err)));
  }
  std::unique_ptr<FanotifyBackstop> b(new FanotifyBackstop());
  b->fan_fd_ = fd;
  b->root_fd_ = dir_fd;
  b->ignore_tgid_ = ignore_tgid;
  b->root_path_ = FdPath(dir_fd);
  b->on_change_ = std::move(on_change);
  b->debug_ = getenv("REPLIFS_SHIM_DEBUG") != nullptr;
  b->seen_by_shim_ = std::move(seen_by_shim);
  if (b->root_path_.empty()) return absl::InternalError("cannot read the protected directory's path");
  return b;
}

FanotifyBackstop::~FanotifyBackstop() {
  if (fan_fd_ >= 0) close(fan_fd_);  // drops the mark
  if (root_fd_ >= 0) close(root_fd_);
}

std::string FanotifyBackstop::Resolve(const std::string& handle_key, const void* file_handle, uint64_t* ino) {
  if (forget_verdicts_.exchange(false)) verdicts_.clear();
  if (auto it = verdicts_.find(handle_key); it != verdicts_.end() && it->second) return "";
  // open_by_handle_at needs a descriptor on the same filesystem: the root's.
  int fd = open_by_handle_at(root_fd_, const_cast<struct file_handle*>(static_cast<const struct file_handle*>(file_handle)),
                             O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ESTALE) ++unresolved_;  // ESTALE: deleted since; its unlink is reported elsewhere
    return "";
  }
  struct stat st;
  std::string path = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? FdPath(fd) : "";
  close(fd);
  *ino = st.st_ino;
  std::string rel;
  const bool inside = path.size() > root_path_.size() + 1 && path.compare(0, root_path_.size(), root_path_) == 0 &&
                      path[root_path_.size()] == '/' && path.find(" (deleted)") == std::string::npos;
  if (inside) {
    rel = path.substr(root_path_.size() + 1);
  } else {
    if (verdicts_.size() >= kMaxCachedVerdicts) verdicts_.clear();
    verdicts_[handle_key] = true;
  }
  return rel;
}

absl::Status FanotifyBackstop::Poll(int timeout_ms) {
  pollfd p = {fan_fd_, POLLIN, 0};
  const int ready = poll(&p, 1, timeout_ms);
  if (ready < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
  // Let events gather: the kernel merges repeats for the same file while they
  // wait in the queue, so a busy writer costs a merge, not a wakeup of this
  // thread per write.
  if (ready > 0 && timeout_ms > 0) usleep(kBatchDelayUs);
  alignas(fanotify_event_metadata) char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(fan_fd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return absl::OkStatus();
      return absl::InternalError(absl::StrCat("read fanotify: ", strerror(errno)));
    }
    if (n == 0) return absl::OkStatus();
    const fanotify_event_metadata* m = reinterpret_cast<const fanotify_event_metadata*>(buf);
    for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->vers != FANOTIFY_METADATA_VERSION) return absl::InternalError("fanotify: unexpected metadata version");
      if (m->mask & FAN_Q_OVERFLOW) {
        ++overflows_;
        continue;
      }
      if (static_cast<uint32_t>(m->pid) == ignore_tgid_) continue;  // the overlay's own I/O
      const auto* info = reinterpret_cast<const fanotify_event_info_fid*>(m + 1);
      if (m->event_len < sizeof(*m) + sizeof(*info) || info->hdr.info_type != FAN_EVENT_INFO_TYPE_FID) continue;
      const auto* handle = reinterpret_cast<const struct file_handle*>(info->handle);
      const std::string key(reinterpret_cast<const char*>(handle), sizeof(*handle) + handle->handle_bytes);
      uint64_t ino = 0;
      const std::string rel = Resolve(key, handle, &ino);
      if (debug_) {
        fprintf(stderr, "replifs: fanotify: pid %d mask %llx ino %llu -> '%s'\n", m->pid,
                static_cast<unsigned long long>(m->mask), static_cast<unsigned long long>(ino), rel.c_str());
      }
      if (rel.empty()) continue;
      if (seen_by_shim_ && seen_by_shim_(ino, static_cast<uint32_t>(m->pid))) continue;
      ++changes_;
      on_change_(rel, ino, static_cast<uint32_t>(m->pid));
    }
  }
}

}  // namespace replifs::shim
