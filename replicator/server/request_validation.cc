#include "replicator/server/request_validation.h"

#include "absl/strings/str_cat.h"
#include "replicator/paths/relative_path.h"

namespace replifs::server {
namespace {

// A chunk list given as splices of the server's list (backup.proto): the
// sizes are checked once the catalog has rebuilt the list.
absl::Status ValidateChunkListDelta(const v1::NodeState& state, const v1::ChunkListDelta& delta) {
  const std::string path = paths::PrintablePath(state.path());
  if (state.type() != v1::NodeState::REGULAR || state.chunks_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "put of \"", path, "\": a chunk-list delta needs a regular file without chunks"));
  }
  if (delta.base_digest().size() != kChunkIdSize || delta.digest().size() != kChunkIdSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("put of \"", path, "\": chunk-list digests must be ", kChunkIdSize, " bytes"));
  }
  for (const v1::ChunkListSplice& splice : delta.splices()) {
    for (const v1::ChunkRef& chunk : splice.chunks()) {
      if (absl::Status status = ValidateChunkId(chunk.id()); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeState(const v1::NodeState& state) {
  const bool is_directory = state.type() == v1::NodeState::DIRECTORY;
  if (absl::Status status = ValidatePath(state.path(), /*allow_root=*/is_directory); !status.ok()) {
    return status;
  }
  if (state.type() == v1::NodeState::TYPE_UNSPECIFIED ||
      !v1::NodeState::Type_IsValid(state.type())) {
    return absl::InvalidArgumentError(
        absl::StrCat("put of \"", paths::PrintablePath(state.path()), "\": unknown node type"));
  }
  if (state.type() != v1::NodeState::REGULAR) {
    if (state.chunks_size() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("put of \"", paths::PrintablePath(state.path()), "\": only regular files have chunks"));
    }
    return absl::OkStatus();
  }
  uint64_t total = 0;
  for (const v1::ChunkRef& chunk : state.chunks()) {
    if (absl::Status status = ValidateChunkId(chunk.id()); !status.ok()) return status;
    total += chunk.length();
  }
  if (total != state.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put of \"", paths::PrintablePath(state.path()),
                                                   "\": chunk lengths add up to ", total,
                                                   " but size is ", state.size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRepoName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRepoNameSize) {
    return absl::InvalidArgumentError("repository name must be 1 to 255 bytes");
  }
  if (name.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("repository name must not contain NUL");
  }
  return absl::OkStatus();
}

absl::Status ValidateJournalId(std::string_view journal_id) {
  if (journal_id.size() > kMaxJournalIdSize) {
    return absl::InvalidArgumentError("journal id must be at most 255 bytes");
  }
  return absl::OkStatus();
}

absl::Status ValidateChunkId(std::string_view id) {
  if (id.size() != kChunkIdSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk id must be ", kChunkIdSize, " bytes, got ", id.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidatePath(std::string_view path, bool allow_root) {
  if (path.empty() && !allow_root) {
    return absl::InvalidArgumentError("empty path (the root) is not allowed here");
  }
  return paths::CheckRelativePath(path);
}

absl::Status ValidateOperations(const google::protobuf::RepeatedPtrField<v1::Operation>& ops) {
  for (const v1::Operation& op : ops) {
    if (op.has_put_chunks_delta() && !op.has_put()) {
      return absl::InvalidArgumentError(
          absl::StrCat("operation seq ", op.seq(), ": a chunk-list delta without a put"));
    }
    switch (op.op_case()) {
      case v1::Operation::kPut:
        if (op.has_put_chunks_delta()) {
          absl::Status status = ValidateChunkListDelta(op.put(), op.put_chunks_delta());
          if (!status.ok()) return status;
          status = ValidatePath(op.put().path(), /*allow_root=*/false);
          if (!status.ok()) return status;
          break;
        }
        if (absl::Status status = ValidateNodeState(op.put()); !status.ok()) return status;
        break;
      case v1::Operation::kRemove:
        if (absl::Status status = ValidatePath(op.remove(), false); !status.ok()) return status;
        break;
      case v1::Operation::kRename: {
        const v1::Operation::Rename& rename = op.rename();
        if (absl::Status status = ValidatePath(rename.from(), false); !status.ok()) return status;
        if (absl::Status status = ValidatePath(rename.to(), false); !status.ok()) return status;
        const std::string_view from = rename.from();
        const std::string_view to = rename.to();
        const auto is_below = [](std::string_view child, std::string_view parent) {
          return child.size() > parent.size() && child.starts_with(parent) &&
                 child[parent.size()] == '/';
        };
        if (is_below(to, from) || is_below(from, to)) {
          return absl::InvalidArgumentError(absl::StrCat("rename of \"", paths::PrintablePath(from),
                                                         "\" to \"", paths::PrintablePath(to),
                                                         "\": one path is inside the other"));
        }
        break;
      }
      case v1::Operation::OP_NOT_SET:
        return absl::InvalidArgumentError(absl::StrCat("operation seq ", op.seq(), " is empty"));
    }
  }
  return absl::OkStatus();
}

}  // namespace replifs::server
