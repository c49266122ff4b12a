#include "cli/time_spec.h"

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace replifs::cli {
namespace {

// "123.25" -> 123'250'000'000 ns, exactly (no floating point).
absl::StatusOr<int64_t> ParseSecondsWithFraction(const std::string& text) {
  size_t dot = text.find('.');
  std::string whole = text.substr(0, dot);
  std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
  int64_t seconds = 0;
  if (whole.empty() || !absl::SimpleAtoi(whole, &seconds) || fraction.size() > 9 ||
      !std::all_of(fraction.begin(), fraction.end(), [](char c) { return isdigit(c); })) {
    return absl::InvalidArgumentError(absl::StrCat("bad time '@", text, "'"));
  }
  fraction.resize(9, '0');
  int64_t nanos = 0;
  absl::SimpleAtoi(fraction, &nanos);
  return seconds * 1'000'000'000 + (seconds < 0 ? -nanos : nanos);
}

}  // namespace

absl::StatusOr<int64_t> ParseTimeSpec(const std::string& text) {
  if (!text.empty() && text[0] == '@') return ParseSecondsWithFraction(text.substr(1));
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad time '", text, "': use RFC 3339 (2026-11-25T10:00:00.250Z) or @UNIXSECONDS"));
  }
  return absl::ToUnixNanos(time);
}

std::string FormatTimeNs(int64_t time_ns) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(time_ns), absl::UTCTimeZone());
}

}  // namespace replifs::cli
