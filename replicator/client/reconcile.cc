#include "replicator/client/reconcile.h"

#include <map>

#include "replicator/client/node_snapshot.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/tree_walk.h"

namespace replifs::client {
namespace {

bool SameCheapFields(const v1::NodeState& a, const v1::NodeState& b) {
  return a.type() == b.type() && a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid() &&
         a.size() == b.size() && a.mtime_ns() == b.mtime_ns() && a.rdev() == b.rdev() &&
         a.symlink_target() == b.symlink_target() &&
         (a.link_group() != 0) == (b.link_group() != 0);
}

v1::ChangeEvent RescanEvent(const std::string& path) {
  v1::ChangeEvent event;
  event.set_op(v1::ChangeEvent::RESCAN);
  event.set_source(v1::ChangeEvent::RECONCILE);
  event.set_path(path);
  return event;
}

}  // namespace

absl::Status Reconcile(RepoConnection& connection, int root_fd,
                       const std::function<void(v1::ChangeEvent)>& emit,
                       ReconcileProgress* progress) {
  absl::StatusOr<std::vector<v1::NodeState>> listing = connection.List(0, {});
  if (!listing.ok()) return listing.status();
  std::map<std::string, v1::NodeState> remote;
  for (auto& node : *listing) remote.emplace(node.path(), std::move(node));

  absl::Status status = WalkTree(root_fd, [&](const std::string& path, const struct stat&) {
    ++progress->scanned;
    absl::StatusOr<v1::NodeState> local = StatNode(root_fd, path);
    if (!local.ok()) return false;  // vanished: its unlink event covers it
    auto it = remote.find(path);
    bool same = it != remote.end() && SameCheapFields(*local, it->second);
    if (it != remote.end()) remote.erase(it);
    if (!same) {
      emit(RescanEvent(path));
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
    emit(RescanEvent(path));
    ++progress->queued;
    last_removed = path;
    have_removed = true;
  }
  progress->done = true;
  return absl::OkStatus();
}

}  // namespace replifs::client
