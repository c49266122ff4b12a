// Debian's abseil has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted at absl calls.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace replifs::server {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace replifs::server
