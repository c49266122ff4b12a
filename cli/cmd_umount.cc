// `replifs umount DIR [--lazy]`: send what can be sent, then unmount.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/control_channel.h"
#include "replicator/client/path_rules.h"

namespace replifs::cli {
namespace {

bool Under(const std::string& path, const std::string& dir) { return client::PathIsAtOrBelow(path, dir); }

std::string Readlink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? "" : std::string(buf, n);
}

// Processes with a cwd, root, open file or mapping inside `dir` (what fuser -m
// shows), except the daemon: its fds point into the backing directory, whose
// path is the same string.
std::vector<std::string> ProcessesHolding(const std::string& dir, int daemon_pid) {
  std::vector<std::string> holders;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return holders;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid == getpid() || pid == daemon_pid) continue;
    const std::string base = absl::StrCat("/proc/", pid);
    bool holds = Under(Readlink(base + "/cwd"), dir) || Under(Readlink(base + "/root"), dir);
    if (DIR* fds = holds ? nullptr : opendir((base + "/fd").c_str())) {
      while (dirent* fd = readdir(fds)) {
        if (Under(Readlink(base + "/fd/" + fd->d_name), dir)) {
          holds = true;
          break;
        }
      }
      closedir(fds);
    }
    if (!holds) {
      std::ifstream maps(base + "/maps");
      std::string line;
      while (!holds && std::getline(maps, line)) {
        size_t slash = line.find('/');
        holds = slash != std::string::npos && Under(line.substr(slash), dir);
      }
    }
    if (holds) {
      std::string comm;
      std::getline(std::ifstream(base + "/comm"), comm);
      holders.push_back(absl::StrCat(pid, " (", comm, ")"));
    }
  }
  closedir(proc);
  return holders;
}

// The daemon holds an flock on its state directory's LOCK until it exits
// (a pid would still answer while the process waits to be reaped).
int DaemonPid(const std::string& state_dir) {
  std::string text;
  std::getline(std::ifstream(DaemonPidPath(state_dir)), text);
  int pid = 0;
  return absl::SimpleAtoi(text, &pid) ? pid : -1;
}

void WaitForDaemonExit(const std::string& state_dir, absl::Duration timeout) {
  int fd = open((state_dir + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  absl::Time deadline = absl::Now() + timeout;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  close(fd);
}

}  // namespace

int UmountCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"timeout"}, {"lazy"});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs umount DIR [--lazy] [--timeout SECONDS]", 2);
  auto dir = FindProtectedDir(args->positional[0]);
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  if (!dir->mounted) return Fail(absl::StrCat(dir->mountpoint, " is not mounted"));
  double timeout = 10;
  if (args->Has("timeout") && !absl::SimpleAtod(args->Get("timeout"), &timeout)) return Fail("--timeout needs seconds", 2);

  auto control = ConnectControl(dir->config);
  v1::FlushRequest request;
  request.set_timeout_seconds(timeout);
  v1::FlushReply reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int>(timeout * 1000) + 5000));
  grpc::Status flushed = control->Flush(&context, request, &reply);
  if (!flushed.ok()) {
    std::cerr << "replifs: daemon did not answer (" << flushed.error_message() << "); unmounting anyway" << std::endl;
  } else if (reply.pending_changes() > 0) {
    std::cerr << "replifs: " << reply.pending_changes()
              << " changes not yet on the server stay in the journal and go out after the next mount" << std::endl;
  }

  int flags = args->Has("lazy") ? MNT_DETACH : 0;
  if (umount2(dir->mountpoint.c_str(), flags) != 0) {
    if (errno == EBUSY) {
      auto holders = ProcessesHolding(dir->mountpoint, DaemonPid(dir->config.state_dir));
      return Fail(absl::StrCat(dir->mountpoint, " is busy", holders.empty() ? "" : ", held by: ",
                               absl::StrJoin(holders, ", "), " (use --lazy to detach anyway)"));
    }
    return Fail(absl::StrCat("cannot unmount ", dir->mountpoint, ": ", strerror(errno)));
  }
  if (!args->Has("lazy")) WaitForDaemonExit(dir->config.state_dir, absl::Seconds(10));
  return 0;
}

}  // namespace replifs::cli
