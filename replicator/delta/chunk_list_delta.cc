#include "replicator/delta/chunk_list_delta.h"

#include <xxhash.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace replifs::delta {
namespace {

bool SameRef(const v1::ChunkRef& a, const v1::ChunkRef& b) {
  return a.length() == b.length() && a.id() == b.id();
}

uint64_t ListSize(const ChunkList& list) {
  uint64_t size = 0;
  for (const v1::ChunkRef& ref : list) size += ref.length();
  return size;
}

std::string Printable(const std::string& path) { return absl::CHexEscape(path); }

}  // namespace

std::string ChunkListDigest(const ChunkList& list) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  for (const v1::ChunkRef& ref : list) {
    XXH3_128bits_update(state, ref.id().data(), ref.id().size());
    const uint32_t length = ref.length();
    const uint8_t le[4] = {static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8),
                           static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 24)};
    XXH3_128bits_update(state, le, sizeof(le));
  }
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
  XXH3_freeState(state);
  return std::string(reinterpret_cast<const char*>(canonical.digest), sizeof(canonical.digest));
}

v1::ChunkListDelta MakeChunkListDelta(const ChunkList& base, const ChunkList& target) {
  v1::ChunkListDelta delta;
  delta.set_base_digest(ChunkListDigest(base));
  delta.set_base_count(base.size());
  delta.set_base_size(ListSize(base));
  delta.set_digest(ChunkListDigest(target));
  // Where each base id occurs, ascending, to resynchronize after a change.
  std::unordered_map<std::string, std::vector<int>> positions;
  for (int i = 0; i < base.size(); ++i) positions[base[i].id()].push_back(i);
  auto next_match = [&](const v1::ChunkRef& ref, int from) {
    auto found = positions.find(ref.id());
    if (found == positions.end()) return -1;
    const std::vector<int>& at = found->second;
    auto it = std::lower_bound(at.begin(), at.end(), from);
    for (; it != at.end(); ++it) {
      if (SameRef(base[*it], ref)) return *it;
    }
    return -1;
  };
  int i = 0;
  v1::ChunkListSplice* open = nullptr;  // the splice being collected
  for (int j = 0; j < target.size(); ++j) {
    if (i < base.size() && SameRef(base[i], target[j])) {
      open = nullptr;
      ++i;
      continue;
    }
    int k = next_match(target[j], i);  // > i when found: base[i] differs
    // An entry equal to one further on (zeros, repeated blocks) is not a
    // reason to drop everything up to it when the next entry resumes here
    // (target[j] replaced or was inserted before base[i]).
    if (k > i && j + 1 < target.size() &&
        (SameRef(target[j + 1], base[i]) || (i + 1 < base.size() && SameRef(target[j + 1], base[i + 1])))) {
      k = -1;
    }
    if (open == nullptr) {
      open = delta.add_splices();
      open->set_start(i);
    }
    if (k >= 0) {
      // Base entries i..k-1 are gone; target[j] is base[k]: close the splice.
      open->set_remove(k - open->start());
      i = k + 1;
      open = nullptr;
      continue;
    }
    *open->add_chunks() = target[j];
    open->set_remove(i - open->start());
  }
  if (i < base.size()) {  // the tail of the base is gone
    if (open == nullptr) {
      open = delta.add_splices();
      open->set_start(i);
    }
    open->set_remove(base.size() - open->start());
  }
  return delta;
}

absl::Status ApplyChunkListDelta(const ChunkList& base, const v1::ChunkListDelta& delta,
                                 const std::string& path, ChunkList* out) {
  const uint64_t base_size = ListSize(base);
  if (delta.base_count() != static_cast<uint64_t>(base.size()) || delta.base_size() != base_size ||
      delta.base_digest() != ChunkListDigest(base)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "chunk-list base of \"", Printable(path), "\" does not match: the server holds ",
        base.size(), " chunks of ", base_size, " bytes, the delta names ", delta.base_count(),
        " chunks of ", delta.base_size(), " bytes"));
  }
  out->Clear();
  uint64_t next = 0;  // first base entry not yet copied or replaced
  for (const v1::ChunkListSplice& splice : delta.splices()) {
    if (splice.start() < next || splice.start() > delta.base_count() ||
        splice.remove() > delta.base_count() - splice.start()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk-list delta of \"", Printable(path), "\": splice [", splice.start(), ", +",
          splice.remove(), ") is out of order or beyond the ", base.size(), " base chunks"));
    }
    for (; next < splice.start(); ++next) *out->Add() = base[static_cast<int>(next)];
    for (const v1::ChunkRef& ref : splice.chunks()) *out->Add() = ref;
    next = splice.start() + splice.remove();
  }
  for (; next < static_cast<uint64_t>(base.size()); ++next) *out->Add() = base[static_cast<int>(next)];
  if (ChunkListDigest(*out) != delta.digest()) {
    out->Clear();
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk-list delta of \"", Printable(path), "\" does not produce the list it names"));
  }
  return absl::OkStatus();
}

}  // namespace replifs::delta
