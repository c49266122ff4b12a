// replifs-shim-trace DIR [SECONDS] [--quiet] [--fanotify]: protects DIR with
// the eBPF shim (no daemon, no overlay) and prints each record as the shim
// reader decodes it, then the counters. --fanotify adds the daemon's
// fanotify backstop ("fanotify path=..." lines). For tests and bench/shim.
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <mutex>
#include <thread>

#include <fcntl.h>

#include "absl/strings/str_cat.h"
#include "kmod-shim/bpf/bpf_shim.h"
#include "kmod-shim/reader/fanotify_backstop.h"
#include "kmod-shim/reader/fs_path.h"
#include "kmod-shim/reader/shim_record.h"

namespace {
std::atomic<bool> g_stop{false};
std::mutex g_out;  // the shim and fanotify threads both print whole lines
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: replifs-shim-trace DIR [SECONDS] [--quiet]\n";
    return 2;
  }
  const std::string dir = argv[1];
  double seconds = argc > 2 ? std::atof(argv[2]) : 1e9;
  bool quiet = false, with_fanotify = false;
  for (int i = 3; i < argc; ++i) {
    quiet |= std::strcmp(argv[i], "--quiet") == 0;
    with_fanotify |= std::strcmp(argv[i], "--fanotify") == 0;
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::cerr << "replifs-shim-trace: " << dir << " is not a directory\n";
    return 1;
  }
  auto fs_path = replifs::shim::PathInFilesystem(dir);
  if (!fs_path.ok()) {
    std::cerr << "replifs-shim-trace: " << fs_path.status() << "\n";
    return 1;
  }
  replifs_shim_config config{};
  config.daemon_tgid = getpid();
  config.nroots = 1;
  config.roots[0] = {major(st.st_dev), minor(st.st_dev), st.st_ino};
  const replifs::shim::RootFsPaths roots = {*fs_path};
  uint64_t records = 0, bad = 0;
  auto shim = replifs::shim::BpfShim::Start(config, [&](const void* data, size_t size) {
    ++records;
    auto record = replifs::shim::ParseRecord(data, size, roots);
    if (!record.ok()) {
      ++bad;
      std::cerr << "replifs-shim-trace: " << record.status() << "\n";
      return;
    }
    if (quiet) return;
    std::lock_guard<std::mutex> lock(g_out);
    std::cout << "pid=" << record->header.pid << " " << replifs::shim::Describe(*record);
    for (const auto& e : replifs::shim::ToChangeEvents(*record)) {
      std::cout << " -> " << replifs::v1::ChangeEvent::Op_Name(e.op()) << "(" << e.path()
                << (e.new_path().empty() ? "" : " -> " + e.new_path()) << ")";
    }
    std::cout << std::endl;
  });
  if (!shim.ok()) {
    std::cerr << "replifs-shim-trace: " << shim.status() << "\n";
    return 1;
  }
  std::unique_ptr<replifs::shim::FanotifyBackstop> fanotify;
  std::atomic<uint64_t> fan_changes{0};
  int root_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (with_fanotify) {
    auto fan = replifs::shim::FanotifyBackstop::Start(
        root_fd, getpid(),
        [&](const std::string& path, uint64_t, uint32_t pid) {
          ++fan_changes;
          std::lock_guard<std::mutex> lock(g_out);
          if (!quiet) std::cout << "pid=" << pid << " fanotify path=" << path << std::endl;
        },
        nullptr);
    if (!fan.ok()) {
      std::cerr << "replifs-shim-trace: " << fan.status() << "\n";
      return 1;
    }
    fanotify = *std::move(fan);
  }
  // fanotify in its own thread, as in the daemon (its Poll waits and batches).
  std::thread fan_thread;
  if (fanotify) {
    fan_thread = std::thread([&] {
      while (!g_stop) {
        if (auto s = fanotify->Poll(100); !s.ok()) std::cerr << "replifs-shim-trace: " << s << "\n";
      }
    });
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  std::cerr << "replifs-shim-trace: protecting " << dir << " ("
            << ((*shim)->raw() ? "raw sys_enter/sys_exit" : absl::StrCat((*shim)->attached(), " tracepoints"))
            << (fanotify ? absl::StrCat(", fanotify on ", fanotify->marks(), " directories") : "") << ")" << std::endl;
  auto start = std::chrono::steady_clock::now();
  while (!g_stop && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    if (auto s = (*shim)->Poll(100); !s.ok()) std::cerr << "replifs-shim-trace: " << s << "\n";
  }
  if (fan_thread.joinable()) fan_thread.join();
  if (fanotify) (void)fanotify->Poll(0);
  (void)(*shim)->Poll(0);
  std::cerr << "replifs-shim-trace: records=" << records << " bad=" << bad << " dropped=" << (*shim)->dropped()
            << " untracked=" << (*shim)->untracked() << " unresolved=" << (*shim)->unresolved()
            << " vma_busy=" << (*shim)->vma_busy()
            << " fanotify=" << fan_changes << " fanotify_overflows=" << (fanotify ? fanotify->overflows() : 0)
            << std::endl;
  return bad == 0 ? 0 : 1;
}
