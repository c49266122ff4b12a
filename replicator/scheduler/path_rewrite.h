// Path arithmetic for renames: paths are relative to the protected root,
// '/'-separated, without a leading '/'; "" is the root.
#pragma once

#include <optional>
#include <string>

namespace replifs::scheduler {

// True if `path` is `dir` itself or lies below it ("a/b" is under "a", "ab" is not).
bool IsSameOrUnder(const std::string& path, const std::string& dir);

// "a/b/c" -> "a/b"; "a" -> "" (the root).
std::string ParentOf(const std::string& path);

// `path` moved along with a rename of `from` to `to`: "from/x" -> "to/x".
// nullopt when `path` is not `from` or below it.
std::optional<std::string> Rebase(const std::string& path, const std::string& from,
                                  const std::string& to);

}  // namespace replifs::scheduler
