// Times on the command line: RFC 3339 (2026-11-25T10:00:00.250Z, or with a
// +hh:mm offset) or @UNIXSECONDS[.FRACTION]. Nanoseconds since the epoch.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace replifs::cli {

absl::StatusOr<int64_t> ParseTimeSpec(const std::string& text);
std::string FormatTimeNs(int64_t time_ns);  // RFC 3339, UTC, milliseconds

}  // namespace replifs::cli
