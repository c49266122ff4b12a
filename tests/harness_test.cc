// The harness itself: a test process killed before its TearDown must not
// leave a FUSE mount, a daemon or a server behind (tests/orphan_guard.h).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

// The victim, run only by OrphanGuardTest in a child process: it mounts,
// says where, and dies by SIGKILL so no fixture code runs after it.
class OrphanGuardVictim : public ReplifsTest {};

TEST_F(OrphanGuardVictim, DISABLED_MountsThenIsKilled) {
  ASSERT_TRUE(MountOk());
  WriteFile(P("written-before-death"), "x");
  printf("VICTIM root=%s daemon=%d server=%d\n", root_.c_str(), DaemonPid(), server_.pid());
  fflush(stdout);
  kill(getpid(), SIGKILL);
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : std::string();
}

TEST(OrphanGuardTest, KilledTestLeavesNoMountDaemonOrServer) {
  const std::string command = SelfExe() +
                              " --gtest_also_run_disabled_tests"
                              " --gtest_filter=OrphanGuardVictim.DISABLED_MountsThenIsKilled 2>&1";
  FILE* child = popen(command.c_str(), "r");
  ASSERT_NE(child, nullptr);
  std::string root, output;
  pid_t daemon = -1, server = -1;
  char line[8192];
  while (fgets(line, sizeof(line), child) != nullptr) {
    output += line;
    std::string text(line);
    if (text.rfind("VICTIM ", 0) != 0) continue;
    char root_buf[4096];
    if (sscanf(line, "VICTIM root=%4095s daemon=%d server=%d", root_buf, &daemon, &server) == 3) {
      root = root_buf;
    }
  }
  const int status = pclose(child);
  // popen's shell reports a signal death of its command as 128+N.
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL) << output;
  ASSERT_FALSE(root.empty()) << "the victim never mounted:\n" << output;
  ASSERT_GT(daemon, 0) << output;
  ASSERT_GT(server, 0) << output;

  bool clean = false;
  for (int i = 0; i < 150 && !clean; ++i) {  // up to 15 s
    clean = !IsMounted(root + "/protected") && !ProcessAlive(daemon) && !ProcessAlive(server);
    if (!clean) usleep(100000);
  }
  EXPECT_FALSE(IsMounted(root + "/protected")) << "the victim's mount was left behind";
  EXPECT_FALSE(ProcessAlive(daemon)) << "the victim's daemon " << daemon << " was left running";
  EXPECT_FALSE(ProcessAlive(server)) << "the victim's server " << server << " was left running";

  // Whatever the guard missed, this test does not leave behind either.
  DetachMountsUnder(root);
  for (pid_t pid : {daemon, server}) {
    if (ProcessAlive(pid) && ProcessCmdline(pid).find("replifs") != std::string::npos) kill(pid, SIGKILL);
  }
  if (!IsMounted(root + "/protected")) RemoveTree(root);
}

}  // namespace
}  // namespace replifs::test
