#include "replicator/paths/relative_path.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace replifs::paths {

std::string PrintablePath(std::string_view path) {
  constexpr size_t kMaxShown = 80;
  const std::string_view shown = path.substr(0, kMaxShown);
  std::string printable = absl::CHexEscape(absl::string_view(shown.data(), shown.size()));
  if (path.size() > kMaxShown) printable += "...";
  return printable;
}

absl::Status CheckRelativePath(std::string_view path) {
  if (path.empty()) return absl::OkStatus();
  if (path.size() > kMaxPathSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is ", path.size(), " bytes; the limit is ", kMaxPathSize));
  }
  if (path.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("path \"", PrintablePath(path), "\" contains NUL"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("path \"", PrintablePath(path), "\" is absolute"));
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    if (component.empty() || component == "." || component == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "path \"", PrintablePath(path), "\" has an empty, \".\" or \"..\" component"));
    }
    if (component.size() > kMaxPathComponentSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("path \"", PrintablePath(path), "\" has a component over 255 bytes"));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

}  // namespace replifs::paths
