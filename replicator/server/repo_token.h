// Repository tokens: 32 random bytes shown once as 64 hex digits. The server
// keeps only SHA-256(token), so a copy of the store does not let anyone in.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace replifs::server {

class Catalog;

// `size` bytes from getrandom(2).
absl::StatusOr<std::string> RandomBytes(size_t size);
// A fresh token from getrandom(2), as 64 lower-case hex digits.
absl::StatusOr<std::string> NewRepoToken();
// SHA-256 of the token text (32 raw bytes).
std::string HashRepoToken(std::string_view token);
// Creates repository `name` with a fresh chunk secret and token; returns the
// token (shown once: only its hash is stored). ALREADY_EXISTS if it exists.
absl::StatusOr<std::string> CreateRepoWithToken(Catalog& catalog, std::string_view name);
// Replaces the token of an existing repository; returns the new one.
absl::StatusOr<std::string> ResetRepoToken(Catalog& catalog, std::string_view name);
// Constant-time comparison of HashRepoToken(token) with `stored_hash`; false
// if no hash is stored.
bool RepoTokenMatches(std::string_view stored_hash, std::string_view token);

}  // namespace replifs::server
