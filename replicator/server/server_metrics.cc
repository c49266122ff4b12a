#include "replicator/server/server_metrics.h"

#include "replicator/telemetry/log.h"

namespace replifs::server {
namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "OTHER";
  }
}

// The server's own trouble, as opposed to a client's bad or unauthorized request.
bool IsServerFault(grpc::StatusCode code) {
  return code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::DATA_LOSS ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace

ServerMetrics::ServerMetrics(telemetry::MetricsRegistry* registry) {
  using telemetry::LogLevel;
  requests = registry->AddCounterFamily("replifs_server_requests_total",
                                        "Finished calls by method and gRPC status code.",
                                        {"method", "code"});
  bytes_received = registry->AddCounter("replifs_server_bytes_received_total",
                                        "Chunk payload bytes received from clients, as sent "
                                        "(zstd-compressed where the client compressed).");
  chunks_received = registry->AddCounter("replifs_server_chunks_received_total",
                                         "Chunk uploads accepted (already stored ones included).");
  chunks_stored = registry->AddCounter("replifs_server_chunks_stored_total",
                                       "Chunks new to their repository, written to the store.");
  chunk_bytes_stored =
      registry->AddCounter("replifs_server_chunk_bytes_stored_total",
                           "Uncompressed bytes of the chunks written to the store.");
  commits = registry->AddCounter("replifs_server_commits_total",
                                 "Apply calls committed durably (one atomic batch each).");
  operations_committed =
      registry->AddCounter("replifs_server_operations_committed_total",
                           "Operations (put, remove, rename) in committed batches.");
  file_bytes_committed = registry->AddCounter(
      "replifs_server_file_bytes_committed_total",
      "Sizes of the regular-file versions committed (what restores would produce).");
  registry->AddGauge(
      "replifs_server_dedup_ratio",
      "file_bytes_committed / chunk_bytes_stored since start: bytes committed per byte stored "
      "(0 before anything was stored).",
      [this] {
        const uint64_t stored = chunk_bytes_stored->value();
        return stored == 0 ? 0.0 : static_cast<double>(file_bytes_committed->value()) / stored;
      });
  registry->AddCounterFunction("replifs_server_errors_total",
                               "Error-level log lines: the server's own faults (I/O, damage).",
                               [] { return telemetry::LogLinesAt(LogLevel::kError); });
  registry->AddCounterFunction("replifs_server_warnings_total",
                               "Warn-level log lines: refused requests (bad input, wrong token).",
                               [] { return telemetry::LogLinesAt(LogLevel::kWarn); });
}

void ServerMetrics::CountRequest(const char* method, const grpc::Status& status) {
  const char* code = CodeName(status.error_code());
  requests->With({method, code})->Add();
  if (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED) return;
  telemetry::Log(
      IsServerFault(status.error_code()) ? telemetry::LogLevel::kError : telemetry::LogLevel::kWarn,
      "server", "request failed",
      {{"method", method}, {"code", code}, {"error", status.error_message()}});
}

}  // namespace replifs::server
