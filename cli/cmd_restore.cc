// `replifs restore` and `replifs verify`: read the server directly.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/control_channel.h"
#include "cli/time_spec.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/restore.h"
#include "replicator/client/verify.h"

namespace replifs::cli {

int RestoreCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"to", "at", "server", "repo", "state"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  const char* usage = "usage: replifs restore --to DEST [DIR | --server ADDR --repo NAME] [--at TIME] [PATH...]";
  if (!args->Has("to")) return Fail(usage, 2);

  client::ConnectionOptions connection;
  std::vector<std::string> paths = args->positional;
  std::string root;  // the protected dir, to accept absolute PATHs below it
  if (args->Has("server") || args->Has("repo")) {
    if (!args->Has("server") || !args->Has("repo")) return Fail("--server and --repo go together", 2);
    connection.server = args->Get("server");
    connection.repo = args->Get("repo");
  } else {
    if (paths.empty()) return Fail(usage, 2);
    auto dir = FindProtectedDir(paths.front(), args->Get("state"));
    if (!dir.ok()) return Fail(std::string(dir.status().message()));
    connection.server = dir->config.server;
    connection.repo = dir->config.repo;
    root = dir->mountpoint;
    paths.erase(paths.begin());
  }
  for (std::string& path : paths) {
    if (!root.empty() && client::PathIsAtOrBelow(path, root)) path = path.substr(std::min(path.size(), root.size() + 1));
    while (!path.empty() && path.back() == '/') path.pop_back();
    if (!client::IsSafeRelativePath(path)) return Fail(absl::StrCat("bad path '", path, "': give it relative to the protected directory"), 2);
  }

  client::RestoreOptions options;
  options.destination = args->Get("to");
  options.paths = paths;
  if (args->Has("at")) {
    absl::StatusOr<int64_t> at = ParseTimeSpec(args->Get("at"));
    if (!at.ok()) return Fail(std::string(at.status().message()), 2);
    options.at_time_ns = *at;
  }
  auto repo = client::RepoConnection::Open(connection);
  if (!repo.ok()) return Fail(std::string(repo.status().message()));
  auto stats = client::RestoreTree(**repo, options);
  if (!stats.ok()) return Fail(absl::StrCat("restore failed: ", stats.status().message()));
  std::cout << "restored " << stats->entries << " entries (" << stats->files << " files, " << stats->bytes
            << " bytes) into " << options.destination << std::endl;
  return 0;
}

int VerifyCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"state"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs verify DIR", 2);
  auto dir = FindProtectedDir(args->positional[0], args->Get("state"));
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  client::ConnectionOptions connection;
  connection.server = dir->config.server;
  connection.repo = dir->config.repo;
  auto repo = client::RepoConnection::Open(connection);
  if (!repo.ok()) return Fail(std::string(repo.status().message()));
  int root_fd = open(dir->mountpoint.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return Fail(absl::StrCat(dir->mountpoint, ": ", strerror(errno)));
  auto result = client::VerifyTree(**repo, root_fd);
  close(root_fd);
  if (!result.ok()) return Fail(absl::StrCat("verify failed: ", result.status().message()));
  for (const std::string& line : result->differences) std::cout << line << "\n";
  std::cout << result->checked << " paths checked, " << result->differences.size() << " differences" << std::endl;
  return result->differences.empty() ? 0 : 1;
}

}  // namespace replifs::cli
