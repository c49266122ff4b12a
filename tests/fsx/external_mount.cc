// ExternalMount: spawn fsx_mount, watch the workload, tear down by force if
// need be. Nothing here touches the mount except umount2: a stat() of a hung
// mount would itself hang.
#include "tests/fsx/external_mount.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace replifs::test {
namespace {

// "major:minor" of the last fuse mount on dir, or "".
std::string FuseDeviceOf(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, device;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, target;
    fields >> id >> parent >> dev >> root >> target;
    if (target == dir && line.find(" - fuse.") != std::string::npos) device = dev;
  }
  return device;
}

// Waits up to `seconds` for pid to exit; true if it did (and was reaped).
bool WaitExit(pid_t pid, double seconds, int* status) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    usleep(10000);
  }
}

}  // namespace

std::string ExternalMount::Start(const std::string& daemon, const std::string& dir,
                                 const std::string& events, bool writeback) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return std::string("pipe: ") + strerror(errno);
  pid_t pid = fork();
  if (pid < 0) return std::string("fork: ") + strerror(errno);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    execl(daemon.c_str(), daemon.c_str(), dir.c_str(), events.c_str(),
          writeback ? "--writeback" : static_cast<char*>(nullptr), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  pid_ = pid;
  dir_ = dir;
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (said.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[64];
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    said.append(buf, n);
  }
  close(out[0]);
  if (said != "ready\n") {
    std::string why = said.empty() ? "no ready line within 10 s" : "said: " + said;
    Stop();
    return daemon + " did not mount " + dir + " (" + why + ")";
  }
  device_ = FuseDeviceOf(dir);
  if (device_.empty()) {
    Stop();
    return "no fuse mount on " + dir + " in /proc/self/mountinfo";
  }
  return "";
}

void ExternalMount::Abort() {
  unsigned major = 0, minor = 0;
  if (sscanf(device_.c_str(), "%u:%u", &major, &minor) != 2) return;
  // fusectl names connections by the kernel's dev_t (major << 20 | minor).
  std::ofstream abort("/sys/fs/fuse/connections/" + std::to_string((major << 20) | minor) +
                      "/abort");
  abort << "1\n";
}

void ExternalMount::Arm(double seconds) {
  Disarm();
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
  fired_ = false;
  watchdog_ = std::thread([this, seconds] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return !armed_; })) {
      return;
    }
    fired_ = true;
    lock.unlock();
    Abort();
  });
}

bool ExternalMount::Disarm() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

std::string ExternalMount::Stop() {
  Disarm();
  if (pid_ < 0) return "";
  std::string forced;
  if (!device_.empty()) {
    // Unmounting writes dirty pages back through the daemon: bounded too.
    Arm(10);
    int res = umount2(dir_.c_str(), 0);
    const int err = errno;
    if (Disarm()) forced = "unmount hung; connection aborted";
    if (res != 0) {
      forced += std::string(forced.empty() ? "" : "; ") + "umount: " + strerror(err);
      Abort();
      umount2(dir_.c_str(), MNT_DETACH);
    }
  }
  int status = 0;
  if (!WaitExit(pid_, 10, &status)) {
    forced += std::string(forced.empty() ? "" : "; ") + "daemon did not exit; killed";
    Abort();
    kill(pid_, SIGKILL);
    WaitExit(pid_, 10, &status);
  } else if (forced.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    forced = "daemon exited with status " + std::to_string(status);
  }
  // Whatever happened, leave no mount behind.
  if (!FuseDeviceOf(dir_).empty()) umount2(dir_.c_str(), MNT_DETACH);
  pid_ = -1;
  device_.clear();
  return forced;
}

}  // namespace replifs::test
