#include "replicator/client/restore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "replicator/client/path_rules.h"

namespace replifs::client {
namespace {

constexpr size_t kChunksPerRead = 64;
constexpr size_t kHoleBlock = 4096;

absl::Status Errno(absl::string_view what, absl::string_view path) {
  return absl::InternalError(absl::StrCat(what, " '", path, "': ", strerror(errno)));
}

// Opens the directory that will hold `path`, component by component with
// O_NOFOLLOW, so nothing already in the destination can redirect a write
// outside it. A missing directory is created (its listing entry, if any,
// sets its attributes later).
absl::StatusOr<int> OpenParent(int dest_fd, const std::string& path) {
  int fd = dup(dest_fd);
  std::string parent = ParentPath(path);
  size_t start = 0;
  while (!parent.empty() && start < parent.size()) {
    size_t end = parent.find('/', start);
    if (end == std::string::npos) end = parent.size();
    std::string name = parent.substr(start, end - start);
    mkdirat(fd, name.c_str(), 0755);
    int next = openat(fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    if (next < 0) return Errno("open directory", parent);
    fd = next;
    start = end + 1;
  }
  return fd;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Writes non-zero blocks only, so holes (and zero runs) stay sparse.
absl::Status WriteSparse(int fd, uint64_t offset, const std::string& data,
                         const std::string& path) {
  for (size_t pos = 0; pos < data.size(); pos += kHoleBlock) {
    size_t len = std::min(kHoleBlock, data.size() - pos);
    const char* block = data.data() + pos;
    if (std::all_of(block, block + len, [](char c) { return c == 0; })) continue;
    for (size_t done = 0; done < len;) {
      ssize_t n = pwrite(fd, block + done, len - done, offset + pos + done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno("write", path);
      }
      done += n;
    }
  }
  return absl::OkStatus();
}

class TreeWriter {
 public:
  TreeWriter(RepoConnection& connection, int dest_fd) : connection_(connection), dest_fd_(dest_fd) {}

  absl::Status Create(const v1::NodeState& node) {
    const std::string& path = node.path();
    if (path.empty()) return absl::OkStatus();  // the destination itself
    absl::StatusOr<int> parent = OpenParent(dest_fd_, path);
    if (!parent.ok()) return parent.status();
    absl::Cleanup close_parent = [&] { close(*parent); };
    const std::string name = BaseName(path);
    unlinkat(*parent, name.c_str(), 0);  // restoring over an older restore
    switch (node.type()) {
      case v1::NodeState::DIRECTORY:
        if (mkdirat(*parent, name.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", path);
        return absl::OkStatus();
      case v1::NodeState::SYMLINK:
        if (symlinkat(node.symlink_target().c_str(), *parent, name.c_str()) != 0) {
          return Errno("symlink", path);
        }
        return absl::OkStatus();
      case v1::NodeState::REGULAR:
        return CreateFile(*parent, name, node);
      case v1::NodeState::FIFO:
      case v1::NodeState::CHAR_DEVICE:
      case v1::NodeState::BLOCK_DEVICE:
      case v1::NodeState::SOCKET: {
        mode_t type = node.type() == v1::NodeState::FIFO          ? S_IFIFO
                      : node.type() == v1::NodeState::CHAR_DEVICE ? S_IFCHR
                      : node.type() == v1::NodeState::BLOCK_DEVICE ? S_IFBLK
                                                                    : S_IFSOCK;
        if (mknodat(*parent, name.c_str(), type | 0600, node.rdev()) != 0) return Errno("mknod", path);
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat("unknown node type for '", path, "'"));
    }
  }

  // Ownership, mode, xattrs, mtime: after content, since writing clears
  // setuid bits and chown clears them too.
  absl::Status SetAttributes(const v1::NodeState& node) {
    const std::string& path = node.path();
    std::string full = JoinPath(absl::StrCat("/proc/self/fd/", dest_fd_), path);
    const bool is_link = node.type() == v1::NodeState::SYMLINK;
    // The root is the /proc magic link itself, which must be followed.
    auto set_xattr = path.empty() ? setxattr : lsetxattr;
    for (const v1::Xattr& xattr : node.xattrs()) {
      if (set_xattr(full.c_str(), xattr.name().c_str(), xattr.value().data(), xattr.value().size(),
                    0) != 0) {
        return Errno(absl::StrCat("set xattr ", xattr.name(), " on"), path);
      }
    }
    int flags = path.empty() ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW;
    const char* at = path.empty() ? "" : path.c_str();
    if (fchownat(dest_fd_, at, node.uid(), node.gid(), flags) != 0) return Errno("chown", path);
    // security.capability is dropped by chown: set it again afterwards.
    for (const v1::Xattr& xattr : node.xattrs()) {
      if (xattr.name() == "security.capability") {
        set_xattr(full.c_str(), xattr.name().c_str(), xattr.value().data(), xattr.value().size(), 0);
      }
    }
    if (!is_link && fchmodat(dest_fd_, path.empty() ? "." : at, node.mode(), 0) != 0) {
      return Errno("chmod", path);
    }
    struct timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    times[1].tv_sec = node.mtime_ns() / 1'000'000'000;
    times[1].tv_nsec = node.mtime_ns() % 1'000'000'000;
    if (utimensat(dest_fd_, path.empty() ? "." : at, times, AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno("set times", path);
    }
    return absl::OkStatus();
  }

  absl::Status Link(const std::string& existing, const std::string& path) {
    absl::StatusOr<int> parent = OpenParent(dest_fd_, path);
    if (!parent.ok()) return parent.status();
    absl::Cleanup close_parent = [&] { close(*parent); };
    std::string name = BaseName(path);
    unlinkat(*parent, name.c_str(), 0);
    if (linkat(dest_fd_, existing.c_str(), *parent, name.c_str(), 0) != 0) return Errno("link", path);
    return absl::OkStatus();
  }

  RestoreStats& stats() { return stats_; }

 private:
  absl::Status CreateFile(int parent_fd, const std::string& name, const v1::NodeState& node) {
    const std::string& path = node.path();
    int fd = openat(parent_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
    if (fd < 0) return Errno("create", path);
    absl::Cleanup close_fd = [&] { close(fd); };
    // Offsets of every chunk id (a file may repeat a chunk).
    std::multimap<std::string, uint64_t> offsets;
    uint64_t offset = 0;
    std::vector<std::string> ids;
    for (const v1::ChunkRef& chunk : node.chunks()) {
      if (!offsets.count(chunk.id())) ids.push_back(chunk.id());
      offsets.emplace(chunk.id(), offset);
      offset += chunk.length();
    }
    if (offset != node.size()) {
      return absl::DataLossError(absl::StrCat("chunk list of '", path, "' does not add up to its size"));
    }
    for (size_t start = 0; start < ids.size(); start += kChunksPerRead) {
      std::vector<std::string> window(ids.begin() + start,
                                      ids.begin() + std::min(ids.size(), start + kChunksPerRead));
      absl::Status status = connection_.ReadChunks(window, [&](const v1::ChunkData& chunk) {
        auto [begin, end] = offsets.equal_range(chunk.id());
        if (begin == end) return absl::DataLossError("server sent a chunk that was not asked for");
        for (auto it = begin; it != end; ++it) {
          if (absl::Status s = WriteSparse(fd, it->second, chunk.data(), path); !s.ok()) return s;
        }
        stats_.bytes += chunk.data().size();
        return absl::OkStatus();
      });
      if (!status.ok()) return status;
    }
    if (ftruncate(fd, node.size()) != 0) return Errno("truncate", path);
    ++stats_.files;
    return absl::OkStatus();
  }

  RepoConnection& connection_;
  int dest_fd_;
  RestoreStats stats_;
};

}  // namespace

absl::StatusOr<RestoreStats> RestoreTree(RepoConnection& connection, const RestoreOptions& options) {
  for (const std::string& path : options.paths) {
    if (!IsSafeRelativePath(path)) return absl::InvalidArgumentError(absl::StrCat("bad path '", path, "'"));
  }
  absl::StatusOr<std::vector<v1::NodeState>> nodes = connection.List(options.at_time_ns, options.paths);
  if (!nodes.ok()) return nodes.status();
  if (!options.paths.empty() && nodes->empty()) {
    return absl::NotFoundError("no such path in the backup at that time");
  }
  // Like mkdir -p: a destination's missing parents are created too.
  for (size_t end = 1; end != std::string::npos;) {
    end = options.destination.find('/', end + 1);
    const std::string prefix = options.destination.substr(0, end);
    if (mkdir(prefix.c_str(), end == std::string::npos ? 0700 : 0755) != 0 && errno != EEXIST) {
      return Errno("create destination", prefix);
    }
  }
  int dest_fd = open(options.destination.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dest_fd < 0) return Errno("open destination", options.destination);
  absl::Cleanup close_dest = [&] { close(dest_fd); };

  std::sort(nodes->begin(), nodes->end(),
            [](const v1::NodeState& a, const v1::NodeState& b) { return a.path() < b.path(); });
  TreeWriter writer(connection, dest_fd);
  std::map<uint64_t, std::string> link_leaders;  // link group -> first path restored
  for (const v1::NodeState& node : *nodes) {
    if (!IsSafeRelativePath(node.path())) {
      return absl::DataLossError(absl::StrCat("server listed an unsafe path '", node.path(), "'"));
    }
    absl::Status status;
    if (node.type() == v1::NodeState::REGULAR && node.link_group() != 0 &&
        link_leaders.count(node.link_group())) {
      status = writer.Link(link_leaders[node.link_group()], node.path());
    } else {
      status = writer.Create(node);
      if (node.type() == v1::NodeState::REGULAR && node.link_group() != 0) {
        link_leaders[node.link_group()] = node.path();
      }
    }
    if (!status.ok()) return status;
    ++writer.stats().entries;
  }
  // Attributes last, deepest first: setting a directory's mtime must follow
  // every change inside it.
  for (auto it = nodes->rbegin(); it != nodes->rend(); ++it) {
    if (absl::Status status = writer.SetAttributes(*it); !status.ok()) return status;
  }
  return writer.stats();
}

}  // namespace replifs::client
