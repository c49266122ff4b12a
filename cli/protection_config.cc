#include "cli/protection_config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
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
#include "absl/strings/strip.h"

namespace replifs::cli {
namespace {

uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// Atomically replaces `path` with `contents`, created with `mode`.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents, mode_t mode) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", strerror(errno)));
  bool ok = fchmod(fd, mode) == 0 && write(fd, contents.data(), contents.size()) ==
                                         static_cast<ssize_t>(contents.size());
  ok = fsync(fd) == 0 && ok;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::string> ReadCredentialFile(const std::string& path, bool is_token) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  std::string text = ReadWholeFile(path);
  if (is_token) text = std::string(absl::StripAsciiWhitespace(text));
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  return text;
}

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
  // Credentials live beside the config so sync/restore/verify find them.
  if (!config.token.empty()) {
    absl::Status status = WriteFileAtomically(config.state_dir + "/token", config.token + "\n", 0600);
    if (!status.ok()) return status;
  }
  if (!config.ca_pem.empty()) {
    absl::Status status = WriteFileAtomically(config.state_dir + "/ca.pem", config.ca_pem, 0644);
    if (!status.ok()) return status;
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
  config.token = std::string(absl::StripAsciiWhitespace(ReadWholeFile(state_dir + "/token")));
  config.ca_pem = ReadWholeFile(state_dir + "/ca.pem");
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
