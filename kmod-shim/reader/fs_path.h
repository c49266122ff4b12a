// Where a protected root lies inside its filesystem: names the shim resolves
// from outside the root (cwd above it, absolute paths) arrive relative to the
// filesystem's root and are matched against this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace replifs::shim {

// Path of `dir` (absolute, not yet over-mounted) relative to the root of the
// filesystem it is on, without a leading '/': "" for a filesystem root.
// From /proc/self/mountinfo (the mount's root + the rest of the path).
absl::StatusOr<std::string> PathInFilesystem(const std::string& dir);

// `fs_relative` (relative to the filesystem root) made relative to a root at
// `root_fs_path`; false when it is outside that root.
bool RelativeToRoot(const std::string& fs_relative, const std::string& root_fs_path, std::string* out);

}  // namespace replifs::shim

namespace replifs::shim {

// The resolver the daemon uses (shim_record.h, OutsideResolver): looks `name`
// up from /proc/TGID/root (absolute) or /proc/TGID/cwd (relative), falling
// back to this process's root when the writer is gone, and walks ".." up to
// the protected root (root_dev, root_ino). nullopt when the name's directory
// is on another device (e.g. the overlay) or not under the root.
std::optional<std::string> ResolveInProcess(uint32_t tgid, const std::string& name, bool absolute, uint64_t root_dev,
                                            uint64_t root_ino);

// Names a file the kernel could not (deeper than the shim's bounded walk)
// from the process that changed it: finds a descriptor of TGID open on
// (dev, ino) in /proc/TGID/fd and reopens that very file by its handle on
// the root's own mount (root_fd: a descriptor, not O_PATH, on the protected
// directory), whose path then lies under the root's. The writer's own path
// may not: an fd opened before the overlay names the covered tree, a bind
// mount another place. nullopt when no such descriptor is open any more,
// or the file is not under the root.
std::optional<std::string> PathOfOpenFile(uint32_t tgid, uint64_t dev, uint64_t ino, int root_fd);

}  // namespace replifs::shim
