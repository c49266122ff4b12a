#include "replicator/server/zstd_or_raw.h"

#include <zstd.h>

namespace replifs::server {
namespace {
constexpr int kZstdLevel = 3;
}  // namespace

bool AppendZstdOrRaw(std::string_view data, std::string* out) {
  const size_t start = out->size();
  const size_t bound = ZSTD_compressBound(data.size());
  out->resize(start + bound);
  const size_t compressed = ZSTD_compress(&(*out)[start], bound, data.data(), data.size(), kZstdLevel);
  if (!ZSTD_isError(compressed) && compressed < data.size()) {
    out->resize(start + compressed);
    return true;
  }
  out->resize(start);
  out->append(data.data(), data.size());
  return false;
}

}  // namespace replifs::server
