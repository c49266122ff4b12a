#include "replicator/scheduler/dirty_extent_set.h"

#include <limits>

#include "gtest/gtest.h"
#include "replicator/scheduler/path_rewrite.h"

namespace replifs::scheduler {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(DirtyExtentSetTest, MergesOverlappingAndAdjacent) {
  DirtyExtentSet set;
  set.Insert(0, 10);
  set.Insert(10, 5);   // adjacent
  set.Insert(30, 10);  // separate
  set.Insert(12, 2);   // inside
  EXPECT_EQ(set.ranges(), (Ranges{{0, 15}, {30, 10}}));
  EXPECT_EQ(set.total_bytes(), 25u);
  set.Insert(14, 17);  // bridges both
  EXPECT_EQ(set.ranges(), (Ranges{{0, 40}}));
  EXPECT_EQ(set.total_bytes(), 40u);
  set.Insert(100, 0);
  EXPECT_EQ(set.range_count(), 1u);
}

TEST(DirtyExtentSetTest, InsertOutOfOrder) {
  DirtyExtentSet set;
  for (int i = 99; i >= 0; i -= 2) set.Insert(i * 10, 10);  // odd blocks
  EXPECT_EQ(set.range_count(), 50u);
  for (int i = 0; i < 100; i += 2) set.Insert(i * 10, 10);  // fill the gaps
  EXPECT_EQ(set.ranges(), (Ranges{{0, 1000}}));
}

TEST(DirtyExtentSetTest, TruncateAndMerge) {
  DirtyExtentSet set;
  set.Insert(0, 10);
  set.Insert(20, 10);
  set.Insert(40, 10);
  set.TruncateTo(25);
  EXPECT_EQ(set.ranges(), (Ranges{{0, 10}, {20, 5}}));
  EXPECT_EQ(set.total_bytes(), 15u);
  DirtyExtentSet other;
  other.Insert(5, 20);
  set.Merge(other);
  EXPECT_EQ(set.ranges(), (Ranges{{0, 25}}));
  set.TruncateTo(0);
  EXPECT_TRUE(set.empty());
  EXPECT_EQ(set.total_bytes(), 0u);
}

TEST(DirtyExtentSetTest, HugeLengthSaturates) {
  DirtyExtentSet set;
  set.Insert(10, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(set.ranges().at(0).first, 10u);
  EXPECT_EQ(set.total_bytes(), std::numeric_limits<uint64_t>::max() - 10);
}

TEST(PathRewriteTest, UnderAndRebase) {
  EXPECT_TRUE(IsSameOrUnder("d", "d"));
  EXPECT_TRUE(IsSameOrUnder("d/f", "d"));
  EXPECT_FALSE(IsSameOrUnder("dx/f", "d"));
  EXPECT_FALSE(IsSameOrUnder("d", "d/f"));
  EXPECT_TRUE(IsSameOrUnder("anything", ""));
  EXPECT_EQ(Rebase("d/f", "d", "e"), "e/f");
  EXPECT_EQ(Rebase("d", "d", "x/y"), "x/y");
  EXPECT_EQ(Rebase("dd/f", "d", "e"), std::nullopt);
}

}  // namespace
}  // namespace replifs::scheduler
