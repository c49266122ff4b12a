#include "replicator/server/version_codec.h"

#include <cstdint>

namespace replifs::server {
namespace {

constexpr size_t kChunkIdSize = 16;
constexpr size_t kChunkRecordSize = kChunkIdSize + 4;

void PutU32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

// Reads a u32-length-prefixed byte string from the front of *in.
bool TakeLengthPrefixed(std::string_view* in, std::string* out) {
  if (in->size() < 4) return false;
  const uint32_t length = GetU32(*in);
  in->remove_prefix(4);
  if (in->size() < length) return false;
  out->assign(in->substr(0, length));
  in->remove_prefix(length);
  return true;
}

}  // namespace

std::string EncodeChunkList(const v1::NodeState& state) {
  std::string blob;
  blob.reserve(state.chunks_size() * kChunkRecordSize);
  for (const v1::ChunkRef& chunk : state.chunks()) {
    blob.append(chunk.id());
    PutU32(&blob, chunk.length());
  }
  return blob;
}

absl::Status DecodeChunkList(std::string_view blob, v1::NodeState* state) {
  if (blob.size() % kChunkRecordSize != 0) {
    return absl::DataLossError("catalog: malformed chunk list");
  }
  for (; !blob.empty(); blob.remove_prefix(kChunkRecordSize)) {
    v1::ChunkRef* chunk = state->add_chunks();
    chunk->set_id(std::string(blob.substr(0, kChunkIdSize)));
    chunk->set_length(GetU32(blob.substr(kChunkIdSize)));
  }
  return absl::OkStatus();
}

std::string EncodeXattrs(const v1::NodeState& state) {
  std::string blob;
  for (const v1::Xattr& xattr : state.xattrs()) {
    PutU32(&blob, static_cast<uint32_t>(xattr.name().size()));
    blob.append(xattr.name());
    PutU32(&blob, static_cast<uint32_t>(xattr.value().size()));
    blob.append(xattr.value());
  }
  return blob;
}

absl::Status DecodeXattrs(std::string_view blob, v1::NodeState* state) {
  while (!blob.empty()) {
    v1::Xattr* xattr = state->add_xattrs();
    if (!TakeLengthPrefixed(&blob, xattr->mutable_name()) ||
        !TakeLengthPrefixed(&blob, xattr->mutable_value())) {
      return absl::DataLossError("catalog: malformed xattrs");
    }
  }
  return absl::OkStatus();
}

}  // namespace replifs::server
