// shim-dev-probe DIR STOPFILE: the VM test's reader for the loadable module.
// Protects DIR through /dev/replifs_shim (ioctl SET_CONFIG), prints each
// record as the daemon's own reader decodes it ("EVENT OP path [-> new]")
// (STOPFILE.ready once protecting) until STOPFILE exists, then switches protection off (ioctl CLEAR), prints
// "PROTECTION OFF" (STOPFILE.cleared), and keeps reading until STOPFILE.off exists: any record
// after that line is a failure the host test sees.
// shim-dev-probe --mmap-write FILE: the workload's shared-mapping writer
// (creates FILE, stores through a MAP_SHARED mapping, msync, close while
// mapped, munmap), so the VM test sees the mapping hooks.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "kmod-shim/reader/fs_path.h"
#include "kmod-shim/reader/module_shim.h"
#include "kmod-shim/reader/shim_record.h"

namespace {

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

void Print(const void* data, size_t size, const replifs::shim::RootFsPaths& roots) {
  auto records = replifs::shim::ParseRecords(data, size, roots);
  if (!records.ok()) {
    std::cout << "BAD " << records.status() << std::endl;
    return;
  }
  for (const auto& record : *records) {
    std::cout << "RECORD " << replifs::shim::Describe(record) << std::endl;
    for (const auto& e : replifs::shim::ToChangeEvents(record)) {
      std::cout << "EVENT " << replifs::v1::ChangeEvent::Op_Name(e.op()) << " " << e.path()
                << (e.new_path().empty() ? "" : " -> " + e.new_path()) << std::endl;
    }
  }
}

// open(O_CREAT) + ftruncate, then stores that only a mapping hook can see.
int MmapWrite(const char* path) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ftruncate(fd, 4096) != 0) {
    perror(path);
    return 1;
  }
  void* map = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  memcpy(map, "stored through a shared mapping\n", 32);
  if (msync(map, 4096, MS_SYNC) != 0) perror("msync");
  close(fd);  // still mapped: the close hook names the file too
  if (munmap(map, 4096) != 0) perror("munmap");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--mmap-write") == 0) return MmapWrite(argv[2]);
  if (argc != 3) {
    std::cerr << "usage: shim-dev-probe DIR STOPFILE\n";
    return 2;
  }
  const std::string dir = argv[1], stop = argv[2];
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    std::cerr << "shim-dev-probe: " << dir << ": not found\n";
    return 1;
  }
  auto fs_path = replifs::shim::PathInFilesystem(dir);
  if (!fs_path.ok()) {
    std::cerr << "shim-dev-probe: " << fs_path.status() << "\n";
    return 1;
  }
  // The daemon's choice and its module reader (kmod-shim/reader/module_shim.h).
  const replifs::shim::ShimKind kind = replifs::shim::ChooseShim(getenv("REPLIFS_SHIM"));
  std::cout << "IMPLEMENTATION " << replifs::shim::ShimKindName(kind) << std::endl;
  if (kind != replifs::shim::ShimKind::kModule) return 1;
  replifs_shim_config config{};
  config.daemon_tgid = getpid();
  config.nroots = 1;
  config.roots[0] = {major(st.st_dev), minor(st.st_dev), st.st_ino};
  const replifs::shim::RootFsPaths roots = {*fs_path};
  auto shim = replifs::shim::ModuleShim::Start(config, [&roots](const void* data, size_t size) { Print(data, size, roots); });
  if (!shim.ok()) {
    std::cerr << "shim-dev-probe: " << shim.status() << "\n";
    return 1;
  }
  std::cout << "PROTECTING " << dir << std::endl;
  close(open((stop + ".ready").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));  // the workload may start
  while (!Exists(stop)) (void)(*shim)->Poll(50);
  (void)(*shim)->Poll(0);
  if (absl::Status s = (*shim)->Stop(); !s.ok()) {
    std::cerr << "shim-dev-probe: " << s << "\n";
    return 1;
  }
  std::cout << "PROTECTION OFF" << std::endl;
  close(open((stop + ".cleared").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  while (!Exists(stop + ".off")) (void)(*shim)->Poll(50);
  (void)(*shim)->Poll(0);
  std::cout << "DROPPED " << (*shim)->dropped() << std::endl;
  shim->reset();
  std::cout << "PROBE DONE" << std::endl;
  return 0;
}
