// `replifs sync` sends what is pending at once (issue 5, "durable within
// 100 ms of `replifs sync`"): it skips the quiet interval and the hold-back
// of files still open for writing (SchedulerPolicy, scheduler.h). Mounted
// with a 10 s quiet interval and a 60 s max delay, a change is first shown
// to stay pending by itself (so the sync is what sends it), then `replifs
// sync` must return within a few seconds with the change on the server.
// A file still open for writing goes out as written so far (its pages are
// written back by the sync's syncfs); its close later sends the rest.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

constexpr double kSyncSeconds = 3.0;  // against the 10 s quiet interval

class SyncNowTest : public ReplifsTest {
 protected:
  void MountWithLongQuiet() {
    ASSERT_TRUE(MountOk({"--quiet-ms", "10000", "--max-delay-ms", "60000"}));
    ASSERT_TRUE(Succeeded(Sync()));  // the initial sync of the empty tree
  }
  // Pending for a second on its own: the quiet interval holds it back.
  void ExpectStillPending() {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::optional<long long> pending = PendingChanges();
    ASSERT_TRUE(pending.has_value()) << Status().Describe();
    ASSERT_GE(*pending, 1) << "the change went out before the quiet interval; the test proves nothing";
  }
  // `replifs sync` returns quickly, and the server then holds `expected`.
  void ExpectSyncSends(const std::string& name, const std::string& expected) {
    RunResult sync = Sync();
    ASSERT_TRUE(Succeeded(sync)) << sync.Describe();
    std::cout << "[ sync     ] " << name << ": returned in " << sync.seconds << " s" << std::endl;
    EXPECT_LT(sync.seconds, kSyncSeconds) << "`replifs sync` waited for the quiet interval";
    const std::string dest = FreshPath("restore-" + name);
    ASSERT_TRUE(Succeeded(RestoreFromServer(dest, {name})));
    EXPECT_TRUE(FileContentIs(dest + "/" + name, expected)) << "the server's copy after `replifs sync`";
  }
};

TEST_F(SyncNowTest, SyncSendsAClosedFileBeforeItsQuietInterval) {
  MountWithLongQuiet();
  const std::string content = RandomBytes(300000, 501);
  WriteFile(P("closed.bin"), content);
  ExpectStillPending();
  ExpectSyncSends("closed.bin", content);
}

TEST_F(SyncNowTest, SyncSendsAFileStillOpenForWritingAsWrittenSoFar) {
  MountWithLongQuiet();
  WriteFile(P("open.bin"), "");
  ASSERT_TRUE(Succeeded(Sync()));
  const int fd = open(P("open.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  const std::string first = RandomBytes(200000, 502);
  ASSERT_EQ(write(fd, first.data(), first.size()), static_cast<ssize_t>(first.size())) << strerror(errno);
  ExpectStillPending();
  ExpectSyncSends("open.bin", first);  // held open: sent anyway, as far as written

  const std::string second = RandomBytes(100000, 503);
  ASSERT_EQ(write(fd, second.data(), second.size()), static_cast<ssize_t>(second.size())) << strerror(errno);
  ASSERT_EQ(close(fd), 0) << strerror(errno);
  ExpectSyncSends("open.bin", first + second);
}

}  // namespace
}  // namespace replifs::test
