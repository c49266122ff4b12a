#include "replicator/client/tree_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replicator/client/path_rules.h"

namespace replifs::client {
namespace {

absl::Status WalkDirectory(int dir_fd, const std::string& dir_path,
                           const std::function<bool(const std::string&, const struct stat&)>& visit) {
  int list_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (list_fd < 0) return absl::InternalError(absl::StrCat("open ", dir_path, ": ", strerror(errno)));
  DIR* dir = fdopendir(list_fd);
  if (dir == nullptr) {
    close(list_fd);
    return absl::InternalError(absl::StrCat("opendir ", dir_path, ": ", strerror(errno)));
  }
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());

  for (const std::string& name : names) {
    struct stat st;
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced away
    std::string path = JoinPath(dir_path, name);
    bool descend = visit(path, st);
    if (descend && S_ISDIR(st.st_mode)) {
      int child_fd = openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child_fd < 0) continue;  // replaced by a non-directory meanwhile
      absl::Status status = WalkDirectory(child_fd, path, visit);
      close(child_fd);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WalkTree(int root_fd,
                      const std::function<bool(const std::string&, const struct stat&)>& visit) {
  struct stat st;
  if (fstatat(root_fd, "", &st, AT_EMPTY_PATH) != 0) {
    return absl::InternalError(absl::StrCat("stat root: ", strerror(errno)));
  }
  if (!visit("", st)) return absl::OkStatus();
  return WalkDirectory(root_fd, "", visit);
}

}  // namespace replifs::client
