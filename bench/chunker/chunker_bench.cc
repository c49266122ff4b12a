// Chunker throughput next to raw XXH3-128 on the same buffer: FastCDC
// boundary search, keyed chunk ids, and both together (each chunk hashed as
// soon as it is cut, as the client does). Median of several runs; one core.
// Rates per second of this thread's CPU time (the "per core" figure, steady
// on a shared machine) and per second of wall time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <time.h>
#include <vector>

#include "replicator/chunker/chunker.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace {

using Clock = std::chrono::steady_clock;

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct Rate {
  double cpu = 0;   // GB per CPU second
  double wall = 0;  // GB per wall second
};

template <typename F>
Rate MedianGBps(size_t bytes, int runs, F&& body) {
  std::vector<double> cpu, wall;
  for (int i = 0; i < runs; ++i) {
    auto start = Clock::now();
    double cpu_start = ThreadCpuSeconds();
    body();
    cpu.push_back(bytes / (ThreadCpuSeconds() - cpu_start) / 1e9);
    wall.push_back(bytes / std::chrono::duration<double>(Clock::now() - start).count() / 1e9);
  }
  std::sort(cpu.begin(), cpu.end());
  std::sort(wall.begin(), wall.end());
  return {cpu[cpu.size() / 2], wall[wall.size() / 2]};
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

  Rate raw = MedianGBps(size, runs, [&] {
    // Raw XXH3-128 over 64 KiB pieces (the average chunk size).
    for (size_t off = 0; off < size; off += 64 << 10) sink = sink + XXH3_128bits(data.data() + off, 64 << 10).low64;
  });
  ChunkIdHasher hasher("bench secret");
  Rate keyed = MedianGBps(size, runs, [&] {
    for (size_t off = 0; off < size; off += 64 << 10) {
      sink = sink + hasher.Hash(std::span<const uint8_t>(data.data() + off, 64 << 10)).bytes[0];
    }
  });
  size_t chunks = 0;
  Rate cdc = MedianGBps(size, runs, [&] { chunks = ChunkBuffer(data).size(); });
  Rate both = MedianGBps(size, runs, [&] {
    // Hash each chunk right after cutting it, while it is still in cache.
    std::span<const uint8_t> all(data);
    for (size_t offset = 0; offset < size;) {
      size_t length = NextChunkLength(all.subspan(offset), {}, /*at_end=*/true);
      sink = sink + hasher.Hash(all.subspan(offset, length)).bytes[0];
      offset += length;
    }
  });

  std::printf("%-34s %10s %8s %10s\n", "one core, 256 MiB random data", "GB/cpu-s", "vs XXH3", "GB/wall-s");
  auto row = [&](const char* name, Rate r) {
    std::printf("%-34s %10.2f %8.2f %10.2f\n", name, r.cpu, r.cpu / raw.cpu, r.wall);
  };
  row("XXH3-128 (baseline)", raw);
  row("chunk ids (keyed XXH3-128)", keyed);
  row("FastCDC boundaries", cdc);
  row("FastCDC + chunk ids", both);
  std::printf("target: FastCDC + chunk ids >= 1 GB/s per core: %s\n", both.cpu >= 1.0 ? "MET" : "MISSED");
  std::printf("chunks: %zu, mean size %.1f KiB\n", chunks, size / 1024.0 / chunks);
  return 0;
}
