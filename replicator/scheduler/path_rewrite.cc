#include "replicator/scheduler/path_rewrite.h"

namespace replifs::scheduler {

bool IsSameOrUnder(const std::string& path, const std::string& dir) {
  if (dir.empty()) return true;  // everything is under the root
  if (path.size() < dir.size() || path.compare(0, dir.size(), dir) != 0) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

std::optional<std::string> Rebase(const std::string& path, const std::string& from,
                                  const std::string& to) {
  if (from.empty() || !IsSameOrUnder(path, from)) return std::nullopt;  // the root never moves
  return to + path.substr(from.size());
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

}  // namespace replifs::scheduler
