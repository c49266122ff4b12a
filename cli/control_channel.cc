#include "cli/control_channel.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "cli/mount_table.h"

namespace replifs::cli {

absl::StatusOr<ProtectedDir> FindProtectedDir(const std::string& dir,
                                              const std::string& state_dir_hint) {
  absl::StatusOr<std::string> mountpoint = AbsolutePath(dir);
  if (!mountpoint.ok()) return mountpoint.status();
  ProtectedDir out;
  out.mountpoint = *mountpoint;
  std::string state_dir = state_dir_hint;
  if (auto mount = FindReplifsMount(*mountpoint)) {
    out.mounted = true;
    state_dir = mount->source;
  }
  if (state_dir.empty()) state_dir = DefaultStateDir(*mountpoint);
  absl::StatusOr<ProtectionConfig> config = ReadConfig(state_dir);
  if (!config.ok()) {
    return absl::NotFoundError(
        absl::StrCat(*mountpoint, " is not protected by replifs (no mount, no state in ", state_dir, ")"));
  }
  out.config = *config;
  return out;
}

std::unique_ptr<v1::Control::Stub> ConnectControl(const ProtectionConfig& config) {
  auto channel = grpc::CreateChannel("unix:" + ControlSocketPath(config.state_dir),
                                     grpc::InsecureChannelCredentials());
  return v1::Control::NewStub(channel);
}

}  // namespace replifs::cli
