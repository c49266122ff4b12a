// The shim reader: turns the kernel shim's records (eBPF ring buffer or the
// module's /dev/replifs_shim, same layout: include/replifs_shim.h) into
// ChangeEvents (source SHIM). Used by the daemon and by the VM test program,
// so both check the same parser.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmod-shim/include/replifs_shim.h"
#include "replifs/v1/events.pb.h"

namespace replifs::shim {

// A record decoded: names are resolved to paths relative to the root.
struct ShimRecord {
  replifs_shim_event header{};
  std::string path;      // name1, relative to the root ("" = the root)
  std::string new_path;  // name2 (rename, link), or the xattr name for xattr calls
  std::string symlink_target;  // symlink: what the link points to
  bool unresolved = false;     // a name could not be resolved under the root
  bool path_outside = false;      // name1 is outside the protected tree
  bool new_path_outside = false;  // name2 is outside the protected tree
};

// Per protected root (by root_index): its path inside its filesystem
// (fs_path.h), for names the shim resolved from the filesystem's root.
using RootFsPaths = std::vector<std::string>;

// Resolves a name the kernel could only give as the process passed it
// (absolute, or relative to a cwd outside the tree) where that process sees
// it: (tgid, name as passed, absolute?) -> path relative to the protected
// root, or nullopt when it is not in the tree (elsewhere, or through the
// overlay, which reports it itself). With a resolver, the prefix match on
// RootFsPaths is not used: it cannot see mounts along the way.
using OutsideResolver = std::function<std::optional<std::string>(uint32_t tgid, const std::string& name, bool absolute)>;

// Decodes one record of exactly `size` bytes; an error names what is wrong.
absl::StatusOr<ShimRecord> ParseRecord(const void* data, size_t size, const RootFsPaths& roots = {},
                                       const OutsideResolver& resolver = nullptr);

// Splits a buffer holding whole records back to back (the module's read()).
absl::StatusOr<std::vector<ShimRecord>> ParseRecords(const void* data, size_t size,
                                                     const RootFsPaths& roots = {});

// The ChangeEvents one record stands for (usually one; open with O_CREAT|O_TRUNC
// gives two; none when every name is outside the tree). A rename or link
// across the tree's edge becomes a RESCAN of the side inside it. Unresolved names or a lost-records flag give a RESCAN of the
// whole tree (path ""), so nothing is silently dropped.
std::vector<v1::ChangeEvent> ToChangeEvents(const ShimRecord& record);

// Name of a syscall in the predetermined set ("write", "renameat2", ...).
const char* SyscallName(uint32_t syscall);

// One line for logs and the VM test's event table:
// "write pid=12 ino=34 path=a/b off=0 len=1".
std::string Describe(const ShimRecord& record);

}  // namespace replifs::shim
