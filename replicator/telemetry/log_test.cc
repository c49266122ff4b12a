#include "replicator/telemetry/log.h"

#include <gtest/gtest.h>

namespace replifs::telemetry {
namespace {

TEST(LogLineTest, CarriesTimeLevelComponentMessageAndFields) {
  const absl::Time t = absl::FromUnixMicros(1764072000123456);
  const std::string line = FormatLogLine(t, LogLevel::kWarn, "server", "request failed",
                                         {{"method", "Apply"}, {"bytes", 42}});
  EXPECT_EQ(line,
            "time=2025-11-25T12:00:00.123456Z level=warn component=server msg=\"request failed\" "
            "method=Apply bytes=42");
  auto fields = ParseLogLine(line);
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_EQ((*fields)["level"], "warn");
  EXPECT_EQ((*fields)["msg"], "request failed");
  EXPECT_EQ((*fields)["bytes"], "42");
}

TEST(LogLineTest, HostileValuesRoundTrip) {
  const std::string nasty = "a \"quoted\" x=y\nnext line\\ \x01 end";
  const std::string line = FormatLogLine(absl::UnixEpoch(), LogLevel::kError, "daemon", nasty,
                                         {{"path", nasty}, {"empty", ""}});
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one event, one line: " << line;
  auto fields = ParseLogLine(line);
  ASSERT_TRUE(fields.ok()) << fields.status() << " in " << line;
  EXPECT_EQ((*fields)["msg"], nasty);
  EXPECT_EQ((*fields)["path"], nasty);
  EXPECT_EQ((*fields)["empty"], "");
  EXPECT_EQ(fields->size(), 6u);
}

TEST(LogLineTest, ParserRejectsBrokenLines) {
  EXPECT_FALSE(ParseLogLine("plain text from an old print").ok());
  EXPECT_FALSE(ParseLogLine("msg=\"unterminated").ok());
  EXPECT_FALSE(ParseLogLine("a=1 a=2").ok());
  EXPECT_FALSE(ParseLogLine("msg=\"x\"junk").ok());
}

TEST(LogLineTest, CountsLinesPerLevel) {
  const uint64_t before = LogLinesAt(LogLevel::kError);
  LogError("test", "counted");
  EXPECT_EQ(LogLinesAt(LogLevel::kError), before + 1);
}

}  // namespace
}  // namespace replifs::telemetry
