// What a protected directory's daemon needs to know, kept in its state
// directory (`config`) so that later commands (sync, restore, verify) find
// the server and repository again.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replifs::cli {

inline constexpr char kDefaultServer[] = "127.0.0.1:7433";
inline constexpr char kStateRoot[] = "/var/lib/replifs";

struct ProtectionConfig {
  std::string mountpoint;  // absolute
  std::string server;
  std::string repo;
  std::string state_dir;   // absolute
  // false (`mount --no-replicate`): the over-mount only, no events to the
  // journal; for measuring what capture costs (bench/fs). Not persisted.
  bool replicate = true;
  // The kernel's writeback cache on the over-mount (fusefs MountOptions);
  // `mount --no-writeback-cache` turns it off. Not persisted.
  bool writeback_cache = true;
  std::string token;       // repository token; kept in STATE/token (0600), not in config
  std::string ca_pem;      // TLS CA certificates (PEM), kept in STATE/ca.pem; empty: no TLS
  absl::Duration quiet_interval = absl::Milliseconds(200);
  absl::Duration max_delay = absl::Seconds(2);
  uint64_t journal_max_bytes = 1ull << 30;
  std::string metrics_address;  // --metrics HOST:PORT: Prometheus endpoint; empty: none. Not persisted.  // --journal-max-mb: past it, a rescan replaces the journal
};

// /var/lib/replifs/<basename>-<hash of the path>: one per protected path.
std::string DefaultStateDir(const std::string& mountpoint);
// "<hostname>:<absolute path>".
std::string DefaultRepoName(const std::string& mountpoint);

absl::Status WriteConfig(const ProtectionConfig& config);
// The contents of a --token-file (surrounding whitespace removed) or --ca file.
absl::StatusOr<std::string> ReadCredentialFile(const std::string& path, bool is_token);
absl::StatusOr<ProtectionConfig> ReadConfig(const std::string& state_dir);

std::string ControlSocketPath(const std::string& state_dir);
std::string DaemonPidPath(const std::string& state_dir);

// Absolute, without "." / ".." / duplicate slashes (symlinks resolved when
// the path exists).
absl::StatusOr<std::string> AbsolutePath(const std::string& path);

}  // namespace replifs::cli
