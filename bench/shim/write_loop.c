/* write_loop FILE N [read]: N one-byte write() calls to FILE (created,
 * truncated), or with "read" N one-byte pread() calls (a syscall outside the
 * shim's set: what the raw sys_enter/sys_exit hooks cost every other call);
 * prints "wall_seconds sys_seconds" of the loop alone. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double sys_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: write_loop FILE N [read]\n");
    return 2;
  }
  long n = atol(argv[2]);
  const int reads = argc == 4;
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  char c = 'x';
  if (reads && write(fd, &c, 1) != 1) {
    perror("write");
    return 1;
  }
  double t0 = now(), s0 = sys_seconds();
  for (long i = 0; reads && i < n; i++) {
    if (pread(fd, &c, 1, 0) != 1) {
      perror("pread");
      return 1;
    }
  }
  for (long i = 0; !reads && i < n; i++) {
    if (write(fd, "x", 1) != 1) {
      perror("write");
      return 1;
    }
  }
  printf("%.4f %.4f\n", now() - t0, sys_seconds() - s0);
  close(fd);
  return 0;
}
