#include "replicator/server/backup_server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {
namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(5);
constexpr int kMinClientPingIntervalMs = 5000;

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseListenAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not HOST:PORT"));
  }
  return HostPort{address.substr(0, colon), port};
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  if (!file || text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read PEM file ", path));
  }
  return text.str();
}

// TLS when a certificate is given; else insecure, refused off loopback
// unless the operator said --insecure.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenCredentials(
    const ServerOptions& options, const HostPort& listen) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (options.tls_cert_file.empty()) {
    if (!IsLoopbackHost(listen.host) && !options.insecure) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to listen on non-loopback ", options.listen_address,
          " without TLS (give --tls-cert and --tls-key, or --insecure)"));
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  REPLIFS_ASSIGN_OR_RETURN(const std::string cert, ReadPemFile(options.tls_cert_file));
  REPLIFS_ASSIGN_OR_RETURN(const std::string key, ReadPemFile(options.tls_key_file));
  ssl.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

// Chunk-list pages kept in memory: 64 MiB covers the lists of about 200 GiB
// of files (page_cache.h).
constexpr size_t kPageCacheBytes = 64 << 20;

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "[::1]" || host == "::1" ||
         absl::StartsWith(host, "127.") || absl::StartsWith(host, "[::ffff:127.");
}

absl::StatusOr<std::unique_ptr<BackupServer>> BackupServer::Start(const ServerOptions& options) {
  REPLIFS_ASSIGN_OR_RETURN(const HostPort listen, ParseListenAddress(options.listen_address));
  REPLIFS_ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ServerCredentials> credentials,
                           ListenCredentials(options, listen));
  std::unique_ptr<BackupServer> server(new BackupServer());
  REPLIFS_ASSIGN_OR_RETURN(server->store_, StoreDirectory::Open(options.store_dir));
  REPLIFS_ASSIGN_OR_RETURN(server->chunks_, PackChunkStore::Open(server->store_->repos_path()));
  server->pages_ = std::make_unique<CachingPageStore>(server->chunks_.get(), kPageCacheBytes);
  REPLIFS_ASSIGN_OR_RETURN(server->catalog_, SqliteCatalog::Open(server->store_->catalog_path(),
                                                                 server->pages_.get()));
  // A deleted index is rebuilt from the packs (we hold the store's LOCK).
  if (server->chunks_->needs_rebuild()) {
    REPLIFS_RETURN_IF_ERROR(server->chunks_->RebuildIndex(nullptr).status());
  }
  server->metrics_ = std::make_unique<ServerMetrics>(&server->metrics_registry_);
  BackupServiceOptions service_options = options.service;
  service_options.metrics = server->metrics_.get();
  server->service_ = std::make_unique<BackupService>(server->catalog_.get(), server->chunks_.get(),
                                                     service_options);
  if (!options.metrics_address.empty()) {
    REPLIFS_ASSIGN_OR_RETURN(server->metrics_http_, telemetry::MetricsHttpServer::Start(
                                                        options.metrics_address,
                                                        &server->metrics_registry_));
  }

  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(options.listen_address, credentials, &selected_port);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageSize);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreamsPerClient);
  // Clients ping every 10 s to notice half-open connections (repo_connection.cc);
  // the default policy (one ping per 5 min while we send nothing) would
  // answer a long upload's pings with GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, kMinClientPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Without this a second server could bind the same port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || selected_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  server->port_ = selected_port;
  server->address_ = absl::StrCat(listen.host, ":", selected_port);
  return server;
}

BackupServer::~BackupServer() {
  Shutdown();
  Wait();
}

void BackupServer::Shutdown() {
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
}

void BackupServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace replifs::server
