// libFuzzer target over replifs-server's request handlers: each input is a
// script of calls (request_script.h) sent to a real BackupServer with a real
// store (server_under_fuzz.h). Built with clang by the sub-build in
// tests/fuzz/CMakeLists.txt; run for a bounded time by run_fuzzer.sh.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/request_script.h"
#include "tests/fuzz/server_under_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  replifs::fuzz::ServerUnderFuzz& server = replifs::fuzz::ServerUnderFuzz::Get();
  for (const replifs::fuzz::Call& call : replifs::fuzz::DecodeScript(data, size)) server.Run(call);
  return 0;
}
