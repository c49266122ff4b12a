// Finding a protected directory's daemon from the command line: the mount's
// source in mountinfo is the state directory, which holds the control socket.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/protection_config.h"
#include "replifs/v1/control.grpc.pb.h"

namespace replifs::cli {

struct ProtectedDir {
  std::string mountpoint;
  ProtectionConfig config;
  bool mounted = false;
};

// A protected directory by the path the user typed. When it is not mounted,
// `state_dir_hint` (or the default state directory) supplies its config.
absl::StatusOr<ProtectedDir> FindProtectedDir(const std::string& dir,
                                              const std::string& state_dir_hint = "");

std::unique_ptr<v1::Control::Stub> ConnectControl(const ProtectionConfig& config);

}  // namespace replifs::cli
