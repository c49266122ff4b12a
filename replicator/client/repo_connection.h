// One repository on one backup server: the client's side of backup.proto.
// Every gRPC status becomes an absl::Status with a one-line message here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replicator/chunker/chunker.h"
#include "replicator/delta/chunk_patch.h"
#include "replifs/v1/backup.grpc.pb.h"

namespace replifs::client {

struct ConnectionOptions {
  std::string server;      // host:port
  std::string repo;
  std::string journal_id;  // empty for read-only use (restore, verify)
  std::string token;       // the repository's token (sent as "authorization: Bearer")
  std::string ca_pem;      // PEM CA certificates: non-empty means TLS
  absl::Duration rpc_timeout = absl::Seconds(60);
};

class RepoConnection {
 public:
  // Says Hello: learns the repository's chunk secret and the journal's
  // applied seq. The repository must exist (`replifs-server repo create`).
  static absl::StatusOr<std::unique_ptr<RepoConnection>> Open(const ConnectionOptions& options);

  const chunker::ChunkIdHasher& hasher() const { return *hasher_; }
  uint64_t applied_seq() const { return applied_seq_; }
  // Says Hello again for the journal's applied seq: after a failed Apply the
  // server may have committed it all the same (only its reply was lost).
  absl::StatusOr<uint64_t> FetchAppliedSeq();
  const ConnectionOptions& options() const { return options_; }
  // Serialized bytes of every message sent and received so far (gRPC
  // payloads; HTTP/2 framing and call headers not counted).
  uint64_t wire_bytes() const { return wire_bytes_.load(std::memory_order_relaxed); }

  absl::StatusOr<std::vector<std::string>> MissingChunks(const std::vector<std::string>& ids);
  struct UploadItem {
    std::string id;
    std::string data;  // uncompressed
    // Set: sent as this patch of stored chunks when smaller; if the server
    // refuses it, the whole batch is sent again without patches.
    std::optional<delta::ChunkPatch> patch;
  };
  // Compresses what shrinks; returns bytes sent on the wire. Sends streams
  // of at most stream_bytes(), halved after a broken stream and doubled
  // after a complete one; after a break it asks MissingChunks and resends
  // only what the server lacks (up to kMaxStreamFailures breaks in a row).
  absl::StatusOr<uint64_t> UploadChunks(const std::vector<UploadItem>& chunks);
  // Starts at kStartStreamBytes; a healthy link grows to kMaxStreamBytes
  // (fewer server syncs per byte), a lossy one shrinks towards kMinStreamBytes.
  static constexpr size_t kStartStreamBytes = 4 << 20;
  static constexpr size_t kMaxStreamBytes = 32 << 20;
  static constexpr size_t kMinStreamBytes = 64 << 10;
  static constexpr int kMaxStreamFailures = 8;
  size_t stream_bytes() const { return stream_bytes_.load(std::memory_order_relaxed); }
  // Broken upload streams retried so far.
  uint64_t upload_retries() const { return upload_retries_.load(std::memory_order_relaxed); }
  absl::StatusOr<uint64_t> Apply(const std::vector<v1::Operation>& operations);
  // The tree as of `at_time_ns` (0: latest), sorted by path.
  absl::StatusOr<std::vector<v1::NodeState>> List(int64_t at_time_ns,
                                                  const std::vector<std::string>& paths);
  // `visit` gets each chunk uncompressed, its id checked (DATA_LOSS if not);
  // the server may send stored zstd frames, which are decompressed here.
  absl::Status ReadChunks(const std::vector<std::string>& ids,
                          const std::function<absl::Status(const v1::ChunkData&)>& visit);
  // Every version of `path`, oldest first (deletions have deleted set).
  absl::StatusOr<std::vector<v1::NodeState>> ListVersions(const std::string& path);

 private:
  RepoConnection(ConnectionOptions options, std::shared_ptr<grpc::Channel> channel);
  absl::StatusOr<uint64_t> UploadStream(std::span<const UploadItem* const> chunks);
  // Decompresses a chunk sent compressed and checks its id: DATA_LOSS.
  absl::Status CheckedChunk(v1::ChunkData* chunk) const;
  absl::StatusOr<uint64_t> UploadChunksOnce(std::span<const UploadItem* const> chunks, bool allow_patches);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  absl::Status FromGrpc(const grpc::Status& status, absl::string_view rpc) const;

  ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  std::optional<chunker::ChunkIdHasher> hasher_;
  uint64_t applied_seq_ = 0;
  std::atomic<uint64_t> wire_bytes_{0};
  std::atomic<size_t> stream_bytes_{kStartStreamBytes};
  std::atomic<uint64_t> upload_retries_{0};
};

}  // namespace replifs::client
