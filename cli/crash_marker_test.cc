#include "cli/crash_marker.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace replifs::cli {
namespace {

class CrashMarkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/crash-marker-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CrashMarkerTest, NoMarkerMeansACleanExit) {
  EXPECT_FALSE(ReadCrashMarker(dir_).has_value());
  EXPECT_FALSE(ChangesMayBeLostSince(ReadCrashMarker(dir_), CurrentBootId()).has_value());
}

TEST_F(CrashMarkerTest, KilledUnderTheSameBootLosesNothing) {
  ASSERT_FALSE(CurrentBootId().empty());
  ASSERT_TRUE(WriteCrashMarker(dir_, {CurrentBootId(), 1234}).ok());
  EXPECT_FALSE(ChangesMayBeLostSince(ReadCrashMarker(dir_), CurrentBootId()).has_value());
}

TEST_F(CrashMarkerTest, AnotherBootMeansChangesSinceThatStartMayBeLost) {
  ASSERT_TRUE(WriteCrashMarker(dir_, {"00000000-boot-before-the-crash", 1234}).ok());
  const auto since = ChangesMayBeLostSince(ReadCrashMarker(dir_), CurrentBootId());
  ASSERT_TRUE(since.has_value());
  EXPECT_EQ(*since, 1234);
}

TEST_F(CrashMarkerTest, ATornMarkerRereadsEverything) {
  std::ofstream(CrashMarkerPath(dir_)) << "half-a-boot-id";
  const auto since = ChangesMayBeLostSince(ReadCrashMarker(dir_), CurrentBootId());
  ASSERT_TRUE(since.has_value());
  EXPECT_EQ(*since, 0);
}

TEST_F(CrashMarkerTest, RemovedOnCleanExit) {
  ASSERT_TRUE(WriteCrashMarker(dir_, {CurrentBootId(), 1}).ok());
  RemoveCrashMarker(dir_);
  EXPECT_FALSE(ReadCrashMarker(dir_).has_value());
}

}  // namespace
}  // namespace replifs::cli
