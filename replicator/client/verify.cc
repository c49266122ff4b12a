#include "replicator/client/verify.h"

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replicator/client/node_snapshot.h"
#include "replicator/client/tree_walk.h"

namespace replifs::client {
namespace {

std::string Shown(const std::string& path) {
  return path.empty() ? "." : absl::CHexEscape(path);
}

}  // namespace

std::vector<std::string> CompareNodes(const v1::NodeState& local, const v1::NodeState& remote) {
  std::vector<std::string> out;
  const std::string where = Shown(local.path());
  auto differ = [&](absl::string_view field, auto a, auto b) {
    if (a != b) out.push_back(absl::StrCat(where, ": ", field, " differs (local ", a, ", server ", b, ")"));
  };
  differ("type", static_cast<int>(local.type()), static_cast<int>(remote.type()));
  if (!out.empty()) return out;
  differ("mode", absl::StrCat(absl::Hex(local.mode())), absl::StrCat(absl::Hex(remote.mode())));
  differ("uid", local.uid(), remote.uid());
  differ("gid", local.gid(), remote.gid());
  differ("size", local.size(), remote.size());
  differ("mtime_ns", local.mtime_ns(), remote.mtime_ns());
  differ("rdev", local.rdev(), remote.rdev());
  if (local.symlink_target() != remote.symlink_target()) out.push_back(absl::StrCat(where, ": symlink target differs"));
  differ("hard-linked", local.link_group() != 0, remote.link_group() != 0);
  bool same_xattrs = local.xattrs_size() == remote.xattrs_size();
  for (int i = 0; same_xattrs && i < local.xattrs_size(); ++i) {
    same_xattrs = local.xattrs(i).name() == remote.xattrs(i).name() &&
                  local.xattrs(i).value() == remote.xattrs(i).value();
  }
  if (!same_xattrs) out.push_back(absl::StrCat(where, ": xattrs differ"));
  bool same_chunks = local.chunks_size() == remote.chunks_size();
  for (int i = 0; same_chunks && i < local.chunks_size(); ++i) {
    same_chunks = local.chunks(i).id() == remote.chunks(i).id();
  }
  if (!same_chunks) out.push_back(absl::StrCat(where, ": content differs"));
  return out;
}

absl::StatusOr<VerifyResult> VerifyTree(RepoConnection& connection, int root_fd) {
  absl::StatusOr<std::vector<v1::NodeState>> listing = connection.List(0, {});
  if (!listing.ok()) return listing.status();
  std::map<std::string, v1::NodeState> remote;
  for (auto& node : *listing) remote.emplace(node.path(), std::move(node));

  VerifyResult result;
  absl::Status walk_error;
  auto ignore_data = [](const chunker::ChunkId&, std::span<const uint8_t>) { return absl::OkStatus(); };
  absl::Status status = WalkTree(root_fd, [&](const std::string& path, const struct stat&) {
    ++result.checked;
    absl::StatusOr<v1::NodeState> local = SnapshotNode(root_fd, path, connection.hasher(), ignore_data);
    if (absl::IsNotFound(local.status())) return false;  // vanished during the walk
    if (!local.ok()) {
      result.differences.push_back(absl::StrCat(Shown(path), ": cannot read: ", local.status().message()));
      return false;
    }
    auto it = remote.find(path);
    if (it == remote.end()) {
      result.differences.push_back(absl::StrCat(Shown(path), ": missing on the server"));
      return true;
    }
    for (auto& line : CompareNodes(*local, it->second)) result.differences.push_back(std::move(line));
    remote.erase(it);
    return true;
  });
  if (!status.ok()) return status;
  for (const auto& [path, node] : remote) {
    result.differences.push_back(absl::StrCat(Shown(path), ": on the server but not here"));
  }
  return result;
}

}  // namespace replifs::client
