// Which versions of a path a retention policy keeps (`replifs-server prune`).
// Per path: its newest version always; then every rule adds what it keeps
// (a version is removed only if no rule keeps it), as restic and borg do.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replifs::server {

struct RetentionPolicy {
  int keep_last = 0;                                  // the newest N versions
  absl::Duration keep_within = absl::ZeroDuration();  // versions younger than this
  int keep_daily = 0;   // the newest version of each of the last N days that have one
  int keep_weekly = 0;  // the same per ISO week (Monday to Sunday, UTC)

  bool empty() const {
    return keep_last == 0 && keep_within == absl::ZeroDuration() && keep_daily == 0 &&
           keep_weekly == 0;
  }
};

// `times_ns`: one path's version times, oldest first. Returns, for each,
// whether the policy keeps it, as of `now_ns`.
std::vector<bool> VersionsKept(const RetentionPolicy& policy, const std::vector<int64_t>& times_ns,
                               int64_t now_ns);

// "7d", "12h", "30m", "2w" (also "90s").
absl::StatusOr<absl::Duration> ParseRetentionDuration(const std::string& text);

}  // namespace replifs::server
