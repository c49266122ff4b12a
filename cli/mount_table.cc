#include "cli/mount_table.h"

#include <fstream>
#include <sstream>

namespace replifs::cli {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (int k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

}  // namespace

std::vector<MountEntry> ReadMounts() {
  std::vector<MountEntry> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint, options, field;
    fields >> id >> parent >> devno >> root >> mountpoint >> options;
    while (fields >> field && field != "-") {}  // optional fields end at "-"
    MountEntry entry;
    fields >> entry.fstype >> entry.source;
    entry.mountpoint = Unescape(mountpoint);
    entry.source = Unescape(entry.source);
    mounts.push_back(std::move(entry));
  }
  return mounts;
}

std::vector<MountEntry> ReplifsMounts() {
  std::vector<MountEntry> out;
  for (auto& entry : ReadMounts()) {
    if (entry.fstype == kFsType) out.push_back(std::move(entry));
  }
  return out;
}

std::optional<MountEntry> FindReplifsMount(const std::string& mountpoint) {
  std::optional<MountEntry> found;
  for (auto& entry : ReplifsMounts()) {
    if (entry.mountpoint == mountpoint) found = entry;  // the last one is on top
  }
  return found;
}

}  // namespace replifs::cli
