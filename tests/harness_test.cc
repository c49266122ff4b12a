// The harness itself: a test process killed before its TearDown must not
// leave a FUSE mount, a daemon or a server behind (tests/orphan_guard.h).
#include "tests/harness.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "tests/binaries_from_build.h"

namespace replifs::test {
namespace {

// The victims, run only by OrphanGuardTest in a child process: each says
// where its root and server are as soon as SetUp is done, and dies by
// SIGKILL so no fixture code runs after it.
class OrphanGuardVictim : public ReplifsTest {
 protected:
  void Announce(const char* what, pid_t pid) {
    printf("VICTIM %s=%d root=%s\n", what, pid, root_.c_str());
    fflush(stdout);
  }
};

TEST_F(OrphanGuardVictim, DISABLED_MountsThenIsKilled) {
  Announce("server", server_.pid());
  ASSERT_TRUE(MountOk());
  WriteFile(P("written-before-death"), "x");
  Announce("daemon", DaemonPid());
  kill(getpid(), SIGKILL);
}

TEST_F(OrphanGuardVictim, DISABLED_IsKilledBeforeMounting) {
  Announce("server", server_.pid());
  kill(getpid(), SIGKILL);
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : std::string();
}

// What a victim announced before it died. Whatever the guard missed, the
// destructor does not leave behind either: mounts, daemon, server, temp dirs.
struct VictimRun {
  std::string root, output;
  pid_t daemon = -1, server = -1;
  int status = -1;

  ~VictimRun() {
    if (root.empty()) return;
    DetachMountsUnder(root);
    for (pid_t pid : {daemon, server}) {
      if (pid > 0 && ProcessAlive(pid) && ProcessCmdline(pid).find("replifs") != std::string::npos)
        kill(pid, SIGKILL);
    }
    if (!IsMounted(root + "/protected")) RemoveTree(root);
  }
};

void RunVictim(const std::string& test_name, VictimRun& run) {
  const std::string command = SelfExe() +
                              " --gtest_also_run_disabled_tests --gtest_filter=OrphanGuardVictim." +
                              test_name + " 2>&1";
  FILE* child = popen(command.c_str(), "r");
  ASSERT_NE(child, nullptr);
  char line[8192];
  while (fgets(line, sizeof(line), child) != nullptr) {
    run.output += line;
    char what[16], root[4096];
    int pid = -1;
    if (sscanf(line, "VICTIM %15[a-z]=%d root=%4095s", what, &pid, root) != 3) continue;
    run.root = root;
    (std::string(what) == "daemon" ? run.daemon : run.server) = pid;
  }
  run.status = pclose(child);
}

// Polls up to 15 s for `gone` to hold.
template <typename Predicate>
bool Eventually(Predicate gone) {
  for (int i = 0; i < 150; ++i) {
    if (gone()) return true;
    usleep(100000);
  }
  return gone();
}

bool KilledBySigkill(int popen_status) {
  // popen's shell reports a signal death of its command as 128+N.
  return WIFEXITED(popen_status) && WEXITSTATUS(popen_status) == 128 + SIGKILL;
}

TEST(OrphanGuardTest, KilledTestLeavesNoMountDaemonOrServer) {
  VictimRun victim;
  ASSERT_NO_FATAL_FAILURE(RunVictim("DISABLED_MountsThenIsKilled", victim));
  EXPECT_TRUE(KilledBySigkill(victim.status)) << victim.output;
  ASSERT_FALSE(victim.root.empty()) << "the victim never started:\n" << victim.output;
  ASSERT_GT(victim.server, 0) << victim.output;
  ASSERT_GT(victim.daemon, 0) << "the victim never mounted:\n" << victim.output;

  const std::string prot = victim.root + "/protected";
  Eventually([&] {
    return !IsMounted(prot) && !ProcessAlive(victim.daemon) && !ProcessAlive(victim.server);
  });
  EXPECT_FALSE(IsMounted(prot)) << "the victim's mount was left behind";
  EXPECT_FALSE(ProcessAlive(victim.daemon))
      << "the victim's daemon " << victim.daemon << " was left running";
  EXPECT_FALSE(ProcessAlive(victim.server))
      << "the victim's server " << victim.server << " was left running";
}

TEST(OrphanGuardTest, KilledBeforeMountingLeavesNoServer) {
  std::string root;
  {
    VictimRun victim;
    ASSERT_NO_FATAL_FAILURE(RunVictim("DISABLED_IsKilledBeforeMounting", victim));
    EXPECT_TRUE(KilledBySigkill(victim.status)) << victim.output;
    ASSERT_FALSE(victim.root.empty()) << "the victim never started:\n" << victim.output;
    ASSERT_GT(victim.server, 0) << victim.output;
    EXPECT_EQ(victim.daemon, -1) << "this victim must die before mounting";
    EXPECT_TRUE(Eventually([&] { return !ProcessAlive(victim.server); }))
        << "the victim's server " << victim.server << " was left running";
    root = victim.root;
  }
  struct stat st;
  EXPECT_NE(stat(root.c_str(), &st), 0) << "the victim's dirs were left behind: " << root;
}

// A watcher that died must not take the test with it (SIGPIPE on the next
// word to it); the test hears why it is no longer guarded instead.
TEST(OrphanGuardTest, DeadWatcherIsAnErrorNotASigpipe) {
  const std::string root = MakeTempDir("replifs-guard-");
  ASSERT_FALSE(root.empty());
  OrphanGuard guard;
  ASSERT_EQ(guard.Arm(root, root + "/state"), "");
  ASSERT_GT(guard.watcher_pid(), 0);
  ASSERT_EQ(kill(guard.watcher_pid(), SIGKILL), 0);
  EXPECT_TRUE(Eventually([&] { return !ProcessAlive(guard.watcher_pid()); }));
  const std::string err = guard.AddServer(getpid());
  EXPECT_NE(err.find("Broken pipe"), std::string::npos)
      << "AddServer to a dead watcher said: '" << err << "'";
  guard.Disarm();  // reaps the watcher; must not raise SIGPIPE either
  RemoveTree(root);
}

}  // namespace
}  // namespace replifs::test
