// The at-rest payload rule both chunk formats share: zstd at level 3 when
// that makes the data smaller, else the data as it is (incompressible
// chunks are not stored bigger).
#pragma once

#include <string>

#include <string_view>

namespace replifs::server {

// Appends `data` to `out`, compressed if that is smaller; true if it was.
bool AppendZstdOrRaw(std::string_view data, std::string* out);

}  // namespace replifs::server
