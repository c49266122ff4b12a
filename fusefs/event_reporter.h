// Turns a successful backing operation into a ChangeEvent for the EventSink:
// computes the protected-root-relative path and the post-change attributes.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusefs/event_sink.h"
#include "replifs/v1/events.pb.h"

namespace replifs::fusefs {

using ChangeOp = replifs::v1::ChangeEvent::Op;

// Paths are read back from the kernel: readlink("/proc/self/fd/<fd>") of the
// object's O_PATH fd, minus the backing root's own readlink. The kernel's
// dcache is the single source of truth, so a renamed directory moves every
// child with no bookkeeping here, changes made underneath the overlay (shim,
// restore) are seen too, and names are raw bytes. The over-mount does not
// change the string: the fds live on the lower mount, whose path is the
// mountpoint's. A hard-linked file keeps an fd per name the kernel looked up
// (Inode::alias_fds), so removing one name leaves another to report. The
// alternative, parent/name links kept in the inode table, would have to
// replay every rename and would miss changes made underneath.
// Cost: one readlink per event (perf is a later issue).
class EventReporter {
 public:
  // root_fd: the backing root (not owned); sink may be null (no reporting).
  EventReporter(int root_fd, std::string root_prefix, EventSink* sink);

  // Readlink of root_fd, the prefix every path starts with.
  static std::optional<std::string> ReadFdPath(int fd);

  // Root-relative path of what fd refers to; nullopt when it has no name in
  // the protected tree any more (unlinked, or a hard link's name was removed).
  std::optional<std::string> PathOf(int fd) const;
  // Root-relative path of `name` inside the directory dir_fd.
  std::optional<std::string> PathOfChild(int dir_fd, std::string_view name) const;

  // An event with op, source, time, path and st's identity and attributes.
  replifs::v1::ChangeEvent NewEvent(ChangeOp op, std::string path, const struct stat& st) const;
  static void SetAttributes(const struct stat& st, replifs::v1::ChangeEvent* event);

  void Report(replifs::v1::ChangeEvent event) const;
  // Reports op on an object: path from the first of name_fds (O_PATH fds of
  // its names) that still has one, attributes from fstat(stat_fd). Reports
  // nothing when no name is left; a still linked object whose name cannot
  // be found becomes a rescan of the tree. `fill` adds the op specifics.
  template <typename Fill>
  void ReportObject(ChangeOp op, const std::vector<int>& name_fds, int stat_fd, Fill fill) const {
    if (sink_ == nullptr) return;
    std::optional<replifs::v1::ChangeEvent> event = ObjectEvent(op, name_fds, stat_fd);
    if (!event) {
      ReportUnnamedIfLinked(stat_fd);
      return;
    }
    fill(*event);
    Report(std::move(*event));
  }
  // First path found among name_fds.
  std::optional<std::string> PathOfAny(const std::vector<int>& name_fds) const;

  // Everything reported so far must survive a power loss.
  void Barrier() const;

  bool enabled() const { return sink_ != nullptr; }

 private:
  std::optional<replifs::v1::ChangeEvent> ObjectEvent(ChangeOp op, const std::vector<int>& name_fds,
                                                      int stat_fd) const;
  // A file kept by handle whose backing dentry was evicted reopens without a
  // path (or one was moved out of the tree): if it still has links, its
  // change must not vanish, so the whole tree is rescanned (an unnamed RESCAN).
  void ReportUnnamedIfLinked(int stat_fd) const;
  std::optional<std::string> Relative(std::string_view absolute) const;

  const int root_fd_;
  const std::string root_prefix_;  // readlink of root_fd_, no trailing '/'
  EventSink* const sink_;
};

}  // namespace replifs::fusefs
