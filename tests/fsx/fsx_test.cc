// fsx-style randomized exerciser through a real fusefs mount: random reads,
// writes, truncates, shared-mmap writes, fallocates and copy_file_range on a
// file, checked against an in-memory model after every step, and at the end
// on the backing file itself. Plus the capture-coverage test: after a random
// workload, the union of ranges the EventSink was told about covers every
// byte that differs from before (mmap writes and writeback flushes included).
//
// The daemon is another process (fsx_mount, see external_mount.h); this
// process runs the workload under a watchdog that aborts the connection, so
// a hang fails the test instead of wedging it. Each test runs with and
// without the kernel's writeback cache.
//
// Fixed seeds in ctest. Soak by hand (replaces the seed and count of the
// Seed1 tests; the failure message names the seed and the step):
//   REPLIFS_FSX_OPS=1000000 REPLIFS_FSX_SEED=$RANDOM fsx_test --gtest_filter='*Seed1*'
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replifs/v1/events.pb.h"
#include "tests/fsx/external_mount.h"

#ifndef FSX_MOUNT_BIN
#error "FSX_MOUNT_BIN must name the fsx_mount daemon"
#endif

namespace replifs {
namespace {

using replifs::v1::ChangeEvent;

constexpr size_t kMaxSize = 256 * 1024;
constexpr size_t kMaxOp = 64 * 1024;

// The workload: one file `fsx` opened read-write through the mount, a
// source file `src` for copy_file_range, and the model of `fsx`.
class Exerciser {
 public:
  // max_op: the longest write, mmap write, fallocate or copy.
  Exerciser(const std::string& dir, uint32_t seed, bool truncates = true, size_t max_op = kMaxOp)
      : dir_(dir), rng_(seed), truncates_(truncates), max_op_(max_op) {}
  ~Exerciser() {
    if (fd_ >= 0) close(fd_);
    if (src_fd_ >= 0) close(src_fd_);
  }

  // Opens the files; `initial` is the starting content of fsx.
  ::testing::AssertionResult Open(const std::string& initial) {
    model_ = initial;
    fd_ = open((dir_ + "/fsx").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    src_fd_ = open((dir_ + "/src").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0 || src_fd_ < 0) return ::testing::AssertionFailure() << strerror(errno);
    src_.resize(max_op_);
    for (char& c : src_) c = static_cast<char>('A' + rng_() % 26);
    if (pwrite(src_fd_, src_.data(), src_.size(), 0) != ssize_t(src_.size()) ||
        pwrite(fd_, model_.data(), model_.size(), 0) != ssize_t(model_.size())) {
      return ::testing::AssertionFailure() << "setup write: " << strerror(errno);
    }
    return ::testing::AssertionSuccess();
  }

  // One random operation, then a full check of size and content.
  ::testing::AssertionResult Step(int n) {
    int kind = rng_() % 7;
    if (kind == 2 && !truncates_) kind = 0;
    std::ostringstream what;
    switch (kind) {
      case 0:
      case 1: {  // write
        size_t off = Below(kMaxSize - 1), len = 1 + Below(std::min(max_op_, kMaxSize - off) - 1);
        std::string data = Bytes(len);
        what << "write " << off << "+" << len;
        if (pwrite(fd_, data.data(), len, off) != ssize_t(len)) return Fail(n, what, "pwrite");
        if (model_.size() < off + len) model_.resize(off + len, '\0');
        model_.replace(off, len, data);
        break;
      }
      case 2: {  // truncate
        size_t size = Below(kMaxSize);
        what << "truncate " << size;
        if (ftruncate(fd_, size) != 0) return Fail(n, what, "ftruncate");
        model_.resize(size, '\0');
        break;
      }
      case 3: {  // shared mmap write inside the file; msync only sometimes
        if (model_.empty()) return Check(n, "mmap skipped");
        size_t off = Below(model_.size() - 1), len = 1 + Below(std::min(max_op_, model_.size() - off) - 1);
        std::string data = Bytes(len);
        bool sync = rng_() % 2;
        what << "mmap write " << off << "+" << len << (sync ? " msync" : "");
        const size_t page = off & ~size_t(4095);
        const size_t map_len = off + len - page;
        void* m = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, page);
        if (m == MAP_FAILED) return Fail(n, what, "mmap");
        memcpy(static_cast<char*>(m) + (off - page), data.data(), len);
        if (sync && msync(m, map_len, MS_SYNC) != 0) return Fail(n, what, "msync");
        munmap(m, map_len);
        model_.replace(off, len, data);
        break;
      }
      case 4: {  // fallocate: punch hole, zero range, or allocate (may extend)
        size_t off = Below(kMaxSize - 1), len = 1 + Below(std::min(max_op_, kMaxSize - off) - 1);
        int mode_pick = rng_() % 3;
        int mode = mode_pick == 0   ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                   : mode_pick == 1 ? FALLOC_FL_ZERO_RANGE
                                    : 0;
        what << "fallocate mode " << mode << " " << off << "+" << len;
        if (fallocate(fd_, mode, off, len) != 0) return Fail(n, what, "fallocate");
        if (mode == 0 || mode == FALLOC_FL_ZERO_RANGE) {
          if (model_.size() < off + len) model_.resize(off + len, '\0');
        }
        if (mode != 0 && off < model_.size()) {
          size_t end = std::min(model_.size(), off + len);
          std::fill(model_.begin() + off, model_.begin() + end, '\0');
        }
        break;
      }
      case 5: {  // copy_file_range from src
        size_t from = Below(src_.size() - 1), len = 1 + Below(src_.size() - from - 1);
        size_t off = Below(kMaxSize - len);
        what << "copy_file_range src@" << from << " -> " << off << "+" << len;
        loff_t in = from, out = off;
        size_t done = 0;
        while (done < len) {
          ssize_t r = copy_file_range(src_fd_, &in, fd_, &out, len - done, 0);
          if (r <= 0) return Fail(n, what, "copy_file_range");
          done += r;
        }
        if (model_.size() < off + len) model_.resize(off + len, '\0');
        model_.replace(off, len, src_, from, len);
        break;
      }
      default: {  // read a random range
        size_t off = Below(kMaxSize), len = 1 + Below(max_op_ - 1);
        what << "read " << off << "+" << len;
        std::string buf(len, '\0');
        ssize_t r = pread(fd_, buf.data(), len, off);
        if (r < 0) return Fail(n, what, "pread");
        size_t expect = off >= model_.size() ? 0 : std::min(len, model_.size() - off);
        if (size_t(r) != expect || (r > 0 && buf.compare(0, r, model_, off, r) != 0)) {
          return ::testing::AssertionFailure() << "op " << n << " " << what.str() << ": read mismatch";
        }
        break;
      }
    }
    return Check(n, what.str());
  }

  // The file as seen through the mount equals the model.
  ::testing::AssertionResult Check(int n, const std::string& what) {
    struct stat st;
    if (fstat(fd_, &st) != 0) return Fail(n, what, "fstat");
    if (size_t(st.st_size) != model_.size()) {
      return ::testing::AssertionFailure() << "op " << n << " " << what << ": size " << st.st_size
                                           << ", model " << model_.size();
    }
    std::string buf(model_.size(), '\0');
    if (pread(fd_, buf.data(), buf.size(), 0) != ssize_t(buf.size()) || buf != model_) {
      size_t at = 0;
      while (at < buf.size() && buf[at] == model_[at]) ++at;
      return ::testing::AssertionFailure() << "op " << n << " " << what << ": content differs at "
                                           << at;
    }
    return ::testing::AssertionSuccess();
  }

  // A FLUSH, as close() sends: dirty pages (writes, mmap) are written back
  // before it returns, with or without a writeback cache.
  bool Flush() { return close(dup(fd_)) == 0; }

  void Close() {
    close(fd_);
    close(src_fd_);
    fd_ = src_fd_ = -1;
  }
  const std::string& model() const { return model_; }

 private:
  size_t Below(size_t n) { return n == 0 ? 0 : rng_() % (n + 1); }
  std::string Bytes(size_t len) {
    std::string s(len, '\0');
    const char c = static_cast<char>('a' + rng_() % 26);
    for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>(c + (i % 7));
    return s;
  }
  ::testing::AssertionResult Fail(int n, const std::ostringstream& what, const char* call) {
    return Fail(n, what.str(), call);
  }
  ::testing::AssertionResult Fail(int n, const std::string& what, const char* call) {
    return ::testing::AssertionFailure() << "op " << n << " " << what << ": " << call << ": "
                                         << strerror(errno);
  }

  const std::string dir_;
  std::mt19937 rng_;
  const bool truncates_;
  const size_t max_op_;
  int fd_ = -1, src_fd_ = -1;
  std::string model_, src_;
};

std::string ReadBacking(int root_fd, const char* name) {
  std::string path = "/proc/self/fd/" + std::to_string(root_fd) + "/" + name;
  int fd = open(path.c_str(), O_RDONLY);
  std::string out;
  if (fd < 0) return out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

// One line of fsx_mount's event log.
struct LoggedEvent {
  int op = 0;
  uint64_t offset = 0, length = 0, new_size = 0;
  uint64_t size = 0;  // the file's size after the change
  int64_t mtime_ns = 0;
  std::string path;
};

// The events logged from byte `from` of the log on.
std::vector<LoggedEvent> ReadEvents(const std::string& log, size_t from) {
  std::ifstream in(log);
  in.seekg(from);
  std::vector<LoggedEvent> events;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    LoggedEvent e;
    fields >> e.op >> e.offset >> e.length >> e.new_size >> e.size >> e.mtime_ns;
    fields.get();
    std::getline(fields, e.path);
    events.push_back(e);
  }
  return events;
}

size_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? size_t(st.st_size) : 0;
}

// Changed ranges [offset, end) reported for `path`. A truncate to N counts
// as [N, infinity).
std::vector<std::pair<uint64_t, uint64_t>> RangesOf(const std::vector<LoggedEvent>& events,
                                                    const std::string& path) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const LoggedEvent& e : events) {
    if (e.path != path) continue;
    switch (e.op) {
      case ChangeEvent::WRITE:
      case ChangeEvent::COPY_RANGE:
      case ChangeEvent::FALLOCATE:
        ranges.emplace_back(e.offset, e.offset + e.length);
        break;
      case ChangeEvent::TRUNCATE:
        ranges.emplace_back(e.new_size, UINT64_MAX);
        break;
      default:
        break;
    }
  }
  return ranges;
}

// Seconds the watchdog allows a workload of `ops` steps (a healthy step
// takes well under a millisecond; the slack is for a loaded machine).
double WorkloadTimeout(int ops) { return 60.0 + ops / 100.0; }

class FsxTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/replifs-fsx-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_ = dir_ + ".events";
    root_fd_ = open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(root_fd_, 0);
    std::string err = mount_.Start(FSX_MOUNT_BIN, dir_, log_, /*writeback=*/GetParam());
    ASSERT_EQ(err, "");
  }
  void TearDown() override {
    EXPECT_EQ(mount_.Stop(), "") << "the mount did not come down cleanly";
    if (root_fd_ >= 0) close(root_fd_);
    nftw(
        dir_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
    unlink(log_.c_str());
  }

  void RunSeed(uint32_t seed, int ops) {
    if (const char* soak = getenv("REPLIFS_FSX_OPS")) {
      ops = std::atoi(soak);
      const char* soak_seed = getenv("REPLIFS_FSX_SEED");
      seed = soak_seed ? std::strtoul(soak_seed, nullptr, 10) : seed;
    }
    std::string message;
    mount_.Arm(WorkloadTimeout(ops));
    {
      Exerciser x(dir_, seed);
      if (auto r = x.Open(std::string()); !r) message = r.message();
      for (int i = 0; i < ops && message.empty(); ++i) {
        if (auto r = x.Step(i); !r) message = r.message();
      }
      x.Close();
      // What reached the disk under the mount is what the program wrote.
      if (message.empty() && ReadBacking(root_fd_, "fsx") != x.model()) {
        message = "backing file differs from the model";
      }
    }
    ASSERT_FALSE(mount_.Disarm()) << "seed " << seed << ": workload hung; connection aborted ("
                                  << message << ")";
    EXPECT_EQ(message, "") << "seed " << seed;
  }

  void RunCoverage(uint32_t seed, bool truncates);

  std::string dir_, log_;
  int root_fd_ = -1;
  test::ExternalMount mount_;
};

INSTANTIATE_TEST_SUITE_P(Cache, FsxTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Writeback" : "WriteThrough"; });

// The harness itself: a daemon that stops answering makes the workload fail
// (ENOTCONN or ECONNABORTED after the watchdog's abort) instead of hanging the test.
TEST(ExternalMountTest, HungDaemonIsAbortedNotWedged) {
  char tmpl[] = "/tmp/replifs-fsx-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, log = dir + ".events";
  {
    test::ExternalMount mount;
    ASSERT_EQ(mount.Start(FSX_MOUNT_BIN, dir, log, /*writeback=*/true), "");
    ASSERT_EQ(kill(mount.pid(), SIGSTOP), 0);
    mount.Arm(1);
    struct stat st;
    const int res = stat((dir + "/never-cached").c_str(), &st);  // a lookup: reaches the daemon
    const int err = errno;
    EXPECT_TRUE(mount.Disarm()) << "the watchdog did not fire";
    EXPECT_EQ(res, -1);
    EXPECT_TRUE(err == ENOTCONN || err == ECONNABORTED) << strerror(err);
    kill(mount.pid(), SIGCONT);
    mount.Stop();
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mountinfo, line)) {
      EXPECT_EQ(line.find(" " + dir + " "), std::string::npos) << "still mounted: " << line;
    }
  }
  rmdir(dir.c_str());
  unlink(log.c_str());
}

// The tree under the mount keeps the mtimes the mount shows. With a
// writeback cache the kernel owns mtime: page-cache WRITEs must not stamp the
// daemon's clock (short writes get no SETATTR at all), and a SETATTR that
// overtakes WRITEs (sync(2) starts writeback without waiting) must win.
TEST_P(FsxTest, BackingMtimeIsTheMounts) {
  mount_.Arm(60);
  std::vector<std::string> differ;
  for (int i = 0; i < 40; ++i) {
    const std::string name = "m" + std::to_string(i % 8);
    int fd = open((dir_ + "/" + name).c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    const std::string data(4096, static_cast<char>('a' + i % 26));
    for (int k = 0; k < (i % 2 ? 1 : 32); ++k) {
      ASSERT_EQ(pwrite(fd, data.data(), data.size(), k * 3 * 4096), ssize_t(data.size()));
    }
    if (i % 4 == 0) sync();
    close(fd);
    struct stat mounted, backing;
    ASSERT_EQ(stat((dir_ + "/" + name).c_str(), &mounted), 0);
    ASSERT_EQ(fstatat(root_fd_, name.c_str(), &backing, 0), 0);
    if (mounted.st_mtim.tv_sec != backing.st_mtim.tv_sec ||
        mounted.st_mtim.tv_nsec != backing.st_mtim.tv_nsec) {
      differ.push_back(name + " (step " + std::to_string(i) + ")");
    }
  }
  EXPECT_FALSE(mount_.Disarm()) << "hung; connection aborted";
  EXPECT_TRUE(differ.empty()) << differ.size() << " mtimes differ, first " << differ[0];
}

TEST_P(FsxTest, Seed1) { RunSeed(1, 2000); }
TEST_P(FsxTest, Seed2) { RunSeed(2, 2000); }
TEST_P(FsxTest, Seed3) { RunSeed(3, 2000); }

// Every byte that differs after the workload lies in a reported range, and
// the new size was reported. Bytes past the old end that read as zero are
// holes an extension made: known from the size, no range needed.
::testing::AssertionResult Covered(const std::string& before, const std::string& after,
                                   const std::vector<LoggedEvent>& events,
                                   const std::string& path) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges = RangesOf(events, path);
  std::sort(ranges.begin(), ranges.end());
  const size_t end = std::max(before.size(), after.size());
  size_t uncovered = 0, first = 0;
  size_t r = 0;
  uint64_t reach = 0;  // covered up to here by ranges starting at or before i
  for (size_t i = 0; i < end; ++i) {
    const bool differs = i >= after.size() ||
                         (i < before.size() ? before[i] != after[i] : after[i] != '\0');
    while (r < ranges.size() && ranges[r].first <= i) reach = std::max(reach, ranges[r++].second);
    if (differs && i >= reach) {
      if (uncovered++ == 0) first = i;
    }
  }
  if (uncovered != 0) {
    return ::testing::AssertionFailure() << uncovered
                                         << " bytes changed without a reported range, first at "
                                         << first;
  }
  if (after.size() != before.size()) {
    uint64_t last_size = UINT64_MAX;
    for (const LoggedEvent& e : events) {
      if (e.path == path) last_size = e.size;
    }
    if (last_size != after.size()) {
      return ::testing::AssertionFailure() << "size went " << before.size() << " -> "
                                           << after.size() << ", last reported " << last_size;
    }
  }
  return ::testing::AssertionSuccess();
}

// A truncate to N is taken to cover [N, end of file) (a consumer re-reads
// past N), which would also hide a lost later write there: so the workload
// runs once without truncates (write, mmap, fallocate and copy ranges alone
// must cover everything) and once with them.

TEST_P(FsxTest, ReportedRangesCoverEveryChangedByteWithoutTruncates) {
  for (uint32_t seed : {11u, 12u, 13u}) RunCoverage(seed, /*truncates=*/false);
}

TEST_P(FsxTest, ReportedRangesCoverEveryChangedByte) {
  for (uint32_t seed : {21u, 22u, 23u}) RunCoverage(seed, /*truncates=*/true);
}

void FsxTest::RunCoverage(uint32_t seed, bool truncates) {
  std::string initial(kMaxSize / 2, '\0');
  std::mt19937 rng(seed);
  for (char& c : initial) c = static_cast<char>(rng());
  // Short rounds of small operations, each checked against its own events:
  // over a long run, later overlapping ranges would hide a lost one.
  constexpr int kRounds = 40, kOpsPerRound = 12;
  constexpr size_t kSmallOp = 4096;
  std::string message;
  int rounds_changed = 0;
  mount_.Arm(WorkloadTimeout(kRounds * kOpsPerRound));
  {
    Exerciser x(dir_, seed, truncates, kSmallOp);
    if (auto r = x.Open(initial); !r) message = r.message();
    if (auto r = x.Check(-1, "initial"); message.empty() && !r) message = r.message();
    // The setup's dirty pages are written back (and logged) now, so the
    // "before" picture and the log position agree.
    if (message.empty() && !x.Flush()) message = "flush failed";
    if (message.empty() && ReadBacking(root_fd_, "fsx") != initial) message = "setup not on disk";
    std::string before = initial;
    for (int round = 0; round < kRounds && message.empty(); ++round) {
      const size_t log_from = FileSize(log_);
      for (int i = 0; i < kOpsPerRound && message.empty(); ++i) {
        if (auto r = x.Step(round * kOpsPerRound + i); !r) message = r.message();
      }
      if (!message.empty()) break;
      if (!x.Flush()) message = "flush failed";
      const std::string after = ReadBacking(root_fd_, "fsx");
      if (message.empty() && after != x.model()) {
        message = "round " + std::to_string(round) + ": backing file differs from the model";
      }
      if (!message.empty()) break;
      if (after != before) ++rounds_changed;
      if (auto r = Covered(before, after, ReadEvents(log_, log_from), "fsx"); !r) {
        message = "round " + std::to_string(round) + ": " + r.message() + " (size " +
                  std::to_string(before.size()) + " -> " + std::to_string(after.size()) + ", " +
                  std::to_string(ReadEvents(log_, log_from).size()) + " events)";
      }
      before = after;
    }
    x.Close();
  }
  ASSERT_FALSE(mount_.Disarm()) << "seed " << seed << ": workload hung; connection aborted ("
                                << message << ")";
  EXPECT_EQ(message, "") << "seed " << seed;
  // The test is only as good as its changes: most rounds must change bytes.
  EXPECT_GT(rounds_changed, kRounds / 2) << "seed " << seed;
}

}  // namespace
}  // namespace replifs
