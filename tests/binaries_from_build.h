// Points the harness at the binaries this build made (the paths come from
// compile definitions set in tests/CMakeLists.txt). Include once per test
// executable; REPLIFS_BIN / REPLIFS_SERVER_BIN in the environment still win.
#pragma once

#include "tests/harness.h"

#ifndef REPLIFS_BIN
#error "REPLIFS_BIN must be defined by the build"
#endif
#ifndef REPLIFS_SERVER_BIN
#error "REPLIFS_SERVER_BIN must be defined by the build"
#endif

namespace replifs::test {
namespace {

const bool kBinariesSet = [] {
  Binaries().replifs = REPLIFS_BIN;
  Binaries().server = REPLIFS_SERVER_BIN;
  return true;
}();

}  // namespace
}  // namespace replifs::test
