// shim-dev-probe DIR STOPFILE: the VM test's reader for the loadable module.
// Protects DIR through /dev/replifs_shim (ioctl SET_CONFIG), prints each
// record as the daemon's own reader decodes it ("EVENT OP path [-> new]")
// (STOPFILE.ready once protecting) until STOPFILE exists, then switches protection off (ioctl CLEAR), prints
// "PROTECTION OFF" (STOPFILE.cleared), and keeps reading until STOPFILE.off exists: any record
// after that line is a failure the host test sees.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "kmod-shim/reader/fs_path.h"
#include "kmod-shim/reader/shim_record.h"

namespace {

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

int Drain(int fd, const replifs::shim::RootFsPaths& roots) {
  std::vector<char> buf(1 << 20);
  int n_records = 0;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n <= 0) return n_records;
    auto records = replifs::shim::ParseRecords(buf.data(), n, roots);
    if (!records.ok()) {
      std::cout << "BAD " << records.status() << std::endl;
      continue;
    }
    for (const auto& record : *records) {
      ++n_records;
      std::cout << "RECORD " << replifs::shim::Describe(record) << std::endl;
      for (const auto& e : replifs::shim::ToChangeEvents(record)) {
        std::cout << "EVENT " << replifs::v1::ChangeEvent::Op_Name(e.op()) << " " << e.path()
                  << (e.new_path().empty() ? "" : " -> " + e.new_path()) << std::endl;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
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
  int fd = open(REPLIFS_SHIM_DEVICE, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    perror("shim-dev-probe: " REPLIFS_SHIM_DEVICE);
    return 1;
  }
  replifs_shim_config config{};
  config.daemon_tgid = getpid();
  config.nroots = 1;
  config.roots[0] = {major(st.st_dev), minor(st.st_dev), st.st_ino};
  if (ioctl(fd, REPLIFS_SHIM_IOC_SET_CONFIG, &config) != 0) {
    perror("shim-dev-probe: SET_CONFIG");
    return 1;
  }
  const replifs::shim::RootFsPaths roots = {*fs_path};
  std::cout << "PROTECTING " << dir << std::endl;
  close(open((stop + ".ready").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));  // the workload may start
  while (!Exists(stop)) {
    Drain(fd, roots);
    usleep(50 * 1000);
  }
  Drain(fd, roots);
  if (ioctl(fd, REPLIFS_SHIM_IOC_CLEAR) != 0) {
    perror("shim-dev-probe: CLEAR");
    return 1;
  }
  std::cout << "PROTECTION OFF" << std::endl;
  close(open((stop + ".cleared").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  while (!Exists(stop + ".off")) {
    Drain(fd, roots);
    usleep(50 * 1000);
  }
  Drain(fd, roots);
  close(fd);
  std::cout << "PROBE DONE" << std::endl;
  return 0;
}
