// Compares two directory trees as a backup/restore round trip must preserve
// them: entry types, file bytes, permission bits (incl. suid/sgid/sticky),
// ownership, symlink targets, every extended attribute (user.*, POSIX ACLs,
// security.capability, ...), modification times with nanoseconds, hard-link
// groups and device numbers.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace replifs::test {

struct CompareOptions {
  // Paths relative to the roots ("a/b.txt"; "" is the root) to leave out,
  // together with everything below them.
  std::set<std::string> skip_paths;
  bool compare_owner = true;
  bool compare_xattrs = true;
  bool compare_mtime = true;      // files, symlinks, directories (never the roots)
  bool compare_hardlinks = true;
};

// Returns human-readable differences; empty means the trees are equal.
// Errors while reading either tree are reported as differences too.
std::vector<std::string> CompareTrees(const std::string& left, const std::string& right,
                                      const CompareOptions& options = {});

// Counts the entries (below the root) that CompareTrees would look at.
size_t CountEntries(const std::string& root, const CompareOptions& options = {});

}  // namespace replifs::test
