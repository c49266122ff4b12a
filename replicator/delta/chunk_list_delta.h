// A file's chunk list sent as splices of the list the server already holds
// (ChunkListDelta in backup.proto): a 4 KiB edit of a 1 GiB file (16,384
// chunks) sends one splice of one or two refs instead of ~400 KB of refs.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::delta {

using ChunkList = google::protobuf::RepeatedPtrField<v1::ChunkRef>;

// XXH3-128 (unkeyed, big-endian) over each entry's id then its length as 4
// bytes little-endian: names a list exactly, order included.
std::string ChunkListDigest(const ChunkList& list);

// Splices turning `base` into `target`: equal entries are kept in order,
// everything else is replaced. Linear in the lists' lengths.
v1::ChunkListDelta MakeChunkListDelta(const ChunkList& base, const ChunkList& target);

// The list `delta` describes, given the server's `base`. FAILED_PRECONDITION
// ("chunk-list base ...") if `base` is not the list the delta was made from
// (the client sends the full list then); INVALID_ARGUMENT for splices out of
// order or range, or a result that does not match the delta's digest.
// `path` only names the file in messages.
absl::Status ApplyChunkListDelta(const ChunkList& base, const v1::ChunkListDelta& delta,
                                 const std::string& path, ChunkList* out);

}  // namespace replifs::delta
