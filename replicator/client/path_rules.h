// Paths on the wire are relative to the protected root. These rules keep a
// hostile or corrupt listing from writing outside a restore destination.
#pragma once

#include <string>
#include <string_view>

namespace replifs::client {

// paths::CheckRelativePath, as a yes/no for listings read back from a server.
bool IsSafeRelativePath(std::string_view path);

// "a/b/c" -> "a/b"; "a" -> "".
std::string ParentPath(std::string_view path);

// Joins a relative path below a base ("" joins to base itself).
std::string JoinPath(std::string_view base, std::string_view relative);

// True if `path` equals `prefix` or lies below it ("" is above everything).
bool PathIsAtOrBelow(std::string_view path, std::string_view prefix);

}  // namespace replifs::client
