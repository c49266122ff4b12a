#include "replicator/client/path_rules.h"

#include "replicator/paths/relative_path.h"

namespace replifs::client {

bool IsSafeRelativePath(std::string_view path) { return paths::CheckRelativePath(path).ok(); }

std::string ParentPath(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

std::string JoinPath(std::string_view base, std::string_view relative) {
  if (relative.empty()) return std::string(base);
  if (base.empty()) return std::string(relative);
  std::string joined(base);
  if (joined.back() != '/') joined += '/';
  joined += relative;
  return joined;
}

bool PathIsAtOrBelow(std::string_view path, std::string_view prefix) {
  if (prefix.empty()) return true;
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

}  // namespace replifs::client
