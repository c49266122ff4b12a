// Chunker throughput next to raw XXH3-128 on the same buffer: FastCDC
// boundary search, keyed chunk ids, and both together (what the client does
// per byte it reads). Median of several runs; one core.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "replicator/chunker/chunker.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double MedianGBps(size_t bytes, int runs, F&& body) {
  std::vector<double> rates;
  for (int i = 0; i < runs; ++i) {
    auto start = Clock::now();
    body();
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(bytes / seconds / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace

int main() {
  using namespace replifs::chunker;
  const size_t size = 256 << 20;
  std::vector<uint8_t> data(size);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = rng();
    std::copy_n(reinterpret_cast<uint8_t*>(&v), 8, data.data() + i);
  }
  const int runs = 5;
  volatile uint64_t sink = 0;

  double raw = MedianGBps(size, runs, [&] {
    // Raw XXH3-128 over 64 KiB pieces (the average chunk size).
    for (size_t off = 0; off < size; off += 64 << 10) sink = sink + XXH3_128bits(data.data() + off, 64 << 10).low64;
  });
  ChunkIdHasher hasher("bench secret");
  double keyed = MedianGBps(size, runs, [&] {
    for (size_t off = 0; off < size; off += 64 << 10) {
      sink = sink + hasher.Hash(std::span<const uint8_t>(data.data() + off, 64 << 10)).bytes[0];
    }
  });
  size_t chunks = 0;
  double cdc = MedianGBps(size, runs, [&] { chunks = ChunkBuffer(data).size(); });
  double both = MedianGBps(size, runs, [&] {
    for (const ChunkSpan& c : ChunkBuffer(data)) {
      sink = sink + hasher.Hash(std::span<const uint8_t>(data.data() + c.offset, c.length)).bytes[0];
    }
  });

  std::printf("%-34s %10s %8s\n", "one core, 256 MiB random data", "GB/s", "vs XXH3");
  std::printf("%-34s %10.2f %8.2f\n", "XXH3-128 (baseline)", raw, 1.0);
  std::printf("%-34s %10.2f %8.2f\n", "chunk ids (keyed XXH3-128)", keyed, keyed / raw);
  std::printf("%-34s %10.2f %8.2f\n", "FastCDC boundaries", cdc, cdc / raw);
  std::printf("%-34s %10.2f %8.2f\n", "FastCDC + chunk ids", both, both / raw);
  std::printf("chunks: %zu, mean size %.1f KiB\n", chunks, size / 1024.0 / chunks);
  return 0;
}
