#include "kmod-shim/reader/module_shim.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace replifs::shim {

ShimKind ChooseShim(const char* env_value, const std::string& device) {
  if (env_value != nullptr) {
    if (strcmp(env_value, "off") == 0) return ShimKind::kOff;
    if (strcmp(env_value, "ebpf") == 0) return ShimKind::kEbpf;
    if (strcmp(env_value, "module") == 0) return ShimKind::kModule;
  }
  struct stat st;
  // Only the module's character device counts: a stale file of that name does not.
  if (stat(device.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) return ShimKind::kModule;
  return ShimKind::kEbpf;
}

const char* ShimKindName(ShimKind kind) {
  switch (kind) {
    case ShimKind::kOff: return "off";
    case ShimKind::kModule: return "module";
    case ShimKind::kEbpf: return "ebpf";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<ModuleShim>> ModuleShim::Start(const replifs_shim_config& config, RecordsFn on_records,
                                                              const std::string& device) {
  int fd = open(device.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot open ", device, ": ", strerror(errno)));
  if (ioctl(fd, REPLIFS_SHIM_IOC_SET_CONFIG, &config) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(device, ": cannot set the protected roots: ", strerror(err)));
  }
  std::unique_ptr<ModuleShim> shim(new ModuleShim());
  shim->fd_ = fd;
  shim->on_records_ = std::move(on_records);
  return shim;
}

absl::Status ModuleShim::Stop() {
  if (ioctl(fd_, REPLIFS_SHIM_IOC_CLEAR) != 0) {
    return absl::InternalError(absl::StrCat("cannot switch the module's protection off: ", strerror(errno)));
  }
  return absl::OkStatus();
}

ModuleShim::~ModuleShim() {
  if (fd_ < 0) return;
  (void)Stop();
  (void)Poll(0);  // what was queued before protection went off
  close(fd_);
}

absl::Status ModuleShim::Poll(int timeout_ms) {
  pollfd p = {fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd_, buf.data(), buf.size());
    if (n > 0) {
      on_records_(buf.data(), static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::InternalError(absl::StrCat("read ", REPLIFS_SHIM_DEVICE, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }
}

uint64_t ModuleShim::dropped() const {
  replifs_shim_stats stats{};
  if (ioctl(fd_, REPLIFS_SHIM_IOC_STATS, &stats) != 0) return 0;
  return stats.dropped;
}

}  // namespace replifs::shim
