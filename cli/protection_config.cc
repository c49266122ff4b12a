#include "cli/protection_config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace replifs::cli {
namespace {

uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

}  // namespace

std::string DefaultStateDir(const std::string& mountpoint) {
  std::string base = mountpoint.substr(mountpoint.rfind('/') + 1);
  if (base.empty()) base = "root";
  return absl::StrCat(kStateRoot, "/", base, "-", absl::Hex(Fnv1a(mountpoint), absl::kZeroPad16));
}

std::string DefaultRepoName(const std::string& mountpoint) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, ":", mountpoint);
}

std::string ControlSocketPath(const std::string& state_dir) { return state_dir + "/control.sock"; }
std::string DaemonPidPath(const std::string& state_dir) { return state_dir + "/daemon.pid"; }

absl::Status WriteConfig(const ProtectionConfig& config) {
  std::ostringstream out;
  out << "mountpoint=" << absl::CEscape(config.mountpoint) << "\n"
      << "server=" << absl::CEscape(config.server) << "\n"
      << "repo=" << absl::CEscape(config.repo) << "\n"
      << "quiet_ms=" << absl::ToInt64Milliseconds(config.quiet_interval) << "\n"
      << "max_delay_ms=" << absl::ToInt64Milliseconds(config.max_delay) << "\n";
  const std::string path = config.state_dir + "/config";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::trunc);
    file << out.str();
    if (!file.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProtectionConfig> ReadConfig(const std::string& state_dir) {
  std::ifstream file(state_dir + "/config");
  if (!file) return absl::NotFoundError(absl::StrCat("no replifs state in ", state_dir));
  std::map<std::string, std::string> values;
  std::string line;
  while (std::getline(file, line)) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    std::string value;
    absl::CUnescape(kv.second, &value);
    values[kv.first] = value;
  }
  ProtectionConfig config;
  config.state_dir = state_dir;
  config.mountpoint = values["mountpoint"];
  config.server = values["server"];
  config.repo = values["repo"];
  int64_t ms = 0;
  if (absl::SimpleAtoi(values["quiet_ms"], &ms)) config.quiet_interval = absl::Milliseconds(ms);
  if (absl::SimpleAtoi(values["max_delay_ms"], &ms)) config.max_delay = absl::Milliseconds(ms);
  if (config.server.empty() || config.repo.empty()) {
    return absl::DataLossError(absl::StrCat("incomplete config in ", state_dir));
  }
  return config;
}

absl::StatusOr<std::string> AbsolutePath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) != nullptr) return std::string(resolved);
  if (errno != ENOENT) return absl::InvalidArgumentError(absl::StrCat(path, ": ", strerror(errno)));
  // Not there (yet): normalize lexically.
  std::string base;
  if (path.empty() || path[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) return absl::InternalError("getcwd failed");
    base = cwd;
  }
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(base + "/" + path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  std::string out;
  for (const auto& part : parts) absl::StrAppend(&out, "/", part);
  return out.empty() ? "/" : out;
}

}  // namespace replifs::cli
