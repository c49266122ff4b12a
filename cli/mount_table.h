// The replifs mounts of this machine, from /proc/self/mountinfo: a replifs
// mount's source is its state directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace replifs::cli {

inline constexpr char kFsType[] = "fuse.replifs";

struct MountEntry {
  std::string mountpoint;
  std::string source;
  std::string fstype;
};

std::vector<MountEntry> ReadMounts();
// The replifs mount at exactly `mountpoint` (absolute, normalized).
std::optional<MountEntry> FindReplifsMount(const std::string& mountpoint);
std::vector<MountEntry> ReplifsMounts();

}  // namespace replifs::cli
