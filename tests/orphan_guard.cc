#include "tests/orphan_guard.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace replifs::test {
namespace {

// Runs as `sh -c SCRIPT guard ROOT STATE` with the socket on stdin. Lines are
// "server PID" or "done"; end of input without "done" means the test died.
constexpr char kWatcherScript[] = R"sh(
root=$1; state=$2; servers=
while read -r kind value; do
  case $kind in
    done) exit 0 ;;
    server) servers="$servers $value" ;;
  esac
done
for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
  umount -l "$m" 2>/dev/null
done
d=$(cat "$state/daemon.pid" 2>/dev/null)
if [ -n "$d" ] && grep -q replifs "/proc/$d/cmdline" 2>/dev/null; then kill -9 "$d"; fi
for s in $servers; do
  if grep -q replifs-server "/proc/$s/cmdline" 2>/dev/null; then kill -9 "$s"; fi
done
echo "orphan guard: the test under $root died; detached its mounts, killed its daemon and servers" >&2
)sh";

// A socket rather than a pipe, so a write to a dead watcher can say EPIPE
// (MSG_NOSIGNAL) instead of killing the test with SIGPIPE.
std::string SendLine(int fd, const std::string& line) {
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return std::string("telling the orphan guard \"") + line.substr(0, line.size() - 1) +
             "\": " + strerror(errno);
    sent += static_cast<size_t>(n);
  }
  return "";
}

}  // namespace

std::string OrphanGuard::Arm(const std::string& root, const std::string& state_dir) {
  Disarm();
  int fds[2];
  // Close-on-exec: a daemon the test starts later must not hold the test's
  // end, or the watcher would never see the test die.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return std::string("socketpair: ") + strerror(errno);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return std::string("fork: ") + strerror(errno);
  }
  if (pid == 0) {
    setsid();  // outside the test's process group: a group kill spares it
    dup2(fds[0], STDIN_FILENO);
    execl("/bin/sh", "sh", "-c", kWatcherScript, "guard", root.c_str(), state_dir.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[0]);
  fd_ = fds[1];
  watcher_ = pid;
  return "";
}

std::string OrphanGuard::AddServer(pid_t pid) {
  if (fd_ < 0) return "the orphan guard is not armed";
  if (pid <= 0) return "no server pid to guard";
  return SendLine(fd_, "server " + std::to_string(pid) + "\n");
}

void OrphanGuard::Disarm() {
  if (fd_ < 0) return;
  (void)SendLine(fd_, "done\n");  // a watcher that already died needs no word
  close(fd_);
  fd_ = -1;
  int status = 0;
  while (waitpid(watcher_, &status, 0) < 0 && errno == EINTR) {
  }
  watcher_ = -1;
}

}  // namespace replifs::test
