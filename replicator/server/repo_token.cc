#include "replicator/server/repo_token.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replicator/server/catalog.h"
#include "replicator/server/request_validation.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {

constexpr size_t kTokenBytes = 32;
constexpr size_t kChunkSecretBytes = 32;

absl::StatusOr<std::string> RandomBytes(size_t size) {
  std::string raw(size, '\0');
  size_t filled = 0;
  while (filled < raw.size()) {
    const ssize_t n = ::getrandom(&raw[filled], raw.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  return raw;
}

absl::StatusOr<std::string> NewRepoToken() {
  absl::StatusOr<std::string> raw = RandomBytes(kTokenBytes);
  if (!raw.ok()) return raw.status();
  return absl::BytesToHexString(*raw);
}

absl::StatusOr<std::string> CreateRepoWithToken(Catalog& catalog, std::string_view name) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoName(name));
  REPLIFS_ASSIGN_OR_RETURN(const std::string secret, RandomBytes(kChunkSecretBytes));
  REPLIFS_ASSIGN_OR_RETURN(const std::string token, NewRepoToken());
  REPLIFS_RETURN_IF_ERROR(catalog.CreateRepo(name, secret, HashRepoToken(token)).status());
  return token;
}

absl::StatusOr<std::string> ResetRepoToken(Catalog& catalog, std::string_view name) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoName(name));
  REPLIFS_ASSIGN_OR_RETURN(const std::string token, NewRepoToken());
  REPLIFS_RETURN_IF_ERROR(catalog.SetRepoTokenHash(name, HashRepoToken(token)));
  return token;
}

std::string HashRepoToken(std::string_view token) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

bool RepoTokenMatches(std::string_view stored_hash, std::string_view token) {
  if (stored_hash.size() != SHA256_DIGEST_LENGTH || token.empty()) return false;
  const std::string hash = HashRepoToken(token);
  return CRYPTO_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

}  // namespace replifs::server
