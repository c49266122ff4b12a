// The conformance suite: runs every case of matrix.tsv (checked in next to
// this file) in a fresh directory on a plain directory and through a real
// replifs mount (fusefs::PassthroughFs over a directory of the same
// filesystem), and compares each result with the matrix. Every case runs in
// a forked child: it may change its umask or its user without touching the
// daemon threads of this process.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <ftw.h>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fusefs/passthrough_fs.h"
#include "gtest/gtest.h"

#ifndef CONFORMANCE_MATRIX
#error "CONFORMANCE_MATRIX must name matrix.tsv"
#endif

namespace replifs {
namespace {

// Results a case returns besides 0 (OK) and errno values.
constexpr int kSetupFailed = 250;  // a step before the one under test failed
constexpr int kWrongResult = 251;  // the call succeeded but did the wrong thing

using Case = std::function<int(const std::string& dir)>;

// SETUP: a preparatory step that must succeed. CALL: the step under test;
// its errno is the case's result. CHECK: an outcome the call must produce.
#define SETUP(expr)                        \
  do {                                     \
    if ((expr) < 0) return kSetupFailed;   \
  } while (0)
#define CALL(expr)                   \
  do {                               \
    if ((expr) < 0) return errno;    \
  } while (0)
#define CHECK(cond)                        \
  do {                                     \
    if (!(cond)) return kWrongResult;      \
  } while (0)

int WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -1;
  ssize_t n = write(fd, data.data(), data.size());
  close(fd);
  return n == ssize_t(data.size()) ? 0 : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs fn as uid/gid (no supplementary groups) in a child; its exit code.
int AsUser(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(kSetupFailed);
    }
    _exit(fn());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return kSetupFailed;
  return WEXITSTATUS(status);
}

std::map<std::string, Case> AllCases() {
  std::map<std::string, Case> c;
  // ---- rename
  c["rename_plain"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), 0));
    CHECK(ReadFile(d + "/b") == "A" && access((d + "/a").c_str(), F_OK) != 0);
    return 0;
  };
  c["rename_noreplace_existing"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(WriteFile(d + "/b", "B"));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), RENAME_NOREPLACE));
    return 0;
  };
  c["rename_noreplace_new"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), RENAME_NOREPLACE));
    CHECK(ReadFile(d + "/b") == "A");
    return 0;
  };
  c["rename_exchange"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(mkdir((d + "/b").c_str(), 0755));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), RENAME_EXCHANGE));
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(ReadFile(d + "/b") == "A");
    return 0;
  };
  c["rename_exchange_missing"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), RENAME_EXCHANGE));
    return 0;
  };
  c["rename_dir_over_nonempty_dir"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    SETUP(mkdir((d + "/b").c_str(), 0755));
    SETUP(WriteFile(d + "/b/x", "x"));
    CALL(rename((d + "/a").c_str(), (d + "/b").c_str()));
    return 0;
  };
  c["rename_file_over_dir"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(mkdir((d + "/b").c_str(), 0755));
    CALL(rename((d + "/a").c_str(), (d + "/b").c_str()));
    return 0;
  };
  c["rename_dir_over_file"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    SETUP(WriteFile(d + "/b", "B"));
    CALL(rename((d + "/a").c_str(), (d + "/b").c_str()));
    return 0;
  };
  c["rename_into_own_subdir"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    SETUP(mkdir((d + "/a/sub").c_str(), 0755));
    CALL(rename((d + "/a").c_str(), (d + "/a/sub/a").c_str()));
    return 0;
  };
  c["rename_whiteout"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(renameat2(AT_FDCWD, (d + "/a").c_str(), AT_FDCWD, (d + "/b").c_str(), RENAME_WHITEOUT));
    struct stat st;
    CHECK(lstat((d + "/a").c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
    CHECK(ReadFile(d + "/b") == "A");
    return 0;
  };
  // ---- open flags
  c["open_missing"] = [](const std::string& d) {
    CALL(open((d + "/nope").c_str(), O_RDONLY));
    return 0;
  };
  c["open_creat_excl_existing"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(open((d + "/a").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644));
    return 0;
  };
  c["open_creat_excl_new"] = [](const std::string& d) {
    int fd;
    CALL(fd = open((d + "/a").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640));
    close(fd);
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_size == 0);
    return 0;
  };
  c["open_trunc"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "something"));
    int fd;
    CALL(fd = open((d + "/a").c_str(), O_WRONLY | O_TRUNC));
    close(fd);
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && st.st_size == 0);
    return 0;
  };
  c["open_append_write"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "12345"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_WRONLY | O_APPEND));
    SETUP(lseek(fd, 0, SEEK_SET));
    CALL(write(fd, "ab", 2));
    CHECK(lseek(fd, 0, SEEK_CUR) == 7);
    close(fd);
    CHECK(ReadFile(d + "/a") == "12345ab");
    return 0;
  };
  c["open_append_pwrite"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "12345"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR | O_APPEND));
    CALL(pwrite(fd, "ab", 2, 0));  // Linux: appends anyway
    close(fd);
    CHECK(ReadFile(d + "/a") == "12345ab");
    return 0;
  };
  c["open_append_two_writers"] = [](const std::string& d) {
    int a, b;
    SETUP(a = open((d + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644));
    SETUP(b = open((d + "/log").c_str(), O_WRONLY | O_APPEND));
    std::string expected;
    for (int i = 0; i < 50; ++i) {
      CALL(write(i % 2 ? a : b, i % 2 ? "aa" : "b", i % 2 ? 2 : 1));
      expected += i % 2 ? "aa" : "b";
    }
    close(a);
    close(b);
    CHECK(ReadFile(d + "/log") == expected);
    return 0;
  };
  c["open_creat_mode_umask"] = [](const std::string& d) {
    umask(027);
    int fd;
    CALL(fd = open((d + "/a").c_str(), O_WRONLY | O_CREAT, 0777));
    close(fd);
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && (st.st_mode & 07777) == 0750);
    return 0;
  };
  c["mkdir_mode_umask"] = [](const std::string& d) {
    umask(077);
    CALL(mkdir((d + "/a").c_str(), 0777));
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && (st.st_mode & 07777) == 0700);
    return 0;
  };
  c["open_direct"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", std::string(8192, 'x')));
    int fd;
    CALL(fd = open((d + "/a").c_str(), O_RDWR | O_DIRECT));
    void* buf = nullptr;
    SETUP(posix_memalign(&buf, 4096, 4096) == 0 ? 0 : -1);
    memset(buf, 'd', 4096);
    ssize_t n = pwrite(fd, buf, 4096, 4096);
    free(buf);
    close(fd);
    CALL(n);
    CHECK(ReadFile(d + "/a") == std::string(4096, 'x') + std::string(4096, 'd'));
    return 0;
  };
  c["open_tmpfile"] = [](const std::string& d) {
    int fd;
    CALL(fd = open(d.c_str(), O_TMPFILE | O_RDWR, 0600));
    CHECK(write(fd, "t", 1) == 1);
    close(fd);
    return 0;
  };
  c["open_directory_flag_on_file"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(open((d + "/a").c_str(), O_RDONLY | O_DIRECTORY));
    return 0;
  };
  c["open_dir_for_write"] = [](const std::string& d) {
    CALL(open(d.c_str(), O_WRONLY));
    return 0;
  };
  c["open_nofollow_symlink"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(symlink("a", (d + "/l").c_str()));
    CALL(open((d + "/l").c_str(), O_RDONLY | O_NOFOLLOW));
    return 0;
  };
  c["write_readonly_fd"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDONLY));
    CALL(write(fd, "x", 1));
    return 0;
  };
  // ---- locks
  c["flock_exclusive_conflict"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    int a, b;
    SETUP(a = open((d + "/a").c_str(), O_RDONLY));
    SETUP(b = open((d + "/a").c_str(), O_RDONLY));
    SETUP(flock(a, LOCK_EX | LOCK_NB));
    CALL(flock(b, LOCK_EX | LOCK_NB));
    return 0;
  };
  c["flock_shared_twice"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    int a, b;
    SETUP(a = open((d + "/a").c_str(), O_RDONLY));
    SETUP(b = open((d + "/a").c_str(), O_RDONLY));
    SETUP(flock(a, LOCK_SH | LOCK_NB));
    CALL(flock(b, LOCK_SH | LOCK_NB));
    return 0;
  };
  c["ofd_lock_conflict"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "AAAA"));
    int a, b;
    SETUP(a = open((d + "/a").c_str(), O_RDWR));
    SETUP(b = open((d + "/a").c_str(), O_RDWR));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 2;
    SETUP(fcntl(a, F_OFD_SETLK, &fl));
    fl.l_start = 1;
    CALL(fcntl(b, F_OFD_SETLK, &fl));
    return 0;
  };
  c["posix_lock_seen_by_other_process"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "AAAA"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    CALL(fcntl(fd, F_SETLK, &fl));
    const pid_t me = getpid();
    int seen = AsUser(0, 0, [&] {
      int other = open((d + "/a").c_str(), O_RDWR);
      struct flock q {};
      q.l_type = F_WRLCK;
      q.l_whence = SEEK_SET;
      if (other < 0 || fcntl(other, F_GETLK, &q) != 0) return 1;
      if (q.l_type != F_WRLCK || q.l_pid != me) return 2;
      return fcntl(other, F_SETLK, &q) == -1 && (errno == EAGAIN || errno == EACCES) ? 0 : 3;
    });
    CHECK(seen == 0);
    return 0;
  };
  // ---- shared mmap
  c["mmap_shared_write"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", std::string(20000, '.')));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    void* m = mmap(nullptr, 20000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return errno;
    memcpy(static_cast<char*>(m) + 9000, "mapped", 6);
    CALL(msync(m, 20000, MS_SYNC));
    munmap(m, 20000);
    close(fd);
    std::string expect(20000, '.');
    expect.replace(9000, 6, "mapped");
    CHECK(ReadFile(d + "/a") == expect);
    return 0;
  };
  c["mmap_shared_write_coherent_read"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", std::string(8192, '.')));
    int fd, other;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    SETUP(other = open((d + "/a").c_str(), O_RDONLY));
    void* m = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return errno;
    memcpy(static_cast<char*>(m) + 5000, "xyz", 3);
    char buf[3];
    CALL(pread(other, buf, 3, 5000));  // no msync: the page cache is shared
    munmap(m, 8192);
    CHECK(memcmp(buf, "xyz", 3) == 0);
    return 0;
  };
  // ---- sparse files
  c["seek_data_hole"] = [](const std::string& d) {
    int fd;
    SETUP(fd = open((d + "/s").c_str(), O_RDWR | O_CREAT, 0644));
    SETUP(pwrite(fd, "x", 1, 1 << 20));
    off_t hole, data;
    CALL(hole = lseek(fd, 0, SEEK_HOLE));
    CALL(data = lseek(fd, 0, SEEK_DATA));
    CHECK(hole == 0 && data == (1 << 20));
    return 0;
  };
  c["seek_data_past_eof"] = [](const std::string& d) {
    int fd;
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(fd = open((d + "/a").c_str(), O_RDONLY));
    CALL(lseek(fd, 10, SEEK_DATA));
    return 0;
  };
  c["punch_hole"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", std::string(3 << 16, 'p')));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    CALL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 16, 1 << 16));
    CHECK(lseek(fd, 0, SEEK_HOLE) == (1 << 16));
    close(fd);
    CHECK(ReadFile(d + "/a") ==
          std::string(1 << 16, 'p') + std::string(1 << 16, '\0') + std::string(1 << 16, 'p'));
    return 0;
  };
  c["zero_range"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", std::string(3 << 12, 'z')));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    CALL(fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 5000));
    close(fd);
    std::string expect(3 << 12, 'z');
    expect.replace(100, 5000, std::string(5000, '\0'));
    CHECK(ReadFile(d + "/a") == expect);
    return 0;
  };
  c["fallocate_keep_size"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "abc"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    CALL(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 20));
    struct stat st;
    SETUP(fstat(fd, &st));
    CHECK(st.st_size == 3 && st.st_blocks >= (1 << 20) / 512);
    return 0;
  };
  // ---- copy_file_range
  c["copy_file_range_basic"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/src", "0123456789"));
    SETUP(WriteFile(d + "/dst", "----------"));
    int in, out;
    SETUP(in = open((d + "/src").c_str(), O_RDONLY));
    SETUP(out = open((d + "/dst").c_str(), O_WRONLY));
    loff_t oi = 2, oo = 5;
    ssize_t n;
    CALL(n = copy_file_range(in, &oi, out, &oo, 4, 0));
    close(out);
    CHECK(n == 4 && ReadFile(d + "/dst") == "-----2345-");
    return 0;
  };
  c["copy_file_range_same_file_overlap"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "0123456789"));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_RDWR));
    loff_t oi = 0, oo = 2;
    CALL(copy_file_range(fd, &oi, fd, &oo, 5, 0));
    return 0;
  };
  c["copy_file_range_readonly_destination"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/src", "0123456789"));
    SETUP(WriteFile(d + "/dst", "----------"));
    int in, out;
    SETUP(in = open((d + "/src").c_str(), O_RDONLY));
    SETUP(out = open((d + "/dst").c_str(), O_RDONLY));
    CALL(copy_file_range(in, nullptr, out, nullptr, 4, 0));
    return 0;
  };
  // ---- hard links
  c["link_basic"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(link((d + "/a").c_str(), (d + "/b").c_str()));
    struct stat a, b;
    CHECK(stat((d + "/a").c_str(), &a) == 0 && stat((d + "/b").c_str(), &b) == 0);
    CHECK(a.st_ino == b.st_ino && a.st_nlink == 2 && b.st_nlink == 2);
    return 0;
  };
  c["link_to_directory"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    CALL(link((d + "/a").c_str(), (d + "/b").c_str()));
    return 0;
  };
  c["link_existing_name"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(WriteFile(d + "/b", "B"));
    CALL(link((d + "/a").c_str(), (d + "/b").c_str()));
    return 0;
  };
  c["link_survives_unlink_of_original"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    SETUP(link((d + "/a").c_str(), (d + "/b").c_str()));
    CALL(unlink((d + "/a").c_str()));
    SETUP(WriteFile(d + "/b", "BB"));
    struct stat st;
    CHECK(stat((d + "/b").c_str(), &st) == 0 && st.st_nlink == 1 && st.st_size == 2);
    return 0;
  };
  // ---- fifos and device nodes
  c["mkfifo_roundtrip"] = [](const std::string& d) {
    CALL(mkfifo((d + "/f").c_str(), 0600));
    struct stat st;
    CHECK(lstat((d + "/f").c_str(), &st) == 0 && S_ISFIFO(st.st_mode));
    int r, w;
    SETUP(r = open((d + "/f").c_str(), O_RDONLY | O_NONBLOCK));
    SETUP(w = open((d + "/f").c_str(), O_WRONLY));
    SETUP(write(w, "fifo", 4));
    char buf[8];
    CHECK(read(r, buf, sizeof(buf)) == 4 && memcmp(buf, "fifo", 4) == 0);
    return 0;
  };
  c["mknod_char_device"] = [](const std::string& d) {
    CALL(mknod((d + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
    struct stat st;
    CHECK(lstat((d + "/null").c_str(), &st) == 0 && S_ISCHR(st.st_mode) &&
          st.st_rdev == makedev(1, 3));
    return 0;
  };
  c["open_char_device"] = [](const std::string& d) {
    SETUP(mknod((d + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
    int fd;
    CALL(fd = open((d + "/null").c_str(), O_WRONLY));
    CHECK(write(fd, "x", 1) == 1);
    return 0;
  };
  // ---- names and paths
  c["long_name_255"] = [](const std::string& d) {
    const std::string name(255, 'n');
    CALL(WriteFile(d + "/" + name, "L"));
    CHECK(ReadFile(d + "/" + name) == "L");
    return 0;
  };
  c["long_name_256"] = [](const std::string& d) {
    CALL(open((d + "/" + std::string(256, 'n')).c_str(), O_WRONLY | O_CREAT, 0644));
    return 0;
  };
  c["deep_path_beyond_path_max"] = [](const std::string& d) {
    // 100 levels of 60 characters: 6,000 bytes, past PATH_MAX from the top.
    int fd;
    SETUP(fd = open(d.c_str(), O_RDONLY | O_DIRECTORY));
    const std::string part(60, 'd');
    for (int i = 0; i < 100; ++i) {
      CALL(mkdirat(fd, part.c_str(), 0755));
      int next;
      CALL(next = openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY));
      close(fd);
      fd = next;
    }
    int f;
    CALL(f = openat(fd, "leaf", O_RDWR | O_CREAT, 0644));
    CHECK(write(f, "deep", 4) == 4);
    char buf[4];
    CHECK(pread(f, buf, 4, 0) == 4 && memcmp(buf, "deep", 4) == 0);
    return 0;
  };
  c["path_longer_than_path_max"] = [](const std::string& d) {
    std::string path = d;
    while (path.size() <= PATH_MAX) path += "/" + std::string(200, 'p');
    CALL(open(path.c_str(), O_RDONLY));
    return 0;
  };
  c["non_utf8_name"] = [](const std::string& d) {
    const std::string name = "bad\xff\xfe\x80name\n";
    CALL(WriteFile(d + "/" + name, "U"));
    bool found = false;
    if (DIR* dir = opendir(d.c_str())) {
      while (dirent* e = readdir(dir)) found = found || name == e->d_name;
      closedir(dir);
    }
    CHECK(found && ReadFile(d + "/" + name) == "U");
    return 0;
  };
  // ---- files over 4 GiB
  c["over_4gib_sparse"] = [](const std::string& d) {
    int fd;
    SETUP(fd = open((d + "/big").c_str(), O_RDWR | O_CREAT, 0644));
    const off_t at = (5LL << 30) + 123;
    CALL(pwrite(fd, "big", 3, at));
    close(fd);  // the data must come back from the disk, not the writer's cache
    SETUP(fd = open((d + "/big").c_str(), O_RDONLY));
    char buf[3];
    struct stat st;
    CHECK(pread(fd, buf, 3, at) == 3 && memcmp(buf, "big", 3) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == at + 3 && st.st_blocks < 1024);
    CHECK(lseek(fd, 0, SEEK_DATA) >= (5LL << 30) - (1 << 20));
    return 0;
  };
  c["truncate_over_4gib"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/big", "x"));
    CALL(truncate((d + "/big").c_str(), 6LL << 30));
    struct stat st;
    CHECK(stat((d + "/big").c_str(), &st) == 0 && st.st_size == (6LL << 30));
    return 0;
  };
  // ---- permissions: several users (allow_other + default_permissions)
  c["perm_other_cannot_read_0600"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/secret", "s", 0600));
    return AsUser(1000, 1000, [&] { return open((d + "/secret").c_str(), O_RDONLY) < 0 ? errno : 0; });
  };
  c["perm_owner_can_write"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/mine", "m", 0600));
    SETUP(chown((d + "/mine").c_str(), 1000, 1000));
    int r = AsUser(1000, 1000, [&] {
      int fd = open((d + "/mine").c_str(), O_WRONLY | O_APPEND);
      if (fd < 0) return errno;
      return write(fd, "+", 1) == 1 && close(fd) == 0 ? 0 : kWrongResult;
    });
    if (r != 0) return r;
    CHECK(ReadFile(d + "/mine") == "m+");
    return 0;
  };
  c["perm_create_owned_by_caller"] = [](const std::string& d) {
    SETUP(chmod(d.c_str(), 0777));
    int r = AsUser(1000, 1001, [&] {
      int fd = open((d + "/new").c_str(), O_WRONLY | O_CREAT, 0644);
      if (fd < 0) return errno;
      close(fd);
      return mkdir((d + "/newdir").c_str(), 0755) == 0 ? 0 : errno;
    });
    if (r != 0) return r;
    struct stat f, dd;
    CHECK(stat((d + "/new").c_str(), &f) == 0 && f.st_uid == 1000 && f.st_gid == 1001);
    CHECK(stat((d + "/newdir").c_str(), &dd) == 0 && dd.st_uid == 1000 && dd.st_gid == 1001);
    return 0;
  };
  c["perm_create_in_readonly_dir"] = [](const std::string& d) {
    SETUP(chmod(d.c_str(), 0755));
    return AsUser(1000, 1000, [&] {
      return open((d + "/new").c_str(), O_WRONLY | O_CREAT, 0644) < 0 ? errno : 0;
    });
  };
  c["perm_search_denied"] = [](const std::string& d) {
    SETUP(mkdir((d + "/private").c_str(), 0700));
    SETUP(WriteFile(d + "/private/f", "f"));
    return AsUser(1000, 1000, [&] {
      struct stat st;
      return stat((d + "/private/f").c_str(), &st) < 0 ? errno : 0;
    });
  };
  c["perm_chmod_by_non_owner"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A", 0644));
    return AsUser(1000, 1000, [&] { return chmod((d + "/a").c_str(), 0777) < 0 ? errno : 0; });
  };
  c["perm_chown_by_user"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A", 0644));
    SETUP(chown((d + "/a").c_str(), 1000, 1000));
    return AsUser(1000, 1000, [&] { return chown((d + "/a").c_str(), 1001, -1) < 0 ? errno : 0; });
  };
  c["perm_sticky_dir_unlink_other"] = [](const std::string& d) {
    SETUP(mkdir((d + "/tmp").c_str(), 0777));
    SETUP(chmod((d + "/tmp").c_str(), 01777));
    SETUP(WriteFile(d + "/tmp/f", "f"));
    SETUP(chown((d + "/tmp/f").c_str(), 1000, 1000));
    return AsUser(1001, 1001, [&] { return unlink((d + "/tmp/f").c_str()) < 0 ? errno : 0; });
  };
  c["perm_setgid_dir_inherits"] = [](const std::string& d) {
    SETUP(mkdir((d + "/shared").c_str(), 0777));
    SETUP(chown((d + "/shared").c_str(), 0, 2000));
    SETUP(chmod((d + "/shared").c_str(), 02777));
    int r = AsUser(1000, 1000, [&] {
      if (mkdir((d + "/shared/sub").c_str(), 0755) != 0) return errno;
      return WriteFile(d + "/shared/file", "g") == 0 ? 0 : errno;
    });
    if (r != 0) return r;
    struct stat sub, file;
    CHECK(stat((d + "/shared/sub").c_str(), &sub) == 0 && sub.st_gid == 2000 &&
          (sub.st_mode & S_ISGID) && sub.st_uid == 1000);
    CHECK(stat((d + "/shared/file").c_str(), &file) == 0 && file.st_gid == 2000 &&
          file.st_uid == 1000);
    return 0;
  };
  c["perm_write_clears_setuid"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/suid", "s", 0755));
    SETUP(chown((d + "/suid").c_str(), 1000, 1000));
    SETUP(chmod((d + "/suid").c_str(), 04755));
    SETUP(chmod(d.c_str(), 0777));
    // Written by another user (allowed by mode 0757 on the file's group/other).
    SETUP(chmod((d + "/suid").c_str(), 04757));
    int r = AsUser(1001, 1001, [&] {
      int fd = open((d + "/suid").c_str(), O_WRONLY | O_APPEND);
      if (fd < 0) return errno;
      return write(fd, "x", 1) == 1 && close(fd) == 0 ? 0 : errno;
    });
    if (r != 0) return r;
    struct stat st;
    CHECK(stat((d + "/suid").c_str(), &st) == 0 && !(st.st_mode & S_ISUID));
    return 0;
  };
  // ---- timestamps
  c["utimensat_nanoseconds"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    const timespec t[2] = {{1500000000, 111111111}, {1600000000, 222222222}};
    CALL(utimensat(AT_FDCWD, (d + "/a").c_str(), t, 0));
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0);
    CHECK(st.st_atim.tv_sec == 1500000000 && st.st_atim.tv_nsec == 111111111);
    CHECK(st.st_mtim.tv_sec == 1600000000 && st.st_mtim.tv_nsec == 222222222);
    return 0;
  };
  c["utimensat_omit"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    const timespec set[2] = {{1500000000, 5}, {1600000000, 7}};
    SETUP(utimensat(AT_FDCWD, (d + "/a").c_str(), set, 0));
    const timespec omit[2] = {{0, UTIME_OMIT}, {1700000000, 9}};
    CALL(utimensat(AT_FDCWD, (d + "/a").c_str(), omit, 0));
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && st.st_atim.tv_sec == 1500000000 &&
          st.st_atim.tv_nsec == 5 && st.st_mtim.tv_sec == 1700000000);
    return 0;
  };
  c["write_updates_mtime"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    const timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    SETUP(utimensat(AT_FDCWD, (d + "/a").c_str(), old, 0));
    int fd;
    SETUP(fd = open((d + "/a").c_str(), O_WRONLY));
    CALL(write(fd, "B", 1));
    close(fd);
    struct stat st;
    CHECK(stat((d + "/a").c_str(), &st) == 0 && st.st_mtim.tv_sec > 1000000000 &&
          st.st_ctim.tv_sec > 1000000000);
    return 0;
  };
  c["statfs_basic"] = [](const std::string& d) {
    struct statvfs sv;
    CALL(statvfs(d.c_str(), &sv));
    CHECK(sv.f_bsize > 0 && sv.f_blocks > 0 && sv.f_namemax == 255);
    return 0;
  };
  // ---- everyday errors
  c["unlink_directory"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    CALL(unlink((d + "/a").c_str()));
    return 0;
  };
  c["rmdir_nonempty"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    SETUP(WriteFile(d + "/a/x", "x"));
    CALL(rmdir((d + "/a").c_str()));
    return 0;
  };
  c["rmdir_file"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(rmdir((d + "/a").c_str()));
    return 0;
  };
  c["mkdir_existing"] = [](const std::string& d) {
    SETUP(mkdir((d + "/a").c_str(), 0755));
    CALL(mkdir((d + "/a").c_str(), 0755));
    return 0;
  };
  c["symlink_readlink"] = [](const std::string& d) {
    CALL(symlink("some/where\xff", (d + "/l").c_str()));
    char buf[64];
    ssize_t n = readlink((d + "/l").c_str(), buf, sizeof(buf));
    CHECK(n == 11 && memcmp(buf, "some/where\xff", 11) == 0);
    return 0;
  };
  c["xattr_user_roundtrip"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(setxattr((d + "/a").c_str(), "user.k", "v\0w", 3, 0));
    char buf[8];
    CHECK(getxattr((d + "/a").c_str(), "user.k", buf, sizeof(buf)) == 3 &&
          memcmp(buf, "v\0w", 3) == 0);
    return 0;
  };
  c["getxattr_missing"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    char buf[8];
    CALL(getxattr((d + "/a").c_str(), "user.none", buf, sizeof(buf)));
    return 0;
  };
  c["truncate_negative"] = [](const std::string& d) {
    SETUP(WriteFile(d + "/a", "A"));
    CALL(truncate((d + "/a").c_str(), -1));
    return 0;
  };
  return c;
}

// ---- the matrix file

struct Row {
  std::string name, syscall;
  int expected = 0;        // on the plain directory
  int expected_mount = 0;  // through the mount
  std::string why;         // set when the two differ
};

int ParseResult(const std::string& s) {
  static const std::map<std::string, int> kNames = {
      {"OK", 0},           {"ENOENT", ENOENT},         {"EEXIST", EEXIST},
      {"ENOTEMPTY", ENOTEMPTY}, {"EISDIR", EISDIR},    {"ENOTDIR", ENOTDIR},
      {"EINVAL", EINVAL},  {"EOPNOTSUPP", EOPNOTSUPP}, {"ELOOP", ELOOP},
      {"EBADF", EBADF},    {"EWOULDBLOCK", EWOULDBLOCK}, {"EAGAIN", EAGAIN},
      {"ENXIO", ENXIO},    {"EPERM", EPERM},           {"EACCES", EACCES},
      {"ENAMETOOLONG", ENAMETOOLONG}, {"ENODATA", ENODATA}};
  auto it = kNames.find(s);
  return it == kNames.end() ? -1 : it->second;
}

std::string ResultName(int r) {
  if (r == 0) return "OK";
  if (r == kSetupFailed) return "SETUP-FAILED";
  if (r == kWrongResult) return "WRONG-RESULT";
  const char* name = strerrorname_np(r);
  return name ? name : std::to_string(r);
}

std::vector<Row> ReadMatrix() {
  std::ifstream in(CONFORMANCE_MATRIX);
  std::vector<Row> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) f.push_back(field);
    Row row;
    if (f.size() < 4) {
      ADD_FAILURE() << "matrix line needs 4 columns: " << line;
      continue;
    }
    row.name = f[0];
    row.syscall = f[1];
    row.expected = ParseResult(f[2]);
    row.expected_mount = f[3] == "=" ? row.expected : ParseResult(f[3]);
    if (f[3] != "=") row.why = f.size() > 4 ? f[4] : "";
    EXPECT_GE(row.expected, 0) << "unknown result " << f[2] << " in: " << line;
    EXPECT_GE(row.expected_mount, 0) << "unknown result " << f[3] << " in: " << line;
    EXPECT_TRUE(f[3] == "=" || !row.why.empty()) << "a difference needs a reason: " << line;
    rows.push_back(row);
  }
  return rows;
}

// Runs a case in a forked child (own umask and credentials) inside a fresh
// directory; its result code.
int RunCase(const Case& fn, const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0) return kSetupFailed;
  pid_t pid = fork();
  if (pid == 0) _exit(fn(dir));
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return kSetupFailed;
  return WEXITSTATUS(status);
}

void RemoveTree(const std::string& dir) {
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

class CountingSink : public fusefs::EventSink {
 public:
  void OnChange(replifs::v1::ChangeEvent) override { ++events; }
  void OnDurabilityBarrier() override {}
  std::atomic<long> events{0};
};

class ConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char native[] = "/tmp/replifs-conf-native-XXXXXX";
    char mounted[] = "/tmp/replifs-conf-mount-XXXXXX";
    ASSERT_NE(mkdtemp(native), nullptr);
    ASSERT_NE(mkdtemp(mounted), nullptr);
    native_ = native;
    mount_ = mounted;
    chmod(native_.c_str(), 0755);
    chmod(mount_.c_str(), 0755);
    root_fd_ = open(mount_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(root_fd_, 0);
    fusefs::MountOptions options;
    options.mountpoint = mount_;
    options.backing_root_fd = root_fd_;
    options.writeback_cache = true;
    options.fsname = "replifs-conformance";
    // Not fuse.replifs: `replifs mount` (other tests) detaches those it finds no daemon for.
    options.subtype = "replifs-test";
    auto fs = fusefs::PassthroughFs::Mount(options, &sink_);
    ASSERT_TRUE(fs.ok()) << fs.status();
    fs_ = std::move(*fs);
    loop_ = std::thread([this] { (void)fs_->Run(); });
  }
  void TearDown() override {
    if (fs_) {
      if (umount2(mount_.c_str(), 0) != 0) umount2(mount_.c_str(), MNT_DETACH);
      if (loop_.joinable()) loop_.join();
      fs_->Unmount();
      fs_.reset();
    }
    if (root_fd_ >= 0) close(root_fd_);
    RemoveTree(native_);
    RemoveTree(mount_);
  }

  std::string native_, mount_;
  int root_fd_ = -1;
  CountingSink sink_;
  std::unique_ptr<fusefs::PassthroughFs> fs_;
  std::thread loop_;
};

TEST_F(ConformanceTest, EveryMatrixCaseBehavesOnTheMountAsOnTheDisk) {
  std::vector<Row> rows = ReadMatrix();
  ASSERT_GT(rows.size(), 50u) << "matrix not found or truncated: " << CONFORMANCE_MATRIX;
  std::map<std::string, Case> cases = AllCases();
  std::map<std::string, bool> seen;
  int index = 0;
  for (const Row& row : rows) {
    auto it = cases.find(row.name);
    if (it == cases.end()) {
      ADD_FAILURE() << "matrix case without code: " << row.name;
      continue;
    }
    EXPECT_FALSE(seen[row.name]) << "duplicate matrix row: " << row.name;
    seen[row.name] = true;
    const std::string sub = "/c" + std::to_string(index++);
    int native = RunCase(it->second, native_ + sub);
    int mounted = RunCase(it->second, mount_ + sub);
    EXPECT_EQ(ResultName(native), ResultName(row.expected))
        << row.name << " (" << row.syscall << ") on the plain directory";
    EXPECT_EQ(ResultName(mounted), ResultName(row.expected_mount))
        << row.name << " (" << row.syscall << ") through the mount"
        << (row.why.empty() ? "" : " (expected to differ: " + row.why + ")");
  }
  for (const auto& [name, fn] : cases) {
    EXPECT_TRUE(seen.count(name)) << "case not in the matrix: " << name;
  }
  EXPECT_GT(sink_.events.load(), 0) << "the mount reported no changes at all";
}

}  // namespace
}  // namespace replifs
