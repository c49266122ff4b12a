#include "replicator/server/backup_service.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <zstd.h>

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "replicator/chunker/chunker.h"
#include "replicator/server/request_validation.h"
#include "replicator/server/status_macros.h"
#include "replicator/server/status_mapping.h"

namespace replifs::server {
namespace {

constexpr size_t kChunkSecretSize = 32;

absl::StatusOr<std::string> NewChunkSecret() {
  std::string secret(kChunkSecretSize, '\0');
  size_t filled = 0;
  while (filled < secret.size()) {
    const ssize_t n = ::getrandom(&secret[filled], secret.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  return secret;
}

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

grpc::Status BackupService::Hello(grpc::ServerContext*, const v1::HelloRequest* request,
                                  v1::HelloReply* reply) {
  return ToGrpcStatus(DoHello(*request, reply));
}
grpc::Status BackupService::MissingChunks(grpc::ServerContext*,
                                          const v1::MissingChunksRequest* request,
                                          v1::MissingChunksReply* reply) {
  return ToGrpcStatus(DoMissingChunks(*request, reply));
}
grpc::Status BackupService::UploadChunks(grpc::ServerContext*,
                                         grpc::ServerReader<v1::ChunkUpload>* reader,
                                         v1::UploadReply* reply) {
  return ToGrpcStatus(DoUploadChunks(reader, reply));
}
grpc::Status BackupService::Apply(grpc::ServerContext*, const v1::ApplyRequest* request,
                                  v1::ApplyReply* reply) {
  return ToGrpcStatus(DoApply(*request, reply));
}
grpc::Status BackupService::List(grpc::ServerContext*, const v1::ListRequest* request,
                                 grpc::ServerWriter<v1::NodeState>* writer) {
  return ToGrpcStatus(DoList(*request, writer));
}
grpc::Status BackupService::ReadChunks(grpc::ServerContext*, const v1::ReadChunksRequest* request,
                                       grpc::ServerWriter<v1::ChunkData>* writer) {
  return ToGrpcStatus(DoReadChunks(*request, writer));
}

absl::StatusOr<Repo> BackupService::FindRepo(std::string_view name) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoName(name));
  return catalog_->FindRepo(name);
}

absl::Status BackupService::DoHello(const v1::HelloRequest& request, v1::HelloReply* reply) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoName(request.repo()));
  REPLIFS_RETURN_IF_ERROR(ValidateJournalId(request.journal_id()));
  REPLIFS_ASSIGN_OR_RETURN(const std::string secret, NewChunkSecret());
  REPLIFS_ASSIGN_OR_RETURN(const Repo repo, catalog_->FindOrCreateRepo(request.repo(), secret));
  REPLIFS_ASSIGN_OR_RETURN(const uint64_t applied,
                           catalog_->AppliedSeq(repo.id, request.journal_id()));
  reply->set_chunk_secret(repo.chunk_secret);
  reply->set_applied_seq(applied);
  reply->set_max_chunk_size(options_.max_chunk_size);
  return absl::OkStatus();
}

absl::Status BackupService::DoMissingChunks(const v1::MissingChunksRequest& request,
                                            v1::MissingChunksReply* reply) {
  REPLIFS_ASSIGN_OR_RETURN(const Repo repo, FindRepo(request.repo()));
  for (const std::string& id : request.ids()) REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  const std::vector<std::string> ids(request.ids().begin(), request.ids().end());
  REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> missing, catalog_->MissingChunks(repo.id, ids));
  for (std::string& id : missing) reply->add_ids(std::move(id));
  return absl::OkStatus();
}

absl::Status BackupService::DoUploadChunks(grpc::ServerReader<v1::ChunkUpload>* reader,
                                           v1::UploadReply* reply) {
  std::optional<Repo> repo;
  std::optional<chunker::ChunkIdHasher> hasher;
  v1::ChunkUpload upload;
  while (reader->Read(&upload)) {
    if (!repo.has_value()) {
      REPLIFS_ASSIGN_OR_RETURN(repo, FindRepo(upload.repo()));
      hasher.emplace(repo->chunk_secret);
    } else if (!upload.repo().empty() && upload.repo() != repo->name) {
      return absl::InvalidArgumentError("an upload stream must stay in one repository");
    }
    REPLIFS_RETURN_IF_ERROR(ValidateChunkId(upload.id()));
    REPLIFS_ASSIGN_OR_RETURN(const std::string data,
                             UploadedBytes(upload, options_.max_chunk_size));
    if (hasher->Hash(data).ToBytes() != upload.id()) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", absl::BytesToHexString(upload.id()),
                                                     " does not match its content"));
    }
    const absl::StatusOr<uint32_t> known = catalog_->ChunkLength(repo->id, upload.id());
    if (known.ok()) continue;
    if (!absl::IsNotFound(known.status())) return known.status();
    // Durable data first, then the catalog row that names it (FORMAT.md).
    REPLIFS_RETURN_IF_ERROR(chunks_->Put(repo->id, upload.id(), data));
    REPLIFS_RETURN_IF_ERROR(catalog_->RecordChunk(repo->id, upload.id(), upload.length()));
    reply->set_stored(reply->stored() + 1);
    reply->set_bytes_stored(reply->bytes_stored() + upload.length());
  }
  return absl::OkStatus();
}

absl::Status BackupService::DoApply(const v1::ApplyRequest& request, v1::ApplyReply* reply) {
  REPLIFS_ASSIGN_OR_RETURN(const Repo repo, FindRepo(request.repo()));
  REPLIFS_RETURN_IF_ERROR(ValidateJournalId(request.journal_id()));
  REPLIFS_RETURN_IF_ERROR(ValidateOperations(request.operations()));
  // Apply returns only after the transaction is durable (FORMAT.md).
  REPLIFS_ASSIGN_OR_RETURN(const uint64_t applied,
                           catalog_->Apply(repo.id, request.journal_id(), request.operations(),
                                           absl::GetCurrentTimeNanos()));
  reply->set_applied_seq(applied);
  return absl::OkStatus();
}

absl::Status BackupService::DoList(const v1::ListRequest& request,
                                   grpc::ServerWriter<v1::NodeState>* writer) {
  REPLIFS_ASSIGN_OR_RETURN(const Repo repo, FindRepo(request.repo()));
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

absl::Status BackupService::DoReadChunks(const v1::ReadChunksRequest& request,
                                         grpc::ServerWriter<v1::ChunkData>* writer) {
  REPLIFS_ASSIGN_OR_RETURN(const Repo repo, FindRepo(request.repo()));
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

}  // namespace replifs::server
