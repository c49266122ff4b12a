#include "tests/fuzz/request_script.h"

namespace replifs::fuzz {
namespace {

void PutU16(std::string* out, size_t n) {
  out->push_back(static_cast<char>(n & 0xff));
  out->push_back(static_cast<char>((n >> 8) & 0xff));
}

bool TakeU16(const uint8_t* data, size_t size, size_t* at, size_t* n) {
  if (*at + 2 > size) return false;
  *n = data[*at] | (static_cast<size_t>(data[*at + 1]) << 8);
  *at += 2;
  return true;
}

}  // namespace

std::string EncodeScript(const std::vector<Call>& calls) {
  std::string out;
  for (const Call& call : calls) {
    std::string payload = call.request;
    if (call.method == Method::kUploadChunks) {
      payload.clear();
      for (const std::string& upload : call.uploads) {
        PutU16(&payload, upload.size());
        payload += upload;
      }
    }
    out.push_back(static_cast<char>(call.method));
    out.push_back(static_cast<char>(call.flags));
    PutU16(&out, payload.size());  // seeds stay far below 64 KiB
    out += payload;
  }
  return out;
}

std::vector<Call> DecodeScript(const uint8_t* data, size_t size) {
  std::vector<Call> calls;
  size_t at = 0;
  while (at + 4 <= size) {
    Call call;
    call.method = static_cast<Method>(data[at] % static_cast<uint8_t>(Method::kCount));
    call.flags = data[at + 1];
    at += 2;
    size_t length = 0;
    TakeU16(data, size, &at, &length);
    if (at + length > size) length = size - at;  // a truncated last call keeps what is there
    const uint8_t* payload = data + at;
    at += length;
    if (call.method != Method::kUploadChunks) {
      call.request.assign(reinterpret_cast<const char*>(payload), length);
    } else {
      size_t p = 0;
      size_t n = 0;
      while (TakeU16(payload, length, &p, &n)) {
        if (p + n > length) n = length - p;
        call.uploads.emplace_back(reinterpret_cast<const char*>(payload + p), n);
        p += n;
      }
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

}  // namespace replifs::fuzz
