// Depth-first walk of a directory tree through file descriptors (never
// following symlinks), parents before children, names in byte order.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace replifs::client {

// Calls visit(relative_path, lstat) for the root ("") and everything below.
// Returning false from visit for a directory skips its contents.
absl::Status WalkTree(int root_fd,
                      const std::function<bool(const std::string&, const struct stat&)>& visit);

}  // namespace replifs::client
