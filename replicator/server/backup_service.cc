#include "replicator/server/backup_service.h"

#include <errno.h>
#include <string.h>
#include <zstd.h>

#include <functional>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "replicator/chunker/chunker.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/request_validation.h"
#include "replicator/server/server_metrics.h"
#include "replicator/server/fault_injection.h"
#include "replicator/server/status_macros.h"
#include "replicator/server/status_mapping.h"

namespace replifs::server {
namespace {

// An upload batch is stored (and synced) at this many chunks or bytes.
constexpr size_t kUploadBatchChunks = 1024;  // 16 MiB of average chunks: one sync per client group
constexpr size_t kUploadBatchBytes = 16 << 20;

// The uncompressed bytes of an upload, at most `max_length` long.
absl::StatusOr<std::string> UploadedBytes(const v1::ChunkUpload& upload, uint32_t max_length) {
  const std::string hex = absl::BytesToHexString(upload.id());
  if (upload.length() > max_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", hex, " is ", upload.length(), " bytes; the limit is ", max_length));
  }
  if (!upload.compressed()) {
    if (upload.data().size() != upload.length()) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", hex, " has ", upload.data().size(),
                                                     " bytes, not ", upload.length()));
    }
    return upload.data();
  }
  // The destination is exactly `length` bytes, so a hostile frame cannot
  // make us allocate or write more.
  std::string data(upload.length(), '\0');
  const size_t got =
      ZSTD_decompress(data.data(), data.size(), upload.data().data(), upload.data().size());
  if (ZSTD_isError(got) || got != upload.length()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", hex, " does not decompress to ", upload.length(), " bytes"));
  }
  return data;
}

}  // namespace

// Each handler authorizes first: nothing below it runs for a caller without
// the repository's token.
template <typename Request, typename Handler>
grpc::Status BackupService::Authorized(grpc::ServerContext* context, const Request& request,
                                       Handler handler) {
  absl::StatusOr<Repo> repo = Authorize(*context, request.repo());
  if (!repo.ok()) return ToGrpcStatus(repo.status());
  return ToGrpcStatus(handler(*repo));
}

grpc::Status BackupService::Hello(grpc::ServerContext* context, const v1::HelloRequest* request,
                                  v1::HelloReply* reply) {
  return Counted("Hello",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoHello(repo, *request, reply); }));
}
grpc::Status BackupService::MissingChunks(grpc::ServerContext* context,
                                          const v1::MissingChunksRequest* request,
                                          v1::MissingChunksReply* reply) {
  return Counted("MissingChunks",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoMissingChunks(repo, *request, reply); }));
}
grpc::Status BackupService::UploadChunks(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::ChunkUpload>* reader,
                                         v1::UploadReply* reply) {
  return Counted("UploadChunks", ToGrpcStatus(DoUploadChunks(*context, reader, reply)));
}
grpc::Status BackupService::Apply(grpc::ServerContext* context, const v1::ApplyRequest* request,
                                  v1::ApplyReply* reply) {
  return Counted("Apply",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoApply(repo, *request, reply); }));
}
grpc::Status BackupService::List(grpc::ServerContext* context, const v1::ListRequest* request,
                                 grpc::ServerWriter<v1::NodeState>* writer) {
  return Counted("List",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoList(repo, *request, writer); }));
}
grpc::Status BackupService::ReadChunks(grpc::ServerContext* context,
                                       const v1::ReadChunksRequest* request,
                                       grpc::ServerWriter<v1::ChunkData>* writer) {
  return Counted("ReadChunks",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoReadChunks(repo, *request, writer); }));
}
grpc::Status BackupService::ListVersions(grpc::ServerContext* context,
                                         const v1::ListVersionsRequest* request,
                                         grpc::ServerWriter<v1::NodeState>* writer) {
  return Counted("ListVersions",
                 Authorized(context, *request,
                            [&](const Repo& repo) { return DoListVersions(repo, *request, writer); }));
}

grpc::Status BackupService::Counted(const char* method, grpc::Status status) {
  if (options_.metrics != nullptr) options_.metrics->CountRequest(method, status);
  return status;
}

absl::StatusOr<Repo> BackupService::Authorize(const grpc::ServerContext& context,
                                              std::string_view name) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoName(name));
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kAuthorizationKey);
  if (found == metadata.end()) {
    return absl::UnauthenticatedError(
        "no repository token (send metadata \"authorization: Bearer TOKEN\")");
  }
  const std::string_view value(found->second.data(), found->second.size());
  const std::string_view scheme = "Bearer ";
  if (value.substr(0, scheme.size()) != scheme) {
    return absl::UnauthenticatedError("the authorization metadata is not \"Bearer TOKEN\"");
  }
  const std::string_view token = value.substr(scheme.size());
  absl::StatusOr<Repo> repo = catalog_->FindRepo(name);
  if (!repo.ok() && !absl::IsNotFound(repo.status())) return repo.status();
  // An unknown name and a wrong token look the same: names are not probed.
  if (!repo.ok() || !RepoTokenMatches(repo->token_hash, token)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "repository \"", absl::CHexEscape(ToAbsl(name)), "\": wrong token or no such repository"));
  }
  return repo;
}

absl::Status BackupService::DoHello(const Repo& repo, const v1::HelloRequest& request,
                                    v1::HelloReply* reply) {
  REPLIFS_RETURN_IF_ERROR(ValidateJournalId(request.journal_id()));
  REPLIFS_ASSIGN_OR_RETURN(const uint64_t applied,
                           catalog_->AppliedSeq(repo.id, request.journal_id()));
  reply->set_chunk_secret(repo.chunk_secret);
  reply->set_applied_seq(applied);
  reply->set_max_chunk_size(options_.max_chunk_size);
  return absl::OkStatus();
}

absl::Status BackupService::DoMissingChunks(const Repo& repo,
                                            const v1::MissingChunksRequest& request,
                                            v1::MissingChunksReply* reply) {
  for (const std::string& id : request.ids()) REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  const std::vector<std::string> ids(request.ids().begin(), request.ids().end());
  REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> missing, catalog_->MissingChunks(repo.id, ids));
  for (std::string& id : missing) reply->add_ids(std::move(id));
  return absl::OkStatus();
}

absl::Status BackupService::DoUploadChunks(const grpc::ServerContext& context,
                                           grpc::ServerReader<v1::ChunkUpload>* reader,
                                           v1::UploadReply* reply) {
  std::optional<Repo> repo;
  // Chunks are stored in batches: one sync of the pack and one transaction
  // of each database per batch instead of per chunk (group commit).
  std::vector<ChunkStore::PendingChunk> pending;
  size_t pending_bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    // No garbage collection between storing and the recorded rows.
    REPLIFS_ASSIGN_OR_RETURN(const std::unique_ptr<ChunkStoreGuard> guard, chunks_->GuardWrite());
    std::vector<ChunkStore::PendingChunk> fresh;
    std::vector<ChunkRecord> records, known_records;
    absl::flat_hash_set<std::string> seen;
    for (ChunkStore::PendingChunk& chunk : pending) {
      if (!seen.insert(chunk.id).second) continue;
      const uint32_t length = static_cast<uint32_t>(chunk.data.size());
      const absl::StatusOr<uint32_t> known = catalog_->ChunkLength(repo->id, chunk.id);
      if (known.ok()) {
        known_records.push_back({chunk.id, length});
        continue;
      }
      if (!absl::IsNotFound(known.status())) return known.status();
      records.push_back({chunk.id, length});
      fresh.push_back(std::move(chunk));
    }
    pending.clear();
    pending_bytes = 0;
    // Recorded already: refresh their age so a collector spares them a while.
    if (!known_records.empty()) catalog_->RecordChunks(repo->id, known_records).IgnoreError();
    // Durable data first, then the catalog rows that name it (FORMAT.md).
    REPLIFS_RETURN_IF_ERROR(chunks_->PutMany(repo->id, fresh));
    REPLIFS_RETURN_IF_ERROR(catalog_->RecordChunks(repo->id, records));
    for (const ChunkRecord& record : records) {
      if (options_.metrics != nullptr) {
        options_.metrics->chunks_stored->Add();
        options_.metrics->chunk_bytes_stored->Add(record.length);
      }
      reply->set_stored(reply->stored() + 1);
      reply->set_bytes_stored(reply->bytes_stored() + record.length);
    }
    return absl::OkStatus();
  };
  absl::Status status = ReadUploads(context, reader, [&](const Repo& authorized,
                                                        ChunkStore::PendingChunk chunk) {
    if (!repo.has_value()) repo = authorized;
    pending.push_back(std::move(chunk));
    pending_bytes += pending.back().data.size();
    if (pending.size() < kUploadBatchChunks && pending_bytes < kUploadBatchBytes) {
      return absl::OkStatus();
    }
    return flush();
  });
  // What arrived intact before a bad upload is still stored.
  const absl::Status flushed = flush();
  return status.ok() ? flushed : status;
}

absl::Status BackupService::ReadUploads(
    const grpc::ServerContext& context, grpc::ServerReader<v1::ChunkUpload>* reader,
    const std::function<absl::Status(const Repo&, ChunkStore::PendingChunk)>& on_chunk) {
  std::optional<Repo> repo;
  std::optional<chunker::ChunkIdHasher> hasher;
  v1::ChunkUpload upload;
  while (reader->Read(&upload)) {
    if (!repo.has_value()) {
      REPLIFS_ASSIGN_OR_RETURN(repo, Authorize(context, upload.repo()));
      hasher.emplace(repo->chunk_secret);
    } else if (!upload.repo().empty() && upload.repo() != repo->name) {
      return absl::InvalidArgumentError("an upload stream must stay in one repository");
    }
    REPLIFS_RETURN_IF_ERROR(ValidateChunkId(upload.id()));
    if (options_.metrics != nullptr) options_.metrics->bytes_received->Add(upload.data().size());
    std::string data;
    if (upload.patch_size() > 0) {
      // Built from chunks stored already (delta/chunk_patch.h), then checked like any upload.
      REPLIFS_ASSIGN_OR_RETURN(data, delta::BuildPatchedChunk(upload, options_.max_chunk_size,
                                                              StoredChunkFn(repo->id)));
    } else {
      REPLIFS_ASSIGN_OR_RETURN(data, UploadedBytes(upload, options_.max_chunk_size));
    }
    if (hasher->Hash(data).ToBytes() != upload.id()) {
      return absl::InvalidArgumentError(absl::StrCat(upload.patch_size() > 0 ? "patch of chunk " : "chunk ",
                                                     absl::BytesToHexString(upload.id()),
                                                     " does not match its content"));
    }
    if (options_.metrics != nullptr) options_.metrics->chunks_received->Add();
    ChunkStore::PendingChunk chunk{upload.id(), std::move(data), {}};
    if (upload.compressed() && upload.patch_size() == 0) chunk.zstd_frame = std::move(*upload.mutable_data());
    REPLIFS_RETURN_IF_ERROR(on_chunk(*repo, std::move(chunk)));
  }
  return absl::OkStatus();
}

delta::StoredChunkFn BackupService::StoredChunkFn(int64_t repo_id) {
  return [this, repo_id](const std::string& id) -> absl::StatusOr<std::string> {
    // Only recorded chunks: an unrecorded file may be half written.
    REPLIFS_ASSIGN_OR_RETURN(const uint32_t length, catalog_->ChunkLength(repo_id, id));
    REPLIFS_ASSIGN_OR_RETURN(std::string data, chunks_->Get(repo_id, id));
    if (data.size() != length) {
      return absl::DataLossError(absl::StrCat("stored chunk ", absl::BytesToHexString(id), " is damaged"));
    }
    return data;
  };
}

absl::Status BackupService::DoApply(const Repo& repo, const v1::ApplyRequest& request,
                                    v1::ApplyReply* reply) {
  REPLIFS_RETURN_IF_ERROR(ValidateJournalId(request.journal_id()));
  REPLIFS_RETURN_IF_ERROR(ValidateOperations(request.operations()));
  // Apply returns only after the transaction is durable (FORMAT.md). It may
  // store chunk-list pages: no garbage collection until it committed.
  REPLIFS_ASSIGN_OR_RETURN(std::unique_ptr<ChunkStoreGuard> guard, chunks_->GuardWrite());
  REPLIFS_ASSIGN_OR_RETURN(const uint64_t applied,
                           catalog_->Apply(repo.id, request.journal_id(), request.operations(),
                                           absl::GetCurrentTimeNanos()));
  guard.reset();
  if (options_.metrics != nullptr) {
    options_.metrics->commits->Add();
    options_.metrics->operations_committed->Add(request.operations_size());
    for (const v1::Operation& op : request.operations()) {
      if (op.has_put() && op.put().type() == v1::NodeState::REGULAR) {
        options_.metrics->file_bytes_committed->Add(op.put().size());
      }
    }
  }
  REPLIFS_RETURN_IF_ERROR(fault::Check("after-commit-before-ack"));
  reply->set_applied_seq(applied);
  return absl::OkStatus();
}

absl::Status BackupService::DoList(const Repo& repo, const v1::ListRequest& request,
                                   grpc::ServerWriter<v1::NodeState>* writer) {
  if (request.at_time_ns() < 0)
    return absl::InvalidArgumentError("at_time_ns must not be negative");
  for (const std::string& path : request.paths()) {
    REPLIFS_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  }
  const std::vector<std::string> paths(request.paths().begin(), request.paths().end());
  REPLIFS_ASSIGN_OR_RETURN(const std::vector<v1::NodeState> states,
                           catalog_->List(repo.id, request.at_time_ns(), paths));
  for (const v1::NodeState& state : states) {
    if (!writer->Write(state)) return absl::CancelledError("client went away during List");
  }
  return absl::OkStatus();
}

absl::Status BackupService::DoReadChunks(const Repo& repo, const v1::ReadChunksRequest& request,
                                         grpc::ServerWriter<v1::ChunkData>* writer) {
  // Check every id before sending anything, so NOT_FOUND arrives alone.
  std::vector<uint32_t> lengths;
  lengths.reserve(request.ids_size());
  for (const std::string& id : request.ids()) {
    REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
    REPLIFS_ASSIGN_OR_RETURN(const uint32_t length, catalog_->ChunkLength(repo.id, id));
    lengths.push_back(length);
  }
  const chunker::ChunkIdHasher hasher(repo.chunk_secret);
  v1::ChunkData reply;
  for (int i = 0; i < request.ids_size(); ++i) {
    const std::string& id = request.ids(i);
    if (request.accept_compressed()) {
      // Stored frames go as they are (the pack checksum was checked; the
      // client decompresses and checks the id).
      REPLIFS_ASSIGN_OR_RETURN(ChunkStore::StoredChunk stored, chunks_->GetStored(repo.id, id));
      if (stored.compressed) {
        reply.set_id(id);
        reply.set_data(std::move(stored.data));
        reply.set_compressed(true);
        if (!writer->Write(reply)) return absl::CancelledError("client went away during ReadChunks");
        continue;
      }
      reply.set_compressed(false);
      if (stored.data.size() != lengths[i] || hasher.Hash(stored.data).ToBytes() != id) {
        return absl::DataLossError(
            absl::StrCat("stored chunk ", absl::BytesToHexString(id), " is damaged"));
      }
      reply.set_id(id);
      reply.set_data(std::move(stored.data));
      if (!writer->Write(reply)) return absl::CancelledError("client went away during ReadChunks");
      continue;
    }
    REPLIFS_ASSIGN_OR_RETURN(std::string data, chunks_->Get(repo.id, id));
    // Re-hash on every read: a damaged chunk must never be restored silently.
    if (data.size() != lengths[i] || hasher.Hash(data).ToBytes() != id) {
      return absl::DataLossError(
          absl::StrCat("stored chunk ", absl::BytesToHexString(id), " is damaged"));
    }
    reply.set_id(id);
    reply.set_data(std::move(data));
    if (!writer->Write(reply)) return absl::CancelledError("client went away during ReadChunks");
  }
  return absl::OkStatus();
}

absl::Status BackupService::DoListVersions(const Repo& repo,
                                           const v1::ListVersionsRequest& request,
                                           grpc::ServerWriter<v1::NodeState>* writer) {
  REPLIFS_RETURN_IF_ERROR(ValidatePath(request.path(), /*allow_root=*/true));
  REPLIFS_ASSIGN_OR_RETURN(const std::vector<v1::NodeState> versions,
                           catalog_->ListVersions(repo.id, request.path()));
  for (const v1::NodeState& version : versions) {
    if (!writer->Write(version)) return absl::CancelledError("client went away during ListVersions");
  }
  return absl::OkStatus();
}

}  // namespace replifs::server
