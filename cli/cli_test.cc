#include <gtest/gtest.h>

#include "cli/args.h"
#include "cli/protection_config.h"
#include "cli/time_spec.h"

namespace replifs::cli {
namespace {

TEST(TimeSpec, ParsesRfc3339WithFractionAndOffset) {
  auto t = ParseTimeSpec("2026-11-25T10:00:00.250Z");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 1795600800250000000);
  auto offset = ParseTimeSpec("2026-11-25T11:00:00.250+01:00");
  ASSERT_TRUE(offset.ok());
  EXPECT_EQ(*offset, *t);
  EXPECT_EQ(FormatTimeNs(*t), "2026-11-25T10:00:00.250Z");
}

TEST(TimeSpec, ParsesUnixSecondsExactly) {
  auto t = ParseTimeSpec("@1795600800.25");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 1795600800250000000);
  EXPECT_EQ(*ParseTimeSpec("@5"), 5'000'000'000);
  EXPECT_FALSE(ParseTimeSpec("@x").ok());
  EXPECT_FALSE(ParseTimeSpec("yesterday").ok());
}

TEST(Args, ValuesFlagsAndPositionals) {
  auto args = ParseArgs({"dir", "--server", "a:1", "--lazy", "--repo=r", "p"}, {"server", "repo"}, {"lazy"});
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->positional, (std::vector<std::string>{"dir", "p"}));
  EXPECT_EQ(args->Get("server"), "a:1");
  EXPECT_EQ(args->Get("repo"), "r");
  EXPECT_TRUE(args->Has("lazy"));
  EXPECT_FALSE(ParseArgs({"--bogus"}, {}, {}).ok());
  EXPECT_FALSE(ParseArgs({"--server"}, {"server"}, {}).ok());
}

TEST(ProtectionConfig, DefaultsDependOnThePath) {
  EXPECT_NE(DefaultStateDir("/a/x"), DefaultStateDir("/b/x"));
  EXPECT_EQ(DefaultStateDir("/a/x").rfind("/var/lib/replifs/x-", 0), 0u);
  EXPECT_NE(DefaultRepoName("/a/x").find(":/a/x"), std::string::npos);
  EXPECT_EQ(*AbsolutePath("/nonexistent/./a/../b"), "/nonexistent/b");
}

}  // namespace
}  // namespace replifs::cli
