#include "replicator/paths/relative_path.h"

#include <string>

#include "gtest/gtest.h"

namespace replifs::paths {
namespace {

TEST(CheckRelativePath, AcceptsTheRootAndPlainRelativePaths) {
  EXPECT_TRUE(CheckRelativePath("").ok());
  EXPECT_TRUE(CheckRelativePath("a").ok());
  EXPECT_TRUE(CheckRelativePath("a/b/c").ok());
  EXPECT_TRUE(CheckRelativePath("a/\xff\xfe").ok());  // not UTF-8, still a name
  EXPECT_TRUE(CheckRelativePath("...").ok());
  EXPECT_TRUE(CheckRelativePath(std::string(255, 'x')).ok());
}

TEST(CheckRelativePath, RefusesEscapesAndMalformedPathsSayingWhy) {
  struct Case {
    std::string path;
    std::string reason;
  };
  const Case cases[] = {
      {"/a", "is absolute"},
      {"..", "component"},
      {"a/../b", "component"},
      {"./a", "component"},
      {"a//b", "component"},
      {"a/", "component"},
      {std::string("a\0b", 3), "contains NUL"},
      {std::string(256, 'x'), "over 255 bytes"},
      {std::string(4097, 'a'), "the limit is 4096"},
  };
  for (const Case& c : cases) {
    const absl::Status status = CheckRelativePath(c.path);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << PrintablePath(c.path);
    EXPECT_NE(status.message().find(c.reason), std::string::npos) << status.message();
  }
}

TEST(PrintablePath, EscapesBytesAndCutsLongPaths) {
  EXPECT_EQ(PrintablePath(std::string("a\nb\0", 4)), "a\\nb\\x00");
  EXPECT_EQ(PrintablePath(std::string(100, 'x')), std::string(80, 'x') + "...");
}

}  // namespace
}  // namespace replifs::paths
