// A running replifs-server: store directory (locked), catalog, chunk store
// and the gRPC server around BackupService. The binary is a thin wrapper;
// tests and other parts start one in-process the same way.
#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "replicator/server/backup_service.h"
#include "replicator/server/pack_chunk_store.h"
#include "replicator/server/server_metrics.h"
#include "replicator/server/sqlite_catalog.h"
#include "replicator/server/page_cache.h"
#include "replicator/server/store_directory.h"
#include "replicator/telemetry/metrics_http_server.h"

namespace replifs::server {

inline constexpr int kMaxReceiveMessageSize = 64 << 20;
// HTTP/2 streams one client connection may have open at once; more wait.
inline constexpr int kMaxConcurrentStreamsPerClient = 32;

struct ServerOptions {
  std::string listen_address = "127.0.0.1:7433";  // HOST:PORT; port 0 picks one
  std::string store_dir = "/var/lib/replifs-server";
  // PEM files; both or neither. Without them the server listens only on a
  // loopback address unless `insecure` is set.
  std::string tls_cert_file;
  std::string tls_key_file;
  bool insecure = false;
  // HOST:PORT for a Prometheus GET /metrics endpoint; empty: none.
  std::string metrics_address;
  BackupServiceOptions service;
};

// True for 127.0.0.0/8, ::1 and localhost.
bool IsLoopbackHost(const std::string& host);

class BackupServer {
 public:
  // Opens (locks) the store and starts serving.
  static absl::StatusOr<std::unique_ptr<BackupServer>> Start(const ServerOptions& options);
  ~BackupServer();

  // The address actually bound, e.g. "127.0.0.1:41023".
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // The metrics endpoint actually bound ("" without one).
  std::string metrics_address() const { return metrics_http_ ? metrics_http_->address() : ""; }

  // Stops accepting calls and waits (bounded) for running ones. Idempotent.
  void Shutdown();
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  BackupServer() = default;

  std::unique_ptr<StoreDirectory> store_;
  std::unique_ptr<SqliteCatalog> catalog_;
  std::unique_ptr<PackChunkStore> chunks_;
  std::unique_ptr<CachingPageStore> pages_;  // chunks_'s pages, the recent ones in memory
  std::unique_ptr<BackupService> service_;
  std::unique_ptr<grpc::Server> server_;
  telemetry::MetricsRegistry metrics_registry_;
  std::unique_ptr<ServerMetrics> metrics_;  // registered in metrics_registry_
  std::unique_ptr<telemetry::MetricsHttpServer> metrics_http_;
  std::string address_;
  int port_ = 0;
};

}  // namespace replifs::server
