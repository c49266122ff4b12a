// Tells a daemon whether the machine went down under the previous one.
//
// The journal survives a kill -9 whole (records are written before the
// reply), but a power loss drops its unsynced tail, and with it changes
// whose file identity (size, mtime, ctime) can still match the acknowledged
// chunk map when the change fell in the same timestamp tick. So the daemon
// keeps STATE/running while it protects: boot id and start time, synced.
// Found at start with another boot id, the machine crashed: chunk maps are
// distrusted and files changed since that start are re-read
// (client/chunk_map_trust.h). A clean exit removes the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace replifs::cli {

struct CrashMarker {
  std::string boot_id;
  int64_t start_ns = 0;  // CLOCK_REALTIME when that daemon started
};

std::string CrashMarkerPath(const std::string& state_dir);
std::string CurrentBootId();  // /proc/sys/kernel/random/boot_id, "" if unreadable

// The marker a previous daemon left, if any (a torn one reads as start 0:
// everything is re-read).
std::optional<CrashMarker> ReadCrashMarker(const std::string& state_dir);
// Writes and syncs the marker (file and directory).
absl::Status WriteCrashMarker(const std::string& state_dir, const CrashMarker& marker);
void RemoveCrashMarker(const std::string& state_dir);

// When the previous daemon's unsynced journal tail may have been lost: its
// start time if it ran under another boot, else nothing.
std::optional<int64_t> ChangesMayBeLostSince(const std::optional<CrashMarker>& previous,
                                             const std::string& current_boot_id);

}  // namespace replifs::cli
