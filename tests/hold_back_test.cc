// A file still open for writing is held back (SchedulerPolicy in
// replicator/scheduler/scheduler.h): written slowly through the real mount,
// it becomes one version at its close, not one per quiet gap; held open for
// ever, it still gets a version once its oldest change waited max_delay.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

class HoldBackTest : public ReplifsTest {
 protected:
  // Lines of `replifs versions PATH` ("TIME  SIZE bytes  TYPE" or "TIME  deleted").
  std::vector<std::string> Versions(const std::string& path) {
    RunResult result = Run({"versions", path});
    EXPECT_TRUE(Succeeded(result)) << result.Describe();
    std::vector<std::string> lines;
    std::istringstream in(result.out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
    return lines;
  }
  // Writes `piece` at the end and fsyncs: with the writeback cache, fsync is
  // what makes the daemon see (and journal) the write while the file is open.
  static void AppendAndFsync(int fd, const std::string& piece) {
    ASSERT_EQ(write(fd, piece.data(), piece.size()), static_cast<ssize_t>(piece.size())) << strerror(errno);
    ASSERT_EQ(fsync(fd), 0) << strerror(errno);
  }
};

TEST_F(HoldBackTest, SlowlyWrittenFileBecomesOneVersionAtItsClose) {
  // Quiet after 100 ms: without the hold-back every 400 ms gap below would
  // commit a partial version.
  ASSERT_TRUE(MountOk({"--quiet-ms", "100", "--max-delay-ms", "30000"}));
  WriteFile(P("slow.log"), "");
  ASSERT_TRUE(Succeeded(Sync()));
  const size_t before = Versions(P("slow.log")).size();
  // The empty file's versions (its create, and perhaps its attributes apart).
  ASSERT_GE(before, 1u);

  const int fd = open(P("slow.log").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  const std::string piece = RandomBytes(4096, 701);
  std::string expected;
  for (int i = 0; i < 8; ++i) {
    AppendAndFsync(fd, piece);
    expected += piece;
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_EQ(Versions(P("slow.log")).size(), before) << "a version was committed while the file was open";
  ASSERT_EQ(close(fd), 0);
  // Sent at the close (once quiet), far before the 30 s max delay: poll
  // without `replifs sync`, which would send it regardless.
  std::vector<std::string> after;
  for (int i = 0; i < 100; ++i) {
    after = Versions(P("slow.log"));
    if (after.size() > before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(after.size(), before + 1) << "one version for the whole write, at its close";
  EXPECT_NE(after.back().find(std::to_string(expected.size()) + " bytes"), std::string::npos) << after.back();
  ASSERT_TRUE(Succeeded(Sync()));
  EXPECT_EQ(Versions(P("slow.log")).size(), before + 1) << "nothing was left to send after the close";
}

TEST_F(HoldBackTest, FileNeverClosedStillGetsAVersionAtMaxDelay) {
  ASSERT_TRUE(MountOk({"--quiet-ms", "100", "--max-delay-ms", "2000"}));
  WriteFile(P("app.log"), "");
  ASSERT_TRUE(Succeeded(Sync()));
  const size_t before = Versions(P("app.log")).size();

  const int fd = open(P("app.log").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  const auto start = std::chrono::steady_clock::now();
  AppendAndFsync(fd, RandomBytes(4096, 702));
  std::vector<std::string> after;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    after = Versions(P("app.log"));
    if (after.size() > before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(fd);
  ASSERT_EQ(after.size(), before + 1) << "a file held open must still reach the server";
  // Not at the 100 ms quiet interval: held back until the 2 s max delay
  // (a lower bound only; late is fine on a busy machine).
  EXPECT_GE(waited, 1.5) << "sent before the max delay while still open";
  EXPECT_NE(after.back().find("4096 bytes"), std::string::npos) << after.back();
}

}  // namespace
}  // namespace replifs::test
