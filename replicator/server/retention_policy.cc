#include "replicator/server/retention_policy.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace replifs::server {
namespace {

constexpr int64_t kDayNs = int64_t{86400} * 1000000000;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Keeps the newest version of each of the newest `count` buckets.
void KeepNewestPerBucket(const std::vector<int64_t>& times_ns, int count, int64_t bucket_ns,
                         int64_t offset_ns, std::vector<bool>* kept) {
  int buckets = 0;
  bool have_last = false;
  int64_t last_bucket = 0;
  for (size_t i = times_ns.size(); i-- > 0 && buckets < count;) {
    const int64_t bucket = FloorDiv(times_ns[i] + offset_ns, bucket_ns);
    if (have_last && bucket == last_bucket) continue;
    (*kept)[i] = true;
    have_last = true;
    last_bucket = bucket;
    ++buckets;
  }
}

}  // namespace

std::vector<bool> VersionsKept(const RetentionPolicy& policy, const std::vector<int64_t>& times_ns,
                               int64_t now_ns) {
  std::vector<bool> kept(times_ns.size(), false);
  if (times_ns.empty()) return kept;
  kept.back() = true;  // the current state is never pruned
  for (size_t i = 0; i < times_ns.size(); ++i) {
    if (i + static_cast<size_t>(policy.keep_last) >= times_ns.size()) kept[i] = true;
    if (policy.keep_within > absl::ZeroDuration() &&
        times_ns[i] >= now_ns - absl::ToInt64Nanoseconds(policy.keep_within)) {
      kept[i] = true;
    }
  }
  KeepNewestPerBucket(times_ns, policy.keep_daily, kDayNs, 0, &kept);
  // 1970-01-01 was a Thursday: shift by 3 days so weeks start on Monday.
  KeepNewestPerBucket(times_ns, policy.keep_weekly, 7 * kDayNs, 3 * kDayNs, &kept);
  return kept;
}

absl::StatusOr<absl::Duration> ParseRetentionDuration(const std::string& text) {
  int64_t count = 0;
  if (text.size() >= 2 && absl::SimpleAtoi(text.substr(0, text.size() - 1), &count) && count > 0) {
    switch (text.back()) {
      case 's': return absl::Seconds(count);
      case 'm': return absl::Minutes(count);
      case 'h': return absl::Hours(count);
      case 'd': return absl::Hours(24 * count);
      case 'w': return absl::Hours(24 * 7 * count);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad duration \"", text, "\" (a positive number and s, m, h, d or w: 7d)"));
}

}  // namespace replifs::server
