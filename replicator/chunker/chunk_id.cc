#include <cstdio>

#include "replicator/chunker/chunker.h"

// Inlined: the secret-based XXH3 API is "experimental" (tied to a library
// version), so we compile it in rather than depend on the .so's ABI.
#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

namespace replifs::chunker {

static_assert(sizeof(ChunkIdHasher) >= XXH3_SECRET_SIZE_MIN, "secret buffer too small for XXH3");

std::string ChunkId::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(32, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    hex[2 * i] = kDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return hex;
}

bool ChunkId::FromBytes(std::string_view raw, ChunkId* out) {
  if (raw.size() != out->bytes.size()) return false;
  std::copy(raw.begin(), raw.end(), out->bytes.begin());
  return true;
}

ChunkIdHasher::ChunkIdHasher(std::string_view repository_secret) {
  // An empty seed is allowed; a null pointer with size 0 is not.
  static const char kEmpty = 0;
  const void* seed = repository_secret.empty() ? &kEmpty : repository_secret.data();
  XXH3_generateSecret(secret_.data(), secret_.size(), seed, repository_secret.size());
}

ChunkId ChunkIdHasher::Hash(std::span<const uint8_t> data) const {
  XXH128_hash_t digest =
      XXH3_128bits_withSecret(data.data(), data.size(), secret_.data(), secret_.size());
  XXH128_canonical_t canonical;  // big-endian, stable across platforms
  XXH128_canonicalFromHash(&canonical, digest);
  ChunkId id;
  std::copy(std::begin(canonical.digest), std::end(canonical.digest), id.bytes.begin());
  return id;
}

}  // namespace replifs::chunker
