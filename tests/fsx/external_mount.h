// A fusefs mount served by another process (fsx_mount), with bounded waits
// everywhere: starting, a watchdog for the workload, and a teardown that
// ends a hung connection (fusectl abort, lazy unmount, SIGKILL) instead of
// leaving a process in D state.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace replifs::test {

class ExternalMount {
 public:
  ExternalMount() = default;
  ~ExternalMount() { Stop(); }
  ExternalMount(const ExternalMount&) = delete;
  ExternalMount& operator=(const ExternalMount&) = delete;

  // Runs `daemon DIR EVENTS [--writeback]` and waits (10 s at most) for it
  // to report the mount live. Returns "" or what went wrong.
  std::string Start(const std::string& daemon, const std::string& dir, const std::string& events,
                    bool writeback);

  // Ends the mount: a plain unmount and a bounded wait for the daemon to
  // exit; if that fails, aborts the connection, detaches and kills it.
  // Returns "" after a clean unmount, else what had to be forced.
  std::string Stop();

  pid_t pid() const { return pid_; }

  // Makes every pending and future request on the mount fail (ENOTCONN).
  void Abort();

  // Aborts the connection if Disarm() is not called within `seconds`: a
  // workload stuck in the mount then gets errors instead of hanging.
  void Arm(double seconds);
  // Returns true if the watchdog had fired.
  bool Disarm();

 private:
  std::string dir_;
  std::string device_;  // "major:minor" of the mount, read from mountinfo
  pid_t pid_ = -1;

  std::mutex mu_;  // guards armed_, fired_
  std::condition_variable cv_;
  bool armed_ = false;
  bool fired_ = false;
  std::thread watchdog_;
};

}  // namespace replifs::test
