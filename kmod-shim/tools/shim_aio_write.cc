// shim-aio-write FILE: writes 4 KiB to FILE with Linux native aio
// (io_setup/io_submit/io_getevents, no library) -- a write no syscall hook
// sees, for the fanotify backstop's tests.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: shim-aio-write FILE\n");
    return 2;
  }
  int fd = open(argv[1], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, 1, &ctx) != 0) {
    perror("io_setup");
    return 1;
  }
  static char buf[4096];
  memset(buf, 'A', sizeof(buf));
  iocb cb{};
  cb.aio_fildes = fd;
  cb.aio_lio_opcode = IOCB_CMD_PWRITE;
  cb.aio_buf = reinterpret_cast<uint64_t>(buf);
  cb.aio_nbytes = sizeof(buf);
  cb.aio_offset = 0;
  iocb* cbs[1] = {&cb};
  if (syscall(SYS_io_submit, ctx, 1, cbs) != 1) {
    perror("io_submit");
    return 1;
  }
  io_event ev{};
  if (syscall(SYS_io_getevents, ctx, 1, 1, &ev, nullptr) != 1 || ev.res != static_cast<int64_t>(sizeof(buf))) {
    fprintf(stderr, "shim-aio-write: aio write failed (%lld)\n", static_cast<long long>(ev.res));
    return 1;
  }
  syscall(SYS_io_destroy, ctx);
  // Keep the descriptor open a moment: the shim has no close-time record for
  // it (no mapping), so only fanotify can name the file.
  close(fd);
  return 0;
}
