#include "cli/change_age_tracker.h"

#include <gtest/gtest.h>

namespace replifs::cli {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

TEST(ChangeAgeTrackerTest, AgeOfOldestPendingAndLatencyOfLastAck) {
  ChangeAgeTracker tracker;
  EXPECT_EQ(tracker.OldestPendingAgeNs(100 * kSecond), 0);
  EXPECT_EQ(tracker.LastAckLatencyNs(), 0);
  tracker.Journaled(1, 10 * kSecond);
  tracker.Journaled(2, 11 * kSecond);
  tracker.Journaled(3, 15 * kSecond);
  EXPECT_EQ(tracker.OldestPendingAgeNs(20 * kSecond), 10 * kSecond);
  // Seqs 1 and 2 acknowledged at t=12: the newest of them waited 1 s.
  tracker.Acknowledged(2, 12 * kSecond);
  EXPECT_EQ(tracker.LastAckLatencyNs(), 1 * kSecond);
  EXPECT_EQ(tracker.pending(), 1u);
  EXPECT_EQ(tracker.OldestPendingAgeNs(20 * kSecond), 5 * kSecond);
  // An ack that covers nothing new keeps the last latency.
  tracker.Acknowledged(2, 30 * kSecond);
  EXPECT_EQ(tracker.LastAckLatencyNs(), 1 * kSecond);
  tracker.Acknowledged(3, 15 * kSecond + kSecond / 2);
  EXPECT_EQ(tracker.LastAckLatencyNs(), kSecond / 2);
  EXPECT_EQ(tracker.OldestPendingAgeNs(40 * kSecond), 0);
}

TEST(ChangeAgeTrackerTest, IgnoresSeqsOutOfOrderAndClockSteps) {
  ChangeAgeTracker tracker;
  tracker.Journaled(5, 10 * kSecond);
  tracker.Journaled(5, 11 * kSecond);  // the same change seen again
  tracker.Journaled(4, 11 * kSecond);
  EXPECT_EQ(tracker.pending(), 1u);
  // A clock that stepped back never yields a negative age.
  EXPECT_EQ(tracker.OldestPendingAgeNs(9 * kSecond), 0);
  tracker.Acknowledged(5, 9 * kSecond);
  EXPECT_EQ(tracker.LastAckLatencyNs(), 0);
}

}  // namespace
}  // namespace replifs::cli
