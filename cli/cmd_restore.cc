// `replifs restore` and `replifs verify`: read the server directly.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/control_channel.h"
#include "cli/protection_config.h"
#include "cli/time_spec.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/restore.h"
#include "replicator/client/verify.h"

namespace replifs::cli {
namespace {

// --token-file and --ca override what the protected dir's state holds.
absl::Status ApplyCredentialFlags(const Args& args, client::ConnectionOptions* connection) {
  for (auto [flag, field] : {std::pair{"token-file", &connection->token}, {"ca", &connection->ca_pem}}) {
    if (!args.Has(flag)) continue;
    absl::StatusOr<std::string> text = ReadCredentialFile(args.Get(flag), flag == std::string("token-file"));
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", text.status().message()));
    *field = *text;
  }
  return absl::OkStatus();
}

}  // namespace

int RestoreCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"to", "at", "server", "repo", "state", "token-file", "ca"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  const char* usage = "usage: replifs restore --to DEST [DIR | --server ADDR --repo NAME --token-file F [--ca F]] [--at TIME] [PATH...]";
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
    connection.token = dir->config.token;
    connection.ca_pem = dir->config.ca_pem;
    root = dir->mountpoint;
    paths.erase(paths.begin());
  }
  if (absl::Status status = ApplyCredentialFlags(*args, &connection); !status.ok()) {
    return Fail(std::string(status.message()), 2);
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
  auto args = ParseArgs(argv, {"state", "token-file", "ca"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs verify DIR [--token-file F] [--ca F]", 2);
  auto dir = FindProtectedDir(args->positional[0], args->Get("state"));
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  client::ConnectionOptions connection;
  connection.server = dir->config.server;
  connection.repo = dir->config.repo;
  connection.token = dir->config.token;
  connection.ca_pem = dir->config.ca_pem;
  if (absl::Status status = ApplyCredentialFlags(*args, &connection); !status.ok()) {
    return Fail(std::string(status.message()), 2);
  }
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

int VersionsCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"server", "repo", "state", "token-file", "ca"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  const char* usage =
      "usage: replifs versions PATH | replifs versions --server ADDR --repo NAME --token-file F [--ca F] PATH";
  if (args->positional.size() != 1) return Fail(usage, 2);
  client::ConnectionOptions connection;
  std::string path = args->positional[0];
  if (args->Has("server") || args->Has("repo")) {
    if (!args->Has("server") || !args->Has("repo")) return Fail("--server and --repo go together", 2);
    connection.server = args->Get("server");
    connection.repo = args->Get("repo");
  } else {
    // PATH lies in a protected directory: find which one from its ancestors.
    absl::StatusOr<std::string> absolute = AbsolutePath(path);
    if (!absolute.ok()) return Fail(std::string(absolute.status().message()));
    std::optional<ProtectedDir> dir;
    for (std::string candidate = *absolute; !candidate.empty(); candidate = candidate.substr(0, candidate.rfind('/'))) {
      absl::StatusOr<ProtectedDir> found = FindProtectedDir(candidate, args->Get("state"));
      if (found.ok() && found->config.mountpoint == candidate) {
        dir = *found;
        break;
      }
    }
    if (!dir.has_value()) return Fail(absl::StrCat(*absolute, " is not in a protected directory"));
    connection.server = dir->config.server;
    connection.repo = dir->config.repo;
    connection.token = dir->config.token;
    connection.ca_pem = dir->config.ca_pem;
    path = absolute->size() > dir->mountpoint.size() ? absolute->substr(dir->mountpoint.size() + 1) : "";
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!path.empty() && !client::IsSafeRelativePath(path)) return Fail(absl::StrCat("bad path '", path, "'"), 2);
  if (absl::Status status = ApplyCredentialFlags(*args, &connection); !status.ok()) {
    return Fail(std::string(status.message()), 2);
  }
  auto repo = client::RepoConnection::Open(connection);
  if (!repo.ok()) return Fail(std::string(repo.status().message()));
  auto versions = (*repo)->ListVersions(path);
  if (!versions.ok()) return Fail(std::string(versions.status().message()));
  if (versions->empty()) return Fail(absl::StrCat("no versions of '", path, "' on the server"));
  for (const v1::NodeState& version : *versions) {
    std::cout << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(version.time_ns()), absl::UTCTimeZone())
              << "  ";
    if (version.deleted()) {
      std::cout << "deleted\n";
      continue;
    }
    const char* type = version.type() == v1::NodeState::REGULAR     ? "file"
                       : version.type() == v1::NodeState::DIRECTORY ? "directory"
                       : version.type() == v1::NodeState::SYMLINK   ? "symlink"
                                                                    : "special";
    std::cout << version.size() << " bytes  " << type << "\n";
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace replifs::cli
