// Small-file workload for bench/fs: in DIR, create+write 4 KiB+close N files,
// stat each, readdir all, unlink each. Prints "phase ops_per_second" lines;
// with a third argument, also "mark phase start_s end_s" lines (CLOCK_MONOTONIC,
// for matching trace timestamps: bench/fs/profile).
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: smallfiles DIR N [marks]\n");
    return 2;
  }
  const char* dir = argv[1];
  const int n = atoi(argv[2]);
  char path[4096], buf[4096];
  memset(buf, 'x', sizeof(buf));
  double t0 = Now();
  for (int i = 0; i < n; ++i) {
    snprintf(path, sizeof(path), "%s/f%06d", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf) || close(fd) != 0) {
      perror(path);
      return 1;
    }
  }
  double t1 = Now();
  struct stat st;
  for (int i = 0; i < n; ++i) {
    snprintf(path, sizeof(path), "%s/f%06d", dir, i);
    if (stat(path, &st) != 0 || st.st_size != 4096) {
      perror(path);
      return 1;
    }
  }
  double t2 = Now();
  int seen = 0;
  DIR* d = opendir(dir);
  if (d == NULL) return 1;
  while (readdir(d) != NULL) ++seen;
  closedir(d);
  double t3 = Now();
  if (seen < n) {
    fprintf(stderr, "readdir saw %d of %d\n", seen, n);
    return 1;
  }
  for (int i = 0; i < n; ++i) {
    snprintf(path, sizeof(path), "%s/f%06d", dir, i);
    if (unlink(path) != 0) {
      perror(path);
      return 1;
    }
  }
  double t4 = Now();
  printf("create %.0f\nstat %.0f\nreaddir %.0f\nunlink %.0f\n", n / (t1 - t0), n / (t2 - t1),
         seen / (t3 - t2), n / (t4 - t3));
  if (argc == 4) {
    printf("mark create %.6f %.6f\nmark stat %.6f %.6f\n", t0, t1, t1, t2);
    printf("mark readdir %.6f %.6f\nmark unlink %.6f %.6f\n", t2, t3, t3, t4);
  }
  return 0;
}
