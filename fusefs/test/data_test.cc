// File contents through the mount: reads, writes, truncation, fallocate,
// copy_file_range, shared mmap, lseek, fsync.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "fusefs/test/mount_fixture.h"

namespace replifs::fusefs {
namespace {

TEST_F(MountTest, ExistingContentIsVisible) {
  EXPECT_EQ(ReadAll(M("hello.txt")), "hello world\n");
  EXPECT_EQ(ReadAll(M("dir/inner.txt")), "inner\n");
  std::set<std::string> names;
  DIR* d = opendir(M("").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "hello.txt", "dir"}));
  EXPECT_TRUE(IsMounted(dir_));
  EXPECT_TRUE(sink_.Events().empty()) << "reads must report nothing";
}

TEST_F(MountTest, WriteInTheMiddleIsReportedAndLands) {
  int fd = open(M("hello.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "XYZ", 3, 6), 3);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadAll(B("hello.txt")), "hello XYZld\n");
  auto writes = sink_.Find(ChangeEvent::WRITE);
  ASSERT_EQ(writes.size(), 1u);
  const ChangeEvent& e = writes[0];
  EXPECT_EQ(e.path(), "hello.txt");
  // With the writeback cache the kernel writes whole pages (clipped to the
  // size): the reported range covers the write, and stays within the file.
  EXPECT_LE(e.offset(), 6u);
  EXPECT_GE(e.offset() + e.length(), 9u);
  EXPECT_LE(e.offset() + e.length(), 12u);
  EXPECT_EQ(e.source(), ChangeEvent::OVERLAY);
  struct stat st = Lstat(B("hello.txt"));
  EXPECT_EQ(e.inode(), st.st_ino);
  EXPECT_EQ(e.device(), st.st_dev);
  EXPECT_EQ(e.attributes().size(), 12u);
  EXPECT_EQ(e.attributes().nlink(), 1u);
  EXPECT_GT(e.time_ns(), 0);
}

TEST_F(MountTest, AppendReportsWhereTheBytesLanded) {
  int fd = open(M("hello.txt").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "more", 4), 4);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadAll(B("hello.txt")), "hello world\nmore");
  auto writes = sink_.Find(ChangeEvent::WRITE, "hello.txt");
  ASSERT_EQ(writes.size(), 1u);
  // The range covers the appended bytes (whole pages with writeback cache).
  EXPECT_LE(writes[0].offset(), 12u);
  EXPECT_EQ(writes[0].offset() + writes[0].length(), 16u);
}

TEST_F(MountTest, LargeWritesArriveInMiBRequests) {
  const std::string data(4 << 20, 'w');
  int fd = open(M("large").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), ssize_t(data.size()));
  close(fd);
  auto writes = sink_.Find(ChangeEvent::WRITE, "large");
  uint64_t total = 0;
  for (const ChangeEvent& e : writes) total += e.length();
  EXPECT_EQ(total, data.size());
  EXPECT_LE(writes.size(), 4u) << "max_write is not 1 MiB";
  EXPECT_EQ(Lstat(B("large")).st_size, off_t(data.size()));
}

TEST_F(MountTest, TruncateReportsNewSize) {
  ASSERT_EQ(truncate(M("hello.txt").c_str(), 5), 0);
  EXPECT_EQ(ReadAll(B("hello.txt")), "hello");
  auto t = sink_.Find(ChangeEvent::TRUNCATE, "hello.txt");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].new_size(), 5u);
  EXPECT_EQ(t[0].attributes().size(), 5u);

  sink_.Clear();
  int fd = open(M("hello.txt").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 100), 0);
  ASSERT_EQ(close(fd), 0);
  t = sink_.Find(ChangeEvent::TRUNCATE, "hello.txt");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].new_size(), 100u);

  sink_.Clear();
  fd = open(M("hello.txt").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Lstat(B("hello.txt")).st_size, 0);
  t = sink_.Find(ChangeEvent::TRUNCATE, "hello.txt");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].new_size(), 0u);
}

TEST_F(MountTest, FallocateIsReported) {
  int fd = open(M("big").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, 0, 4096, 1 << 20), 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Lstat(B("big")).st_size, 4096 + (1 << 20));
  auto f = sink_.Find(ChangeEvent::FALLOCATE, "big");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].offset(), 4096u);
  EXPECT_EQ(f[0].length(), 1u << 20);
}

TEST_F(MountTest, CopyFileRangeReportsTheDestination) {
  WriteAll(M("dst"), std::string(200, 'd'));
  sink_.Clear();
  int in = open(M("hello.txt").c_str(), O_RDONLY);
  int out = open(M("dst").c_str(), O_WRONLY);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t off_in = 0, off_out = 100;
  ASSERT_EQ(copy_file_range(in, &off_in, out, &off_out, 12, 0), 12);
  close(in);
  close(out);
  EXPECT_EQ(ReadAll(B("dst")).substr(100, 12), "hello world\n");
  auto c = sink_.Find(ChangeEvent::COPY_RANGE, "dst");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].offset(), 100u);
  EXPECT_EQ(c[0].length(), 12u);
  EXPECT_TRUE(sink_.Find(ChangeEvent::COPY_RANGE, "hello.txt").empty());
}

TEST_F(MountTest, SharedMmapWritesBecomeWriteEvents) {
  constexpr size_t kSize = 64 * 1024;
  WriteAll(B("mapped"), std::string(kSize, '\0'));
  int fd = open(M("mapped").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  void* map = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << strerror(errno);
  char* p = static_cast<char*>(map);
  memcpy(p + 5000, "0123456789", 10);
  memcpy(p + 40000, "abc", 3);
  ASSERT_EQ(msync(map, kSize, MS_SYNC), 0);
  munmap(map, kSize);
  close(fd);
  std::string backing = ReadAll(B("mapped"));
  ASSERT_EQ(backing.size(), kSize);
  EXPECT_EQ(backing.substr(5000, 10), "0123456789");
  EXPECT_EQ(backing.substr(40000, 3), "abc");
  auto writes = sink_.Find(ChangeEvent::WRITE, "mapped");
  auto covered = [&](uint64_t begin, uint64_t end) {
    return std::any_of(writes.begin(), writes.end(), [&](const ChangeEvent& e) {
      return e.offset() <= begin && e.offset() + e.length() >= end;
    });
  };
  EXPECT_TRUE(covered(5000, 5010));
  EXPECT_TRUE(covered(40000, 40003));
}

TEST_F(MountTest, LseekFindsDataAndHoles) {
  int fd = open(M("sparse").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "x", 1, 1 << 20), 1);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 1 << 20);
  close(fd);
}

TEST_F(MountTest, FsyncIsADurabilityBarrier) {
  int fd = open(M("hello.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "H", 1), 1);
  int before = sink_.barriers();
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_EQ(sink_.barriers(), before + 1);
  close(fd);
  int dfd = open(M("dir").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dfd, 0);
  ASSERT_EQ(fsync(dfd), 0);
  EXPECT_EQ(sink_.barriers(), before + 2);
  close(dfd);
}

TEST_F(MountTest, FlockIsPassedThrough) {
  int a = open(M("hello.txt").c_str(), O_RDONLY);
  int b = open(M("hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(flock(a, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  // The lock is held on the backing file, where other programs see it.
  int c = open(B("hello.txt").c_str(), O_RDONLY);
  EXPECT_EQ(flock(c, LOCK_SH | LOCK_NB), -1);
  close(c);
  close(a);
  close(b);
}

TEST_F(MountTest, ReadaheadOfTheMountIsRaised) {
  struct stat st = Lstat(M(""));
  std::string bdi = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                    std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
  // Applied from a request handler: give a retry a few more requests.
  for (int i = 0; i < 20 && ReadAll(bdi) != "1024\n"; ++i) {
    Lstat(M(""));
    Lstat(M("hello.txt"));
    usleep(50000);
  }
  EXPECT_EQ(ReadAll(bdi), "1024\n") << bdi;
}

TEST_F(MountTest, TimesSetAfterWritesSurviveWriteback) {
  // With the writeback cache the data reaches the backing file after the
  // futimens below; the caller's mtime must still win, to the nanosecond.
  int fd = open(M("hello.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "abc", 3, 100), 3);
  const timespec times[2] = {{1000000000, 123456789}, {1100000000, 987654321}};
  ASSERT_EQ(futimens(fd, times), 0);
  ASSERT_EQ(close(fd), 0);
  struct stat backing = Lstat(B("hello.txt"));
  EXPECT_EQ(backing.st_size, 103);
  EXPECT_EQ(backing.st_mtim.tv_sec, 1100000000);
  EXPECT_EQ(backing.st_mtim.tv_nsec, 987654321);
  struct stat mounted = Lstat(M("hello.txt"));
  EXPECT_EQ(mounted.st_mtim.tv_nsec, 987654321);
  EXPECT_EQ(mounted.st_size, 103);
}

TEST_F(MountTest, WriteOnlyAppendThroughWritebackCache) {
  // Two appenders on one file: each write lands at the end (the kernel owns
  // the size), nothing is overwritten, and both are reported before close.
  int a = open(M("log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  int b = open(M("log").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(write(i % 2 ? a : b, i % 2 ? "a" : "b", 1), 1);
  }
  ASSERT_EQ(close(a), 0);
  ASSERT_EQ(close(b), 0);
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += i % 2 ? "a" : "b";
  EXPECT_EQ(ReadAll(B("log")), expected);
  uint64_t end = 0;
  for (const ChangeEvent& e : sink_.Find(ChangeEvent::WRITE, "log")) {
    end = std::max<uint64_t>(end, e.offset() + e.length());
  }
  EXPECT_EQ(end, 100u);
  EXPECT_EQ(Lstat(B("log")).st_mode & 07777, 0600u);
}

// The replicator holds back files still open for writing: every write
// handle counts until its RELEASE (which the kernel sends after close()
// returns, so the test polls), read-only handles do not.
TEST_F(MountTest, WriteHandlesAreCountedUntilReleased) {
  OpenWriters& writers = fs_->open_writers();
  std::mutex mu;
  std::vector<uint64_t> last_closed;
  writers.SetLastCloseListener([&](uint64_t ino) {
    std::lock_guard lock(mu);
    last_closed.push_back(ino);
  });
  auto count_becomes = [&](uint64_t ino, uint64_t want) {
    for (int i = 0; i < 500 && writers.Count(ino) != want; ++i) usleep(10'000);
    return writers.Count(ino) == want;
  };
  const uint64_t ino = Lstat(B("hello.txt")).st_ino;
  const int reader = open(M("hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  EXPECT_EQ(writers.Count(ino), 0u);
  const int w1 = open(M("hello.txt").c_str(), O_WRONLY);
  const int w2 = open(M("hello.txt").c_str(), O_RDWR);
  ASSERT_GE(w1, 0);
  ASSERT_GE(w2, 0);
  EXPECT_EQ(writers.Count(ino), 2u);
  close(w1);
  EXPECT_TRUE(count_becomes(ino, 1));
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(last_closed.empty()) << "one writer is still open";
  }
  close(w2);
  EXPECT_TRUE(count_becomes(ino, 0));
  close(reader);
  const int created = open(M("new.tmp").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(created, 0);
  const uint64_t new_ino = Lstat(B("new.tmp")).st_ino;
  EXPECT_EQ(writers.Count(new_ino), 1u) << "a created file is open for writing";
  close(created);
  EXPECT_TRUE(count_becomes(new_ino, 0));
  auto closed_count = [&] {
    std::lock_guard lock(mu);
    return last_closed.size();
  };
  for (int i = 0; i < 500 && closed_count() < 2; ++i) usleep(10'000);
  writers.SetLastCloseListener(nullptr);
  std::lock_guard lock(mu);
  EXPECT_EQ(last_closed, (std::vector<uint64_t>{ino, new_ino}));
}

}  // namespace
}  // namespace replifs::fusefs
