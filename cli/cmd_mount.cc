// `replifs mount DIR`: checks, then a daemon that mounts and protects DIR.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/daemon.h"
#include "cli/mount_table.h"
#include "cli/protection_config.h"
#include "replicator/client/path_rules.h"

namespace replifs::cli {
namespace {

constexpr char kStoreMarker[] = "REPLIFS-SERVER-STORE";
constexpr char kStoreRegistry[] = "/run/replifs-server";

bool AtOrBelow(const std::string& path, const std::string& ancestor) {
  return ancestor == "/" || client::PathIsAtOrBelow(path, ancestor);
}

// Stores of running servers (each registers its store in /run), the default
// store, and any store found among DIR's ancestors.
std::vector<std::string> KnownServerStores(const std::string& dir) {
  std::vector<std::string> stores = {"/var/lib/replifs-server"};
  if (DIR* registry = opendir(kStoreRegistry)) {
    while (dirent* entry = readdir(registry)) {
      std::ifstream file(absl::StrCat(kStoreRegistry, "/", entry->d_name));
      std::string store;
      if (entry->d_name[0] != '.' && std::getline(file, store) && !store.empty()) stores.push_back(store);
    }
    closedir(registry);
  }
  for (std::string ancestor = dir; !ancestor.empty(); ancestor = ancestor.substr(0, ancestor.rfind('/'))) {
    if (access((ancestor + "/" + kStoreMarker).c_str(), F_OK) == 0) stores.push_back(ancestor);
  }
  return stores;
}

// A replifs mount whose daemon died (kill -9, crash) answers every access
// with ENOTCONN. Its journal survived; detach the dead mount so DIR can be
// protected again and the journal replayed.
bool DetachIfDaemonDead(const MountEntry& mount) {
  std::string text;
  std::getline(std::ifstream(DaemonPidPath(mount.source)), text);
  int pid = 0;
  bool alive = absl::SimpleAtoi(text, &pid) && pid > 0 && kill(pid, 0) == 0;
  struct stat st;
  bool connected = stat(mount.mountpoint.c_str(), &st) == 0 || errno != ENOTCONN;
  if (alive && connected) return false;
  if (umount2(mount.mountpoint.c_str(), MNT_DETACH) != 0) return false;
  std::cerr << "replifs: detached the stale mount of " << mount.mountpoint
            << " (its daemon is gone); its journal will be replayed" << std::endl;
  return true;
}

void DetachDeadMounts() {
  for (const MountEntry& mount : ReplifsMounts()) DetachIfDaemonDead(mount);
}

absl::Status CheckPlacement(const ProtectionConfig& config) {
  const std::string& dir = config.mountpoint;
  if (dir == "/") return absl::InvalidArgumentError("refusing to protect / itself");
  for (const MountEntry& mount : ReplifsMounts()) {
    if (mount.mountpoint == dir) return absl::AlreadyExistsError(absl::StrCat(dir, " is already protected (mounted)"));
    if (AtOrBelow(dir, mount.mountpoint)) {
      return absl::InvalidArgumentError(absl::StrCat(dir, " lies inside protected directory ", mount.mountpoint));
    }
    if (AtOrBelow(mount.mountpoint, dir)) {
      return absl::InvalidArgumentError(absl::StrCat(dir, " contains protected directory ", mount.mountpoint));
    }
  }
  if (AtOrBelow(config.state_dir, dir)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " contains its own state directory ", config.state_dir,
                                                   " (use --state elsewhere)"));
  }
  for (const std::string& store : KnownServerStores(dir)) {
    if (access(store.c_str(), F_OK) != 0) continue;
    if (AtOrBelow(store, dir) || AtOrBelow(dir, store)) {
      return absl::InvalidArgumentError(absl::StrCat(dir, " overlaps the backup server store ", store));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPrerequisites(const std::string& dir) {
  if (geteuid() != 0) return absl::PermissionDeniedError("replifs mount must run as root");
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("/dev/fuse is not usable: ", strerror(errno)));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(dir, ": ", strerror(errno)));
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
  return absl::OkStatus();
}

// Forks the daemon; the parent returns once the mount is live or failed.
int Daemonize(const ProtectionConfig& config) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Fail("cannot create a pipe");
  pid_t pid = fork();
  if (pid < 0) return Fail(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    close(pipe_fds[0]);
    setsid();
    mkdir(config.state_dir.c_str(), 0700);  // for the log; RunDaemon creates parents too
    int null_fd = open("/dev/null", O_RDWR);
    int log_fd = open((config.state_dir + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(null_fd, 0);
    dup2(log_fd >= 0 ? log_fd : null_fd, 1);
    dup2(log_fd >= 0 ? log_fd : null_fd, 2);
    int code = RunDaemon(config, [&](const absl::Status& status) {
      std::string message = status.ok() ? "OK" : std::string(status.message());
      (void)!write(pipe_fds[1], message.data(), message.size());
      close(pipe_fds[1]);
    });
    _exit(code);
  }
  close(pipe_fds[1]);
  std::string message;
  char buf[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) message.append(buf, n);
  close(pipe_fds[0]);
  if (message == "OK") return 0;
  if (message.empty()) return Fail(absl::StrCat("the daemon died before mounting; see ", config.state_dir, "/daemon.log"));
  return Fail(message);
}

}  // namespace

int MountCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"server", "repo", "state", "quiet-ms", "max-delay-ms", "token-file", "ca", "journal-max-mb", "metrics"},
                        {"foreground", "no-replicate", "writeback-cache", "no-writeback-cache"});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs mount DIR [--server ADDR] [--repo NAME] [--token-file F] [--ca F] [--state DIR] [--metrics HOST:PORT] [--no-writeback-cache] [--foreground]", 2);

  absl::StatusOr<std::string> dir = AbsolutePath(args->positional[0]);
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  if (geteuid() == 0) DetachDeadMounts();
  if (absl::Status status = CheckPrerequisites(*dir); !status.ok()) return Fail(std::string(status.message()));

  ProtectionConfig config;
  config.mountpoint = *dir;
  config.server = args->Get("server", kDefaultServer);
  config.repo = args->Get("repo", DefaultRepoName(*dir));
  absl::StatusOr<std::string> state = AbsolutePath(args->Get("state", DefaultStateDir(*dir)));
  if (!state.ok()) return Fail(std::string(state.status().message()));
  config.state_dir = *state;
  config.replicate = !args->Has("no-replicate");
  if (args->Has("writeback-cache")) config.writeback_cache = true;
  if (args->Has("no-writeback-cache")) config.writeback_cache = false;
  config.metrics_address = args->Get("metrics");
  // Credentials given now replace those kept in STATE (by an earlier mount,
  // or put there by the user).
  for (auto [name, field] : {std::pair{"/token", &config.token}, {"/ca.pem", &config.ca_pem}}) {
    const std::string path = config.state_dir + name;
    if (access(path.c_str(), F_OK) != 0) continue;
    absl::StatusOr<std::string> text = ReadCredentialFile(path, field == &config.token);
    if (text.ok()) *field = *text;
  }
  for (auto [flag, field] : {std::pair{"token-file", &config.token}, {"ca", &config.ca_pem}}) {
    if (!args->Has(flag)) continue;
    absl::StatusOr<std::string> text = ReadCredentialFile(args->Get(flag), flag == std::string("token-file"));
    if (!text.ok()) return Fail(absl::StrCat("--", flag, ": ", text.status().message()), 2);
    *field = *text;
  }
  for (auto [flag, field] : {std::pair{"quiet-ms", &config.quiet_interval}, {"max-delay-ms", &config.max_delay}}) {
    if (!args->Has(flag)) continue;
    int64_t ms = 0;
    if (!absl::SimpleAtoi(args->Get(flag), &ms) || ms < 0) return Fail(absl::StrCat("--", flag, " needs milliseconds"), 2);
    *field = absl::Milliseconds(ms);
  }
  if (args->Has("journal-max-mb")) {
    uint64_t mb = 0;
    if (!absl::SimpleAtoi(args->Get("journal-max-mb"), &mb) || mb == 0) return Fail("--journal-max-mb needs a positive number of MiB", 2);
    config.journal_max_bytes = mb << 20;
  }
  if (absl::Status status = CheckPlacement(config); !status.ok()) return Fail(std::string(status.message()));

  if (args->Has("foreground")) {
    return RunDaemon(config, [](const absl::Status& status) {
      if (!status.ok()) std::cerr << "replifs: " << status.message() << std::endl;
    });
  }
  return Daemonize(config);
}

}  // namespace replifs::cli
