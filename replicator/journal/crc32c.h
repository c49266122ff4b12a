// CRC-32C (Castagnoli), the checksum of journal records. Table-driven and
// portable: the journal checksums small records, so speed is not the point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace replifs::journal {

// Extends `crc` (the CRC-32C of some earlier bytes, 0 for none) with `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

}  // namespace replifs::journal
