// One repository on one backup server: the client's side of backup.proto.
// Every gRPC status becomes an absl::Status with a one-line message here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replicator/chunker/chunker.h"
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
  };
  // Compresses what shrinks; returns bytes sent on the wire.
  absl::StatusOr<uint64_t> UploadChunks(const std::vector<UploadItem>& chunks);
  absl::StatusOr<uint64_t> Apply(const std::vector<v1::Operation>& operations);
  // The tree as of `at_time_ns` (0: latest), sorted by path.
  absl::StatusOr<std::vector<v1::NodeState>> List(int64_t at_time_ns,
                                                  const std::vector<std::string>& paths);
  absl::Status ReadChunks(const std::vector<std::string>& ids,
                          const std::function<absl::Status(const v1::ChunkData&)>& visit);
  // Every version of `path`, oldest first (deletions have deleted set).
  absl::StatusOr<std::vector<v1::NodeState>> ListVersions(const std::string& path);

 private:
  RepoConnection(ConnectionOptions options, std::shared_ptr<grpc::Channel> channel);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  absl::Status FromGrpc(const grpc::Status& status, absl::string_view rpc) const;

  ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  std::optional<chunker::ChunkIdHasher> hasher_;
  uint64_t applied_seq_ = 0;
  std::atomic<uint64_t> wire_bytes_{0};
};

}  // namespace replifs::client
