// Cleans up after a test process that dies without running its TearDown
// (killed by a signal, by `timeout`, by a crash): a small watcher in its own
// session waits on a socket from the test; if it closes before the test
// says "done", it lazily detaches every mount under the test's root and kills
// the daemon named in STATE/daemon.pid and the servers it was told of.
#pragma once

#include <sys/types.h>

#include <string>

namespace replifs::test {

class OrphanGuard {
 public:
  OrphanGuard() = default;
  OrphanGuard(const OrphanGuard&) = delete;
  OrphanGuard& operator=(const OrphanGuard&) = delete;
  ~OrphanGuard() { Disarm(); }

  // Starts the watcher for mounts under `root` and the daemon of `state_dir`.
  // Returns "" or why it could not start.
  std::string Arm(const std::string& root, const std::string& state_dir);
  // A server the watcher must kill (only if /proc/PID/cmdline still names
  // replifs-server, so a reused pid is left alone). Returns "" or why the
  // watcher could not be told (it died: the test would be unguarded).
  std::string AddServer(pid_t pid);
  // The test cleaned up itself: the watcher exits without acting.
  void Disarm();

  pid_t watcher_pid() const { return watcher_; }

 private:
  int fd_ = -1;
  pid_t watcher_ = -1;
};

}  // namespace replifs::test
