// The replifs.v1.Backup gRPC service: validates requests, checks chunk ids,
// and drives the ChunkStore and Catalog in the order FORMAT.md requires.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/server/catalog.h"
#include "replicator/server/chunk_store.h"
#include "replifs/v1/backup.grpc.pb.h"

namespace replifs::server {

// gRPC metadata key of the repository token ("Bearer TOKEN").
inline constexpr char kAuthorizationKey[] = "authorization";

struct ServerMetrics;

struct BackupServiceOptions {
  uint32_t max_chunk_size = 4 << 20;  // announced in Hello, enforced on upload
  ServerMetrics* metrics = nullptr;   // counts calls and bytes when set; must outlive the service
};

class BackupService final : public v1::Backup::Service {
 public:
  // `catalog` and `chunks` must outlive the service.
  BackupService(Catalog* catalog, ChunkStore* chunks, BackupServiceOptions options = {})
      : catalog_(catalog), chunks_(chunks), options_(options) {}

  grpc::Status Hello(grpc::ServerContext* context, const v1::HelloRequest* request,
                     v1::HelloReply* reply) override;
  grpc::Status MissingChunks(grpc::ServerContext* context, const v1::MissingChunksRequest* request,
                             v1::MissingChunksReply* reply) override;
  grpc::Status UploadChunks(grpc::ServerContext* context,
                            grpc::ServerReader<v1::ChunkUpload>* reader,
                            v1::UploadReply* reply) override;
  grpc::Status Apply(grpc::ServerContext* context, const v1::ApplyRequest* request,
                     v1::ApplyReply* reply) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request,
                    grpc::ServerWriter<v1::NodeState>* writer) override;
  grpc::Status ReadChunks(grpc::ServerContext* context, const v1::ReadChunksRequest* request,
                          grpc::ServerWriter<v1::ChunkData>* writer) override;
  grpc::Status ListVersions(grpc::ServerContext* context, const v1::ListVersionsRequest* request,
                            grpc::ServerWriter<v1::NodeState>* writer) override;

 private:
  // The repository `name` if the call carries its token: UNAUTHENTICATED
  // without a token, PERMISSION_DENIED for a wrong one or an unknown name.
  absl::StatusOr<Repo> Authorize(const grpc::ServerContext& context, std::string_view name);
  template <typename Request, typename Handler>
  grpc::Status Authorized(grpc::ServerContext* context, const Request& request, Handler handler);

  // Counts and logs a finished call (options_.metrics), then returns it.
  grpc::Status Counted(const char* method, grpc::Status status);

  absl::Status DoHello(const Repo& repo, const v1::HelloRequest& request, v1::HelloReply* reply);
  absl::Status DoMissingChunks(const Repo& repo, const v1::MissingChunksRequest& request,
                               v1::MissingChunksReply* reply);
  absl::Status DoUploadChunks(const grpc::ServerContext& context,
                              grpc::ServerReader<v1::ChunkUpload>* reader, v1::UploadReply* reply);
  // Authorizes, decompresses and verifies each upload, then hands it on.
  absl::Status ReadUploads(
      const grpc::ServerContext& context, grpc::ServerReader<v1::ChunkUpload>* reader,
      const std::function<absl::Status(const Repo&, ChunkStore::PendingChunk)>& on_chunk);
  // Stored chunks for patched uploads to copy from.
  delta::StoredChunkFn StoredChunkFn(int64_t repo_id);
  absl::Status DoApply(const Repo& repo, const v1::ApplyRequest& request, v1::ApplyReply* reply);
  absl::Status DoList(const Repo& repo, const v1::ListRequest& request,
                      grpc::ServerWriter<v1::NodeState>* writer);
  absl::Status DoReadChunks(const Repo& repo, const v1::ReadChunksRequest& request,
                            grpc::ServerWriter<v1::ChunkData>* writer);
  absl::Status DoListVersions(const Repo& repo, const v1::ListVersionsRequest& request,
                              grpc::ServerWriter<v1::NodeState>* writer);

  Catalog* const catalog_;
  ChunkStore* const chunks_;
  const BackupServiceOptions options_;
};

}  // namespace replifs::server
