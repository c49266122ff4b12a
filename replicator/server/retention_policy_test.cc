#include "replicator/server/retention_policy.h"

#include "gtest/gtest.h"

namespace replifs::server {
namespace {

constexpr int64_t kHour = int64_t{3600} * 1000000000;
constexpr int64_t kDay = 24 * kHour;
// 2026-11-23 00:00 UTC, a Monday.
constexpr int64_t kMonday = int64_t{1795392000} * 1000000000;

TEST(RetentionPolicyTest, NewestVersionIsAlwaysKept) {
  RetentionPolicy policy;
  policy.keep_last = 0;
  EXPECT_EQ(VersionsKept(policy, {1, 2, 3}, 10), (std::vector<bool>{false, false, true}));
}

TEST(RetentionPolicyTest, KeepLastAndWithin) {
  RetentionPolicy policy;
  policy.keep_last = 2;
  const std::vector<int64_t> times = {kMonday, kMonday + kHour, kMonday + 2 * kHour,
                                      kMonday + 3 * kHour};
  EXPECT_EQ(VersionsKept(policy, times, kMonday + 10 * kHour),
            (std::vector<bool>{false, false, true, true}));
  policy.keep_last = 0;
  policy.keep_within = absl::Hours(9);  // now - 9h = kMonday + 1h
  EXPECT_EQ(VersionsKept(policy, times, kMonday + 10 * kHour),
            (std::vector<bool>{false, true, true, true}));
}

TEST(RetentionPolicyTest, DailyKeepsNewestOfEachDayWeeklyOfEachWeek) {
  // Two versions on each of 10 consecutive days from a Monday.
  std::vector<int64_t> times;
  for (int day = 0; day < 10; ++day) {
    times.push_back(kMonday + day * kDay + kHour);
    times.push_back(kMonday + day * kDay + 5 * kHour);
  }
  RetentionPolicy daily;
  daily.keep_daily = 3;
  std::vector<bool> kept = VersionsKept(daily, times, kMonday + 20 * kDay);
  for (size_t i = 0; i < times.size(); ++i) {
    const bool expected = i == 19 || i == 17 || i == 15;  // newest of days 9, 8, 7
    EXPECT_EQ(kept[i], expected) << i;
  }
  RetentionPolicy weekly;
  weekly.keep_weekly = 5;
  kept = VersionsKept(weekly, times, kMonday + 20 * kDay);
  for (size_t i = 0; i < times.size(); ++i) {
    const bool expected = i == 19 || i == 13;  // newest of week 2 (day 9) and week 1 (day 6)
    EXPECT_EQ(kept[i], expected) << i;
  }
}

TEST(RetentionPolicyTest, ParsesDurations) {
  EXPECT_EQ(*ParseRetentionDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseRetentionDuration("2w"), absl::Hours(336));
  EXPECT_EQ(*ParseRetentionDuration("90s"), absl::Seconds(90));
  EXPECT_FALSE(ParseRetentionDuration("7").ok());
  EXPECT_FALSE(ParseRetentionDuration("-1d").ok());
  EXPECT_FALSE(ParseRetentionDuration("xd").ok());
}

}  // namespace
}  // namespace replifs::server
