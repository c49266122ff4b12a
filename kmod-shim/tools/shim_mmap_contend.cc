// shim-mmap-contend FILE [SECONDS]: stores through a shared writable mapping
// of FILE and msyncs it in a loop while a second thread mprotects a large
// region (it holds the mmap lock for writing), so the eBPF shim's
// bpf_find_vma meets a busy lock (its `vma_busy` count). Then closes and
// unmaps: fanotify's FAN_CLOSE_WRITE must still name FILE. Prints the number
// of msync calls made. For tests/shim_trace_test.sh and ShimTest.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: shim-mmap-contend FILE [SECONDS]\n");
    return 2;
  }
  const double seconds = argc == 3 ? atof(argv[2]) : 1.0;
  const size_t size = 4096;
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ftruncate(fd, size) != 0) {
    perror(argv[1]);
    return 1;
  }
  char* map = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  // mprotect of a large populated region holds the mmap lock for writing
  // while it walks every page table entry: long enough to be met.
  const size_t big = 64 << 20;
  void* region = mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (region == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  std::atomic<bool> stop{false};
  std::thread contender([&] {
    for (int i = 0; !stop; ++i) mprotect(region, big, i % 2 ? PROT_READ | PROT_WRITE : PROT_READ);
  });
  long syncs = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    map[syncs % size] = static_cast<char>('a' + syncs % 26);
    if (msync(map, size, MS_ASYNC) != 0) {
      perror("msync");
      break;
    }
    ++syncs;
  }
  stop = true;
  contender.join();
  munmap(region, big);
  memcpy(map, "contended", 9);  // the last bytes: only the close (fanotify) or munmap can name them
  close(fd);
  munmap(map, size);
  printf("%ld\n", syncs);
  return 0;
}
