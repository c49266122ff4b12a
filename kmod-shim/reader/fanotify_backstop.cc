#include "kmod-shim/reader/fanotify_backstop.h"

#include <dirent.h>
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
constexpr int kMaxMarkDepth = 256;  // deeper directories are not marked (counted as unresolved)

// Each directory of the tree: its files' data changes, and new directories
// (FAN_ONDIR) to be marked in turn. FAN_CREATE/FAN_MOVED_TO also report new
// files; those are skipped (their writes come as FAN_MODIFY).
constexpr uint64_t kDirMask =
    FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR | FAN_EVENT_ON_CHILD;

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
  // File handles (FAN_REPORT_FID), not open descriptors: no open per event.
  // DFID_NAME: a new directory's parent and name, so it can be marked.
  // Unlimited queue (an overflow costs a rescan) and marks (one per directory).
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_FID | FAN_REPORT_DFID_NAME |
                             FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS,
                         O_RDONLY | O_LARGEFILE);
  if (fd < 0) {
    const int err = errno;
    close(dir_fd);
    return absl::UnavailableError(absl::StrCat("fanotify_init: ", strerror(err)));
  }
  if (fanotify_mark(fd, FAN_MARK_ADD, kDirMask, dir_fd, nullptr) != 0) {
    const int err = errno;
    close(fd);
    close(dir_fd);
    return absl::UnavailableError(absl::StrCat("fanotify_mark (protected directory): ", strerror(err)));
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
  struct stat st;
  if (fstat(dir_fd, &st) != 0) return absl::InternalError(absl::StrCat("fstat: ", strerror(errno)));
  b->MarkTree(dup(dir_fd), st.st_dev, 0);
  return b;
}

void FanotifyBackstop::MarkTree(int dir_fd, dev_t dev, int depth) {
  if (dir_fd < 0) return;
  if (depth > kMaxMarkDepth || fanotify_mark(fan_fd_, FAN_MARK_ADD, kDirMask, dir_fd, nullptr) != 0) {
    ++unresolved_;  // writes below it that the hooks miss wait for a rescan
    close(dir_fd);
    return;
  }
  ++marks_;
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return;
  }
  while (const dirent* e = readdir(dir)) {
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int sub = openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;  // not a directory (DT_UNKNOWN), or gone
    struct stat st;
    if (fstat(sub, &st) != 0 || st.st_dev != dev) {  // another filesystem mounted here: not ours
      close(sub);
      continue;
    }
    MarkTree(sub, dev, depth + 1);
  }
  closedir(dir);
}

void FanotifyBackstop::MarkNewDirectory(const void* parent_handle, const char* name) {
  int parent = open_by_handle_at(
      root_fd_, const_cast<struct file_handle*>(static_cast<const struct file_handle*>(parent_handle)),
      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent < 0) {
    if (errno != ESTALE) ++unresolved_;
    return;
  }
  struct stat st;
  int sub = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub >= 0 && fstat(sub, &st) == 0) {
    MarkTree(sub, st.st_dev, 0);
  } else if (sub >= 0) {
    close(sub);
  }  // else removed or renamed again since: its new place sends its own event
  close(parent);
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
      // Info records: DFID_NAME (parent + name), then FID (the file) for data events.
      const fanotify_event_info_fid* file_info = nullptr;
      const fanotify_event_info_fid* dir_info = nullptr;
      for (size_t at = sizeof(*m); at + sizeof(fanotify_event_info_header) <= m->event_len;) {
        const auto* hdr = reinterpret_cast<const fanotify_event_info_header*>(reinterpret_cast<const char*>(m) + at);
        if (hdr->len < sizeof(fanotify_event_info_fid) || at + hdr->len > m->event_len) break;
        const auto* info = reinterpret_cast<const fanotify_event_info_fid*>(hdr);
        if (hdr->info_type == FAN_EVENT_INFO_TYPE_FID) file_info = info;
        if (hdr->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) dir_info = info;
        at += hdr->len;
      }
      if (m->mask & (FAN_CREATE | FAN_MOVED_TO)) {
        // A new directory in the tree (even the daemon's): mark it and below.
        if ((m->mask & FAN_ONDIR) && dir_info != nullptr) {
          const auto* parent = reinterpret_cast<const struct file_handle*>(dir_info->handle);
          MarkNewDirectory(parent, reinterpret_cast<const char*>(parent->f_handle + parent->handle_bytes));
        }
        if (!(m->mask & (FAN_MODIFY | FAN_CLOSE_WRITE))) continue;
      }
      if (static_cast<uint32_t>(m->pid) == ignore_tgid_) continue;  // the overlay's own I/O
      if (file_info == nullptr) continue;
      const auto* handle = reinterpret_cast<const struct file_handle*>(file_info->handle);
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
