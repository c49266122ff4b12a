// The one rule for paths on the wire: relative to the protected root. The
// server refuses requests that break it; the client refuses listings that
// break it, so a hostile or corrupt peer cannot reach outside the tree.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace replifs::paths {

inline constexpr size_t kMaxPathSize = 4096;
inline constexpr size_t kMaxPathComponentSize = 255;

// OK for "" (the root) and for components separated by single '/', none
// empty, "." or "..", none over 255 bytes, no NUL, no leading or trailing
// '/', at most 4096 bytes in all. Otherwise InvalidArgument saying why.
absl::Status CheckRelativePath(std::string_view path);

// Path bytes for an error message: escaped, cut at 80 bytes.
std::string PrintablePath(std::string_view path);

}  // namespace replifs::paths
