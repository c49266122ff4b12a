// The FUSE daemon for the fsx tests, in its own process: mounts fusefs over
// DIR and appends one line per ChangeEvent to EVENTS, so a test's workload
// never shares an address space with the daemon (a dirty shared mapping
// unmapped in the daemon's own mm can deadlock it) and a hang can be ended
// by aborting the connection and killing this process.
//
//   fsx_mount DIR EVENTS [--writeback]
//
// Prints "ready" on stdout once the mount is live; exits 0 after unmount.
// Event lines: "<op> <offset> <length> <new_size> <size> <mtime_ns> <path>",
// size and mtime_ns from the attributes after the change.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "fusefs/passthrough_fs.h"

namespace {

using replifs::v1::ChangeEvent;

class LineSink : public replifs::fusefs::EventSink {
 public:
  explicit LineSink(int fd) : fd_(fd) {}
  // One write() per event, before the reply: once the syscall that caused
  // it returns, its line is in the file.
  void OnChange(ChangeEvent e) override {
    const auto& a = e.attributes();
    std::string line = std::to_string(static_cast<int>(e.op())) + " " +
                       std::to_string(e.offset()) + " " + std::to_string(e.length()) + " " +
                       std::to_string(e.new_size()) + " " + std::to_string(a.size()) + " " +
                       std::to_string(a.mtime_ns()) + " " + e.path() + "\n";
    if (write(fd_, line.data(), line.size()) != ssize_t(line.size())) _exit(3);
  }
  void OnDurabilityBarrier() override {}

 private:
  const int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fsx_mount DIR EVENTS [--writeback]\n");
    return 2;
  }
  const bool writeback = argc > 3 && strcmp(argv[3], "--writeback") == 0;
  int events = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int root = open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (events < 0 || root < 0) {
    fprintf(stderr, "fsx_mount: %s: %s\n", events < 0 ? argv[2] : argv[1], strerror(errno));
    return 1;
  }
  LineSink sink(events);
  replifs::fusefs::MountOptions options;
  options.mountpoint = argv[1];
  options.backing_root_fd = root;
  options.writeback_cache = writeback;
  options.fsname = "replifs-fsx";
  // Not fuse.replifs: `replifs mount` (other tests) detaches those it finds no daemon for.
  options.subtype = "replifs-test";
  auto fs = replifs::fusefs::PassthroughFs::Mount(options, &sink);
  if (!fs.ok()) {
    fprintf(stderr, "fsx_mount: %s\n", std::string(fs.status().message()).c_str());
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  absl::Status run = (*fs)->Run();
  (*fs)->Unmount();
  if (!run.ok()) {
    fprintf(stderr, "fsx_mount: %s\n", std::string(run.message()).c_str());
    return 1;
  }
  return 0;
}
