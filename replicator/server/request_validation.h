// Checks on request fields that need no stored state. Everything a client
// sends passes through here before it reaches the catalog or the store.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::server {

inline constexpr size_t kChunkIdSize = 16;
inline constexpr size_t kMaxRepoNameSize = 255;
inline constexpr size_t kMaxJournalIdSize = 255;

// 1..255 bytes, no NUL.
absl::Status ValidateRepoName(std::string_view name);
absl::Status ValidateJournalId(std::string_view journal_id);
absl::Status ValidateChunkId(std::string_view id);

// A path relative to the protected root (paths::CheckRelativePath). The empty
// path (the root itself) is accepted only if `allow_root`.
absl::Status ValidatePath(std::string_view path, bool allow_root);

// Every operation of an Apply batch: paths, node types, chunk ids, and that a
// regular file's chunk lengths add up to its size.
absl::Status ValidateOperations(const google::protobuf::RepeatedPtrField<v1::Operation>& ops);

}  // namespace replifs::server
