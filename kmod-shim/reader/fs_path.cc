#include "kmod-shim/reader/fs_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace replifs::shim {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool UnderOrAt(const std::string& path, const std::string& prefix) {
  if (prefix == "/") return true;
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '/');
}

std::string StripSlashes(std::string s) {
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

absl::StatusOr<std::string> PathInFilesystem(const std::string& dir) {
  char resolved[PATH_MAX];
  if (realpath(dir.c_str(), resolved) == nullptr) return absl::NotFoundError(absl::StrCat("cannot resolve ", dir));
  const std::string path = resolved;
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return absl::UnavailableError("cannot read /proc/self/mountinfo");
  std::string line, best_root, best_mountpoint;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint;
    if (!(fields >> id >> parent >> devno >> root >> mountpoint)) continue;
    root = Unescape(root);
    mountpoint = Unescape(mountpoint);
    // The last matching mount in the list is the topmost at that point.
    if (UnderOrAt(path, mountpoint) && (!found || mountpoint.size() >= best_mountpoint.size())) {
      best_root = root;
      best_mountpoint = mountpoint;
      found = true;
    }
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no mount holds ", path));
  std::string rest = best_mountpoint == "/" ? path : path.substr(best_mountpoint.size());
  return StripSlashes(absl::StrCat(best_root, "/", rest));
}

bool RelativeToRoot(const std::string& fs_relative, const std::string& root_fs_path, std::string* out) {
  if (root_fs_path.empty()) {
    *out = fs_relative;
    return true;
  }
  if (fs_relative == root_fs_path) {
    out->clear();
    return true;
  }
  if (fs_relative.size() > root_fs_path.size() && fs_relative.compare(0, root_fs_path.size(), root_fs_path) == 0 &&
      fs_relative[root_fs_path.size()] == '/') {
    *out = fs_relative.substr(root_fs_path.size() + 1);
    return true;
  }
  return false;
}

}  // namespace replifs::shim

namespace replifs::shim {
namespace {

// The entry name of directory `child` (dev, ino) inside directory fd `parent`.
std::optional<std::string> NameIn(int parent, const struct stat& child) {
  int fd = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // parent may be O_PATH
  if (fd < 0) return std::nullopt;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return std::nullopt;
  }
  rewinddir(dir);
  std::optional<std::string> out;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_ino != child.st_ino || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(parent, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == child.st_dev &&
        st.st_ino == child.st_ino) {
      out = e->d_name;
      break;
    }
  }
  closedir(dir);
  return out;
}

}  // namespace

std::optional<std::string> ResolveInProcess(uint32_t tgid, const std::string& name, bool absolute, uint64_t root_dev,
                                            uint64_t root_ino) {
  std::string parent = name, leaf;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  size_t slash = parent.rfind('/');
  if (slash == std::string::npos) {
    leaf = parent;
    parent = ".";
  } else {
    leaf = parent.substr(slash + 1);
    parent = slash == 0 ? "/" : parent.substr(0, slash);
  }
  if (leaf == "." || leaf == ".." || leaf.empty()) return std::nullopt;
  const std::string base = absl::StrCat("/proc/", tgid, absolute ? "/root" : "/cwd");
  int base_fd = open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0 && absolute) base_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0) return std::nullopt;
  const std::string rel = absolute ? "." + parent : parent;
  // O_PATH until the device is known to be the root's: opening for reading
  // would send OPENDIR to a FUSE mount (the overlay itself) and cost every
  // by-name call on the machine a round trip (bench/fs: ~550 us per unlink).
  int fd = openat(base_fd, rel.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  close(base_fd);
  if (fd < 0) return std::nullopt;
  std::vector<std::string> names;
  std::optional<std::string> out;
  for (int depth = 0; depth < 64; ++depth) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != root_dev) break;  // another device: the overlay, or elsewhere
    if (st.st_ino == root_ino) {
      std::string path;
      for (auto it = names.rbegin(); it != names.rend(); ++it) absl::StrAppend(&path, *it, "/");
      out = path + leaf;
      break;
    }
    int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (up < 0) break;
    struct stat up_st;
    if (fstat(up, &up_st) != 0 || (up_st.st_dev == st.st_dev && up_st.st_ino == st.st_ino)) {
      close(up);
      break;  // the top
    }
    std::optional<std::string> name_here = NameIn(up, st);
    close(fd);
    fd = up;
    if (!name_here) break;
    names.push_back(*name_here);
  }
  close(fd);
  return out;
}

std::optional<std::string> PathOfOpenFile(uint32_t tgid, uint64_t dev, uint64_t ino, int root_fd) {
  char root_path[PATH_MAX];
  const std::string root_link = absl::StrCat("/proc/self/fd/", root_fd);
  ssize_t root_len = readlink(root_link.c_str(), root_path, sizeof(root_path) - 1);
  if (root_len <= 0) return std::nullopt;
  const std::string root(root_path, root_len);
  const std::string fd_dir = absl::StrCat("/proc/", tgid, "/fd");
  int dir_fd = open(fd_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return std::nullopt;
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return std::nullopt;
  }
  std::optional<std::string> out;
  while (struct dirent* e = readdir(dir)) {
    struct stat st;
    if (e->d_name[0] == '.' || fstatat(dirfd(dir), e->d_name, &st, 0) != 0) continue;
    if (st.st_dev != dev || st.st_ino != ino) continue;
    int file = openat(dirfd(dir), e->d_name, O_PATH | O_CLOEXEC);  // the writer's very file
    if (file < 0) continue;
    struct {
      struct file_handle h;
      unsigned char bytes[MAX_HANDLE_SZ];
    } handle;
    handle.h.handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    const bool named = name_to_handle_at(file, "", &handle.h, &mount_id, AT_EMPTY_PATH) == 0;
    close(file);
    if (!named) continue;
    int here = open_by_handle_at(root_fd, &handle.h, O_PATH | O_CLOEXEC);  // the same file on the root's mount
    if (here < 0) continue;
    char path[PATH_MAX];
    const std::string link = absl::StrCat("/proc/self/fd/", here);
    ssize_t n = readlink(link.c_str(), path, sizeof(path) - 1);
    close(here);
    if (n <= 0) continue;
    const std::string full(path, n);
    if (full.size() > root.size() + 1 && full.compare(0, root.size(), root) == 0 && full[root.size()] == '/' &&
        full.find(" (deleted)") == std::string::npos) {
      out = full.substr(root.size() + 1);
      break;
    }
  }
  closedir(dir);
  return out;
}

}  // namespace replifs::shim
