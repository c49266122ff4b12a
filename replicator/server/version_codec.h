// Encodes the list-valued columns of a catalog version row (see FORMAT.md):
// the chunk list and the xattrs of a NodeState.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::server {

// Requires every chunk id to be 16 bytes (validated before the catalog).
std::string EncodeChunkList(const v1::NodeState& state);
// Appends the decoded chunk refs to state->chunks; DATA_LOSS on a bad blob.
absl::Status DecodeChunkList(std::string_view blob, v1::NodeState* state);

std::string EncodeXattrs(const v1::NodeState& state);
absl::Status DecodeXattrs(std::string_view blob, v1::NodeState* state);

}  // namespace replifs::server
