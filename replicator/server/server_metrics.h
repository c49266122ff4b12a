// What replifs-server counts for its Prometheus endpoint (README,
// "Monitoring"). BackupService updates it; the registry renders it.
#pragma once

#include <grpcpp/support/status.h>

#include "replicator/telemetry/metrics.h"

namespace replifs::server {

struct ServerMetrics {
  // Registers every metric in `registry`, which must outlive this.
  explicit ServerMetrics(telemetry::MetricsRegistry* registry);

  // Counts one finished call; logs it when it failed.
  void CountRequest(const char* method, const grpc::Status& status);

  telemetry::Counter* bytes_received;        // chunk payloads as they arrived (maybe compressed)
  telemetry::Counter* chunks_received;       // chunk uploads accepted (new or known)
  telemetry::Counter* chunks_stored;         // chunks new to their repository, written
  telemetry::Counter* chunk_bytes_stored;    // their uncompressed bytes
  telemetry::Counter* commits;               // Apply calls made durable
  telemetry::Counter* operations_committed;  // operations in them
  telemetry::Counter* file_bytes_committed;  // sizes of the file versions committed
  telemetry::CounterFamily* requests;        // by method and gRPC status code
};

}  // namespace replifs::server
