// The chunk list of a large file as a tree of content-addressed pages
// (FORMAT.md, "Chunk-list pages"). Page boundaries are chosen by the ids
// they follow (content-defined), so an edit that replaces, inserts or
// removes a few chunks changes only the pages on the path to them: a 4 KiB
// edit of a huge file writes O(depth) small pages, not the whole list.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replicator/server/page_store.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::server {

// Lists up to this many chunks stay inline in the catalog row.
inline constexpr int kMaxInlineChunks = 64;

// Writes the pages of state.chunks() that `pages` does not hold yet and
// returns the 16-byte root page id. `pages_written` counts new pages.
absl::StatusOr<std::string> WriteChunkTree(PageStore& pages, int64_t repo_id,
                                           const v1::NodeState& state, int* pages_written = nullptr);

// Appends the chunk refs under `root` to state->chunks. Every page is
// re-hashed against its id; DATA_LOSS on any inconsistency.
absl::Status ReadChunkTree(PageStore& pages, int64_t repo_id, std::string_view root,
                           v1::NodeState* state);

// Visits every page id and chunk id under `root`, skipping subtrees whose
// page is already in *seen_pages (which it extends): shared pages of many
// versions are read once.
absl::Status WalkChunkTree(PageStore& pages, int64_t repo_id, std::string_view root,
                           absl::flat_hash_set<std::string>* seen_pages,
                           const std::function<void(const std::string& chunk_id)>& on_chunk);

// The id of page bytes: XXH3-128 (unkeyed), big-endian.
std::string PageId(std::string_view page);
// Checks a stored page's header and record count; the scrub.
absl::Status CheckPage(std::string_view page);

}  // namespace replifs::server
