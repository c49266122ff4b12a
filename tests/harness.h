// Test harness for driving the real `replifs-server` and `replifs` binaries:
// running processes with timeouts, a server on 127.0.0.1 with a temporary
// store, a protected directory with content, and a gtest fixture that always
// cleans up (unmount, daemon, server, temp dirs) even after a failure.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/orphan_guard.h"

namespace replifs::test {

// Paths of the binaries under test. integration_test.cc sets them from the
// build (compile definitions); the environment variables REPLIFS_BIN and
// REPLIFS_SERVER_BIN override them (e.g. to test another build).
struct BinaryPaths {
  std::string replifs;
  std::string server;
};
BinaryPaths& Binaries();

struct RunResult {
  int exit_code = -1;  // exit status; 128+N if killed by signal N; -1 if it could not start
  bool timed_out = false;
  double seconds = 0;
  std::string out;
  std::string err;
  std::string command;
  std::string Describe() const;  // multi-line summary for failure messages
};

// Runs argv[0] (a path) with stdin from /dev/null, capturing stdout and
// stderr, killing it (SIGKILL) after timeout_s. Returns as soon as the child
// exits, even if a process it left behind (a daemon) still holds the pipes.
RunResult RunProcess(const std::vector<std::string>& argv, double timeout_s = 120);

// Success iff exit code 0 (with the whole run described otherwise).
::testing::AssertionResult Succeeded(const RunResult& r);
// Failure with exactly one non-empty line on stderr.
::testing::AssertionResult FailedWithOneLine(const RunResult& r);

std::string MakeTempDir(const std::string& prefix);  // unique dir under /tmp
void RemoveTree(const std::string& path);

// Filesystem type of the topmost mount at `dir` ("" if `dir` is no mount point).
std::string MountFsType(const std::string& dir);
bool IsMounted(const std::string& dir);
int MountCount(const std::string& dir);  // mounts stacked at exactly `dir`
// Detaches every mount at or below `dir` (MNT_DETACH). Returns how many.
int DetachMountsUnder(const std::string& dir);

// CI=true: a test that would skip for a missing capability fails instead.
bool InCI();

bool ProcessAlive(pid_t pid);  // exists and is not a zombie
std::string ProcessCmdline(pid_t pid);

// File helpers.
std::string RandomBytes(size_t n, uint64_t seed);
void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644);
std::string ReadFile(const std::string& path, int* err = nullptr);  // *err = errno or 0
// Compares a file's bytes to `expected`, describing the first difference.
::testing::AssertionResult FileContentIs(const std::string& path, const std::string& expected);

std::string FormatRfc3339Millis(const struct timespec& t);  // 2026-11-25T10:00:00.250Z
std::string FormatAtSeconds(const struct timespec& t);      // @1764064800.250000000

class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();

  // Starts `replifs-server --listen LISTEN --store STORE`, stderr appended to
  // log_path, and waits (up to timeout_s) for its "listening on" line.
  // Returns "" on success, else an error description.
  // `extra_args` follow (e.g. --tls-cert F --tls-key F).
  std::string Start(const std::string& store, const std::string& listen,
                    const std::string& log_path, double timeout_s = 20,
                    const std::vector<std::string>& extra_args = {});
  // SIGTERM, then SIGKILL after grace_s; reaps it. Returns a description of
  // how it ended ("" if it was not running).
  std::string Stop(double grace_s = 10);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string stdout_text();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int out_fd_ = -1;
  std::thread drain_;
  std::atomic<bool> stop_drain_{false};
  std::mutex mu_;
  std::string out_;
};

// Fixture: a server on a fresh store, a protected dir with content, a state dir.
class ReplifsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  RunResult Run(std::vector<std::string> args, double timeout_s = 120);  // replifs ARGS...
  RunResult Mount(std::vector<std::string> extra = {});
  // Mount() + checks: exit 0, DIR is a fuse.replifs mount, daemon.pid names a live process.
  ::testing::AssertionResult MountOk(std::vector<std::string> extra = {});
  RunResult Umount(bool lazy = false);
  RunResult Sync(double timeout_s = 60);
  RunResult Status();
  RunResult Verify();
  RunResult Restore(const std::string& dest, std::vector<std::string> extra = {});
  RunResult RestoreFromServer(const std::string& dest, std::vector<std::string> extra = {});

  // The "pending changes: N" figure of `replifs status`, if present.
  std::optional<long long> PendingChanges();
  pid_t DaemonPid() const;  // from STATE/daemon.pid, -1 if none
  bool WaitDaemonGone(pid_t pid, double timeout_s);

  // `replifs-server repo create NAME` on STORE (default: the fixture's); the
  // printed token goes to `token_file` (0600).
  void CreateRepo(const std::string& name, const std::string& token_file,
                  const std::string& store = "");

  std::string StopServer();
  std::string RestartServerSamePort();

  // Fresh, not yet existing path under the test's temp root.
  std::string FreshPath(const std::string& name);
  std::string P(const std::string& rel) const { return prot_ + "/" + rel; }

  void DumpDiagnostics();

  std::string root_;   // everything below is inside root_
  std::string prot_;   // protected dir
  std::string state_;  // client state dir
  std::string store_;  // server store
  std::string server_log_;
  std::string repo_ = "itrepo";
  std::string token_file_;  // the token of repo_, as `replifs mount --token-file` reads it
  ServerProcess server_;
  OrphanGuard guard_;  // cleans up if this process dies before TearDown
  int fresh_counter_ = 0;
};

// Creates the pre-existing content of a protected dir (see harness.cc).
void PopulateInitialTree(const std::string& dir);

}  // namespace replifs::test
