#include "replicator/server/chunk_tree.h"

#include <xxhash.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {
namespace {

constexpr char kPageMagic[4] = {'R', 'F', 'P', 'G'};
constexpr uint8_t kPageVersion = 1;
constexpr size_t kPageHeaderSize = 12;
constexpr size_t kLeafRecordSize = 16 + 4;       // chunk id, length
constexpr size_t kInnerRecordSize = 16 + 8 + 8;  // page id, chunk count, byte count
// Records per page: a cut follows a record whose id's last 32 bits are 0
// mod kCutModulus, once kMinRecords are in; kMaxRecords forces one.
constexpr uint32_t kCutModulus = 128;
constexpr size_t kMinRecords = 16;
constexpr size_t kMaxRecords = 1024;
constexpr int kMaxLevels = 8;

void PutLe(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}
uint64_t GetLe(std::string_view in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

bool IsCut(std::string_view id, size_t records) {
  if (records >= kMaxRecords) return true;
  if (records < kMinRecords) return false;
  return GetLe(id.substr(12, 4), 4) % kCutModulus == 0;
}

struct Ref {
  std::string id;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
};

std::string PageHeader(uint8_t level, size_t count) {
  std::string page(kPageMagic, 4);
  page.push_back(static_cast<char>(kPageVersion));
  page.push_back(static_cast<char>(level));
  page.append(2, '\0');
  PutLe(&page, count, 4);
  return page;
}

struct ParsedPage {
  uint8_t level = 0;
  uint32_t count = 0;
  std::string_view records;
};

absl::StatusOr<ParsedPage> ParsePage(std::string_view page) {
  if (page.size() < kPageHeaderSize || page.substr(0, 4) != std::string_view(kPageMagic, 4) ||
      static_cast<uint8_t>(page[4]) != kPageVersion || page[6] != 0 || page[7] != 0) {
    return absl::DataLossError("chunk-list page has no valid header");
  }
  ParsedPage out{static_cast<uint8_t>(page[5]), static_cast<uint32_t>(GetLe(page.substr(8), 4)),
                 page.substr(kPageHeaderSize)};
  const size_t record = out.level == 0 ? kLeafRecordSize : kInnerRecordSize;
  if (out.level >= kMaxLevels || out.count == 0 || out.count > kMaxRecords ||
      out.records.size() != out.count * record) {
    return absl::DataLossError("chunk-list page is malformed");
  }
  return out;
}

// Stores `page` unless present; returns its ref.
absl::StatusOr<std::string> StorePage(PageStore& pages, int64_t repo_id, const std::string& page,
                                      int* written) {
  std::string id = PageId(page);
  REPLIFS_ASSIGN_OR_RETURN(const bool present, pages.HasPage(repo_id, id));
  if (!present) {
    REPLIFS_RETURN_IF_ERROR(pages.PutPage(repo_id, id, page));
    if (written != nullptr) ++*written;
  }
  return id;
}

absl::StatusOr<ParsedPage> LoadPage(PageStore& pages, int64_t repo_id, std::string_view id,
                                    std::string* storage) {
  absl::StatusOr<std::string> page = pages.GetPage(repo_id, id);
  if (!page.ok()) {
    if (absl::IsNotFound(page.status())) {
      return absl::DataLossError(absl::StrCat("chunk-list page ",
                                              absl::BytesToHexString(ToAbsl(id)), " is missing"));
    }
    return page.status();
  }
  if (PageId(*page) != id) {
    return absl::DataLossError(absl::StrCat("chunk-list page ", absl::BytesToHexString(ToAbsl(id)),
                                            " does not match its id"));
  }
  *storage = std::move(*page);
  return ParsePage(*storage);
}

absl::Status Walk(PageStore& pages, int64_t repo_id, std::string_view id, int expected_level,
                  absl::flat_hash_set<std::string>* seen,
                  const std::function<void(std::string_view, uint32_t)>& on_chunk) {
  if (seen != nullptr && !seen->insert(std::string(id)).second) return absl::OkStatus();
  std::string storage;
  REPLIFS_ASSIGN_OR_RETURN(const ParsedPage page, LoadPage(pages, repo_id, id, &storage));
  if (expected_level >= 0 && page.level != expected_level) {
    return absl::DataLossError("chunk-list page is at the wrong level");
  }
  for (size_t i = 0; i < page.count; ++i) {
    if (page.level == 0) {
      const std::string_view record = page.records.substr(i * kLeafRecordSize, kLeafRecordSize);
      on_chunk(record.substr(0, 16), static_cast<uint32_t>(GetLe(record.substr(16), 4)));
    } else {
      const std::string_view record = page.records.substr(i * kInnerRecordSize, kInnerRecordSize);
      REPLIFS_RETURN_IF_ERROR(
          Walk(pages, repo_id, record.substr(0, 16), page.level - 1, seen, on_chunk));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string PageId(std::string_view page) {
  const XXH128_hash_t digest = XXH3_128bits(page.data(), page.size());
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, digest);
  return std::string(reinterpret_cast<const char*>(canonical.digest), sizeof(canonical.digest));
}

absl::Status CheckPage(std::string_view page) { return ParsePage(page).status(); }

absl::StatusOr<std::string> WriteChunkTree(PageStore& pages, int64_t repo_id,
                                           const v1::NodeState& state, int* pages_written) {
  if (state.chunks_size() == 0) return absl::InvalidArgumentError("an empty list has no tree");
  // Level 0: chunk refs, cut after content-defined ids.
  std::vector<Ref> level;
  std::string records;
  Ref current;
  size_t count = 0;
  auto flush = [&](uint8_t page_level) -> absl::Status {
    const std::string page = PageHeader(page_level, count) + records;
    REPLIFS_ASSIGN_OR_RETURN(current.id, StorePage(pages, repo_id, page, pages_written));
    level.push_back(std::move(current));
    current = Ref();
    records.clear();
    count = 0;
    return absl::OkStatus();
  };
  for (int i = 0; i < state.chunks_size(); ++i) {
    const v1::ChunkRef& chunk = state.chunks(i);
    records.append(chunk.id());
    PutLe(&records, chunk.length(), 4);
    ++count;
    ++current.chunks;
    current.bytes += chunk.length();
    if (IsCut(chunk.id(), count) || i + 1 == state.chunks_size()) REPLIFS_RETURN_IF_ERROR(flush(0));
  }
  // Inner levels until one page remains.
  for (uint8_t page_level = 1; level.size() > 1; ++page_level) {
    if (page_level >= kMaxLevels) return absl::InternalError("chunk tree too deep");
    std::vector<Ref> children = std::move(level);
    level.clear();
    for (size_t i = 0; i < children.size(); ++i) {
      const Ref& child = children[i];
      records.append(child.id);
      PutLe(&records, child.chunks, 8);
      PutLe(&records, child.bytes, 8);
      ++count;
      current.chunks += child.chunks;
      current.bytes += child.bytes;
      if (IsCut(child.id, count) || i + 1 == children.size()) REPLIFS_RETURN_IF_ERROR(flush(page_level));
    }
  }
  return level.front().id;
}

absl::Status ReadChunkTree(PageStore& pages, int64_t repo_id, std::string_view root,
                           v1::NodeState* state) {
  return Walk(pages, repo_id, root, -1, nullptr, [state](std::string_view id, uint32_t length) {
    v1::ChunkRef* chunk = state->add_chunks();
    chunk->set_id(std::string(id));
    chunk->set_length(length);
  });
}

absl::Status WalkChunkTree(PageStore& pages, int64_t repo_id, std::string_view root,
                           absl::flat_hash_set<std::string>* seen_pages,
                           const std::function<void(const std::string& chunk_id)>& on_chunk) {
  return Walk(pages, repo_id, root, -1, seen_pages,
              [&on_chunk](std::string_view id, uint32_t) { on_chunk(std::string(id)); });
}

}  // namespace replifs::server
