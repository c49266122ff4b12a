#include "cli/crash_marker.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace replifs::cli {

std::string CrashMarkerPath(const std::string& state_dir) { return state_dir + "/running"; }

std::string CurrentBootId() {
  std::string id;
  std::getline(std::ifstream("/proc/sys/kernel/random/boot_id"), id);
  return id;
}

std::optional<CrashMarker> ReadCrashMarker(const std::string& state_dir) {
  std::ifstream in(CrashMarkerPath(state_dir));
  if (!in) return std::nullopt;
  CrashMarker marker;
  if (!(in >> marker.boot_id >> marker.start_ns)) marker.start_ns = 0;
  return marker;
}

absl::Status WriteCrashMarker(const std::string& state_dir, const CrashMarker& marker) {
  const std::string path = CrashMarkerPath(state_dir);
  const std::string text = absl::StrCat(marker.boot_id, " ", marker.start_ns, "\n");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": ", strerror(errno)));
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  const int saved_errno = errno;
  close(fd);
  if (!written) return absl::InternalError(absl::StrCat(path, ": ", strerror(saved_errno)));
  const int dir_fd = open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

void RemoveCrashMarker(const std::string& state_dir) { unlink(CrashMarkerPath(state_dir).c_str()); }

std::optional<int64_t> ChangesMayBeLostSince(const std::optional<CrashMarker>& previous,
                                             const std::string& current_boot_id) {
  if (!previous.has_value()) return std::nullopt;  // clean exit, or never ran
  // Same boot: the daemon was killed, the page cache kept every record.
  if (!current_boot_id.empty() && previous->boot_id == current_boot_id) return std::nullopt;
  return previous->start_ns;
}

}  // namespace replifs::cli
