#include "fusefs/event_reporter.h"

#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <utility>

namespace replifs::fusefs {
namespace {

using replifs::v1::ChangeEvent;

constexpr std::string_view kDeleted = " (deleted)";

std::int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

EventReporter::EventReporter(int root_fd, std::string root_prefix, EventSink* sink)
    : root_fd_(root_fd), root_prefix_(std::move(root_prefix)), sink_(sink) {}

std::optional<std::string> EventReporter::ReadFdPath(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  // d_path fails past one page, so PATH_MAX + slack always suffices.
  char buf[PATH_MAX + 64];
  ssize_t n = readlink(proc.c_str(), buf, sizeof(buf));
  if (n < 0 || static_cast<size_t>(n) >= sizeof(buf)) return std::nullopt;
  return std::string(buf, n);
}

std::optional<std::string> EventReporter::Relative(std::string_view absolute) const {
  if (root_prefix_ == "/") {
    if (!absolute.starts_with('/')) return std::nullopt;
    return std::string(absolute.substr(1));
  }
  if (absolute == root_prefix_) return std::string();
  if (absolute.size() > root_prefix_.size() && absolute.starts_with(root_prefix_) &&
      absolute[root_prefix_.size()] == '/') {
    return std::string(absolute.substr(root_prefix_.size() + 1));
  }
  return std::nullopt;  // moved out of the protected tree
}

std::optional<std::string> EventReporter::PathOf(int fd) const {
  std::optional<std::string> absolute = ReadFdPath(fd);
  if (!absolute) return std::nullopt;
  std::optional<std::string> rel = Relative(*absolute);
  if (!rel || !absolute->ends_with(kDeleted)) return rel;
  // The kernel appends " (deleted)" to an unlinked name; a name may also
  // really end that way. It is real only if it still names this inode.
  struct stat by_fd, by_name;
  if (fstat(fd, &by_fd) != 0 || by_fd.st_nlink == 0) return std::nullopt;
  const char* name = rel->empty() ? "." : rel->c_str();
  if (fstatat(root_fd_, name, &by_name, AT_SYMLINK_NOFOLLOW) != 0 ||
      by_name.st_ino != by_fd.st_ino || by_name.st_dev != by_fd.st_dev) {
    return std::nullopt;
  }
  return rel;
}

std::optional<std::string> EventReporter::PathOfChild(int dir_fd, std::string_view name) const {
  std::optional<std::string> dir = PathOf(dir_fd);
  if (!dir) return std::nullopt;
  if (dir->empty()) return std::string(name);
  dir->push_back('/');
  dir->append(name);
  return dir;
}

void EventReporter::SetAttributes(const struct stat& st, ChangeEvent* event) {
  event->set_inode(st.st_ino);
  event->set_device(st.st_dev);
  replifs::v1::Attributes* a = event->mutable_attributes();
  a->set_mode(st.st_mode);
  a->set_uid(st.st_uid);
  a->set_gid(st.st_gid);
  a->set_size(st.st_size);
  a->set_mtime_ns(std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec);
  a->set_rdev(st.st_rdev);
  a->set_inode(st.st_ino);
  a->set_nlink(st.st_nlink);
}

ChangeEvent EventReporter::NewEvent(ChangeOp op, std::string path, const struct stat& st) const {
  ChangeEvent event;
  event.set_op(op);
  event.set_source(ChangeEvent::OVERLAY);
  event.set_time_ns(NowNs());
  event.set_path(std::move(path));
  SetAttributes(st, &event);
  return event;
}

std::optional<std::string> EventReporter::PathOfAny(const std::vector<int>& name_fds) const {
  for (int fd : name_fds) {
    if (std::optional<std::string> path = PathOf(fd)) return path;
  }
  return std::nullopt;
}

std::optional<ChangeEvent> EventReporter::ObjectEvent(ChangeOp op, const std::vector<int>& name_fds,
                                                      int stat_fd) const {
  struct stat st;
  if (fstat(stat_fd, &st) != 0) return std::nullopt;
  std::optional<std::string> path = PathOfAny(name_fds);
  if (!path) return std::nullopt;
  return NewEvent(op, std::move(*path), st);
}

void EventReporter::ReportUnnamedIfLinked(int stat_fd) const {
  struct stat st;
  if (fstat(stat_fd, &st) != 0 || st.st_nlink == 0) return;  // gone: nothing to back up
  ChangeEvent rescan;
  rescan.set_op(ChangeEvent::RESCAN);
  rescan.set_source(ChangeEvent::OVERLAY);
  rescan.set_time_ns(NowNs());
  Report(std::move(rescan));
}

void EventReporter::Report(ChangeEvent event) const {
  if (sink_ != nullptr) sink_->OnChange(std::move(event));
}

void EventReporter::Barrier() const {
  if (sink_ != nullptr) sink_->OnDurabilityBarrier();
}

}  // namespace replifs::fusefs
