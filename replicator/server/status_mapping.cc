#include "replicator/server/status_mapping.h"

#include <string>

namespace replifs::server {

// absl::StatusCode and grpc::StatusCode share the canonical numbering (0..16);
// anything outside it becomes UNKNOWN rather than an invalid wire code.
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  const grpc::StatusCode grpc_code =
      (code >= 1 && code <= 16) ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, std::string(status.message()));
}

}  // namespace replifs::server
