// The fuzzer's input format: a script of calls to replifs.v1.Backup. Each
// call is [method u8][flags u8][length u16 LE][payload]; the payload is the
// serialized request, or for UploadChunks a sequence of [length u16 LE]
// [serialized ChunkUpload]. Decoding never fails: a truncated tail is dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace replifs::fuzz {

enum class Method : uint8_t {
  kHello = 0,
  kMissingChunks,
  kUploadChunks,
  kApply,
  kList,
  kReadChunks,
  kListVersions,
  kCount,
};

// Flags. Zero is the well-behaved client, so seeds reach deep code and the
// fuzzer flips bits to leave it.
inline constexpr uint8_t kWrongToken = 1 << 0;  // a token of the right form, not the repo's
inline constexpr uint8_t kNoToken = 1 << 1;
inline constexpr uint8_t kKeepRepo = 1 << 2;  // keep the request's repo name (else: the fuzz repo)
inline constexpr uint8_t kNoFixups = 1 << 3;  // send chunk ids and lengths exactly as given

// Fix-ups (without kNoFixups): an upload's id and length are set from its
// uncompressed data and the repo secret, so the fuzzer can store chunks; a
// one-byte chunk id anywhere else names the (byte % n)-th chunk stored so far.
struct Call {
  Method method = Method::kHello;
  uint8_t flags = 0;
  std::string request;               // serialized request (all but UploadChunks)
  std::vector<std::string> uploads;  // serialized ChunkUpload messages (UploadChunks)
};

std::string EncodeScript(const std::vector<Call>& calls);
std::vector<Call> DecodeScript(const uint8_t* data, size_t size);

}  // namespace replifs::fuzz
