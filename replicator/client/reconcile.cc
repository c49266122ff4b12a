#include "replicator/client/reconcile.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>

#include "replicator/client/node_snapshot.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/tree_walk.h"

namespace replifs::client {
namespace {

int64_t Nanos(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

bool SameXattrs(const v1::NodeState& a, const v1::NodeState& b) {
  if (a.xattrs_size() != b.xattrs_size()) return false;
  for (int i = 0; i < a.xattrs_size(); ++i) {
    if (a.xattrs(i).name() != b.xattrs(i).name() || a.xattrs(i).value() != b.xattrs(i).value()) {
      return false;
    }
  }
  return true;
}

// Everything but content, against the server's listing. A content change
// that kept size and mtime is caught by the client's own record (ctime).
bool SameMetadata(const v1::NodeState& a, const v1::NodeState& b) {
  return a.type() == b.type() && a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid() &&
         a.size() == b.size() && a.mtime_ns() == b.mtime_ns() && a.rdev() == b.rdev() &&
         a.symlink_target() == b.symlink_target() &&
         (a.link_group() != 0) == (b.link_group() != 0) && SameXattrs(a, b);
}

// `st` null: the path is gone here (only the server has it).
v1::ChangeEvent RescanEvent(const std::string& path, const struct stat* st) {
  v1::ChangeEvent event;
  event.set_op(v1::ChangeEvent::RESCAN);
  event.set_source(v1::ChangeEvent::RECONCILE);
  event.set_path(path);
  if (st != nullptr) {
    // The inode lets the scheduler follow the object through later renames.
    event.set_inode(st->st_ino);
    event.set_device(st->st_dev);
    event.mutable_attributes()->set_mode(st->st_mode);
    event.mutable_attributes()->set_size(st->st_size);
    event.mutable_attributes()->set_inode(st->st_ino);
  }
  return event;
}

}  // namespace

absl::Status Reconcile(RepoConnection& connection, int root_fd,
                       const std::function<void(v1::ChangeEvent)>& emit,
                       ReconcileProgress* progress, ChunkMapStore* acknowledged,
                       int64_t reread_ctime_since_ns) {
  absl::StatusOr<std::vector<v1::NodeState>> listing = connection.List(0, {});
  if (!listing.ok()) return listing.status();
  std::map<std::string, v1::NodeState> remote;
  for (auto& node : *listing) remote.emplace(node.path(), std::move(node));
  // Loaded once: a lookup per file would cost a query per file.
  std::map<std::pair<uint64_t, uint64_t>, FileIdentity> known;
  if (acknowledged != nullptr) {
    absl::StatusOr<std::map<std::pair<uint64_t, uint64_t>, FileIdentity>> identities =
        acknowledged->Identities();
    if (!identities.ok()) return identities.status();
    known = std::move(*identities);
  }
  // False when the file is not as the server acknowledged it (or nothing
  // says how it was); a stale record is dropped before the rescan is queued.
  auto as_acknowledged = [&](const struct stat& st) {
    if (acknowledged == nullptr || !S_ISREG(st.st_mode)) return true;
    auto it = known.find({st.st_dev, st.st_ino});
    if (it == known.end()) return false;
    const FileIdentity now{st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size), Nanos(st.st_mtim),
                           Nanos(st.st_ctim)};
    if (it->second == now && now.ctime_ns < reread_ctime_since_ns) return true;
    ++progress->changed_outside;
    (void)acknowledged->Invalidate(st.st_dev, st.st_ino);  // failing: the rescan reads it all anyway
    return false;
  };

  absl::Status status = WalkTree(root_fd, [&](const std::string& path, const struct stat& st) {
    ++progress->scanned;
    struct stat local_st;
    absl::StatusOr<v1::NodeState> local = StatNode(root_fd, path, &local_st);
    if (!local.ok()) return false;  // vanished: its unlink event covers it
    auto it = remote.find(path);
    const bool acked = as_acknowledged(local_st);  // always: it drops a stale map
    const bool same = acked && it != remote.end() && SameMetadata(*local, it->second);
    if (it != remote.end()) remote.erase(it);
    if (!same) {
      emit(RescanEvent(path, &st));
      ++progress->queued;
    }
    return true;
  });
  if (!status.ok()) return status;
  // Only on the server: removed while unprotected. The topmost path of a
  // removed subtree is enough.
  std::string last_removed;
  bool have_removed = false;
  for (const auto& [path, node] : remote) {
    if (have_removed && PathIsAtOrBelow(path, last_removed)) continue;
    emit(RescanEvent(path, nullptr));
    ++progress->queued;
    last_removed = path;
    have_removed = true;
  }
  return absl::OkStatus();
}

absl::Status RescanSubtree(int root_fd, const std::string& path,
                          const std::function<void(v1::ChangeEvent)>& emit,
                          ReconcileProgress* progress) {
  struct stat st;
  if (fstatat(root_fd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return absl::OkStatus();  // gone
  emit(RescanEvent(path, &st));
  ++progress->queued;
  if (!S_ISDIR(st.st_mode)) return absl::OkStatus();
  int dir_fd = openat(root_fd, path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) return absl::OkStatus();  // replaced meanwhile; its own events cover it
  absl::Status status = WalkTree(dir_fd, [&](const std::string& below, const struct stat& below_st) {
    if (below.empty()) return true;
    ++progress->scanned;
    emit(RescanEvent(JoinPath(path, below), &below_st));
    ++progress->queued;
    return true;
  });
  close(dir_fd);
  return status;
}

}  // namespace replifs::client
