#include "tests/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "cli/mount_table.h"

namespace replifs::test {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available without blocking. Returns false at EOF or error.
bool ReadAvailable(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "[...]" + s.substr(s.size() - n);
}

using cli::ReadMounts;  // the daemon's own mountinfo reader

std::string FromEnvOr(const char* var, const std::string& fallback) {
  const char* v = getenv(var);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}
std::string ReplifsBin() { return FromEnvOr("REPLIFS_BIN", Binaries().replifs); }
std::string ServerBin() { return FromEnvOr("REPLIFS_SERVER_BIN", Binaries().server); }

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---------------------------------------------------------------- processes

BinaryPaths& Binaries() {
  static BinaryPaths paths;
  return paths;
}

std::string RunResult::Describe() const {
  std::ostringstream s;
  s << "command: " << command << "\n  exit code: " << exit_code
    << (timed_out ? " (TIMED OUT, killed)" : "") << " after " << seconds << " s"
    << "\n  stdout: " << (out.empty() ? "(empty)" : Tail(out, 4000))
    << "\n  stderr: " << (err.empty() ? "(empty)" : Tail(err, 4000));
  return s.str();
}

RunResult RunProcess(const std::vector<std::string>& argv, double timeout_s) {
  RunResult r;
  for (const auto& a : argv) r.command += (r.command.empty() ? "" : " ") + a;
  const auto t0 = Clock::now();
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + strerror(errno);
    return r;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + strerror(errno);
    close(out_pipe[0]);
    close(out_pipe[1]);
    return r;
  }
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

  pid_t pid = fork();
  if (pid == 0) {
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execv(cargv[0], cargv.data());
    const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    r.err = std::string("fork: ") + strerror(errno);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return r;
  }
  SetNonBlocking(out_pipe[0]);
  SetNonBlocking(err_pipe[0]);
  bool out_open = true, err_open = true;
  int status = 0;
  bool exited = false;
  for (;;) {
    pollfd fds[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0}, {err_open ? err_pipe[0] : -1, POLLIN, 0}};
    poll(fds, 2, 20);
    if (out_open) out_open = ReadAvailable(out_pipe[0], r.out);
    if (err_open) err_open = ReadAvailable(err_pipe[0], r.err);
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exited = true;
      break;
    }
    if (SecondsSince(t0) > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.timed_out = true;
      exited = true;
      break;
    }
  }
  // Drain what the child wrote before exiting; do not wait for EOF, since a
  // daemon it forked may keep the pipes open.
  const auto drain_until = Clock::now() + std::chrono::milliseconds(100);
  while ((out_open || err_open) && Clock::now() < drain_until) {
    pollfd fds[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0}, {err_open ? err_pipe[0] : -1, POLLIN, 0}};
    if (poll(fds, 2, 10) <= 0) break;
    if (out_open) out_open = ReadAvailable(out_pipe[0], r.out);
    if (err_open) err_open = ReadAvailable(err_pipe[0], r.err);
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  if (exited) {
    if (WIFEXITED(status))
      r.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      r.exit_code = 128 + WTERMSIG(status);
  }
  r.seconds = SecondsSince(t0);
  return r;
}

::testing::AssertionResult Succeeded(const RunResult& r) {
  if (r.exit_code == 0 && !r.timed_out) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.Describe();
}

::testing::AssertionResult FailedWithOneLine(const RunResult& r) {
  if (r.timed_out) return ::testing::AssertionFailure() << "timed out\n" << r.Describe();
  if (r.exit_code == 0) return ::testing::AssertionFailure() << "exit code 0, expected failure\n" << r.Describe();
  if (r.exit_code < 0 || r.exit_code >= 128)
    return ::testing::AssertionFailure() << "did not exit normally\n" << r.Describe();
  std::string e = r.err;
  while (!e.empty() && (e.back() == '\n' || e.back() == '\r')) e.pop_back();
  if (e.empty()) return ::testing::AssertionFailure() << "nothing on stderr\n" << r.Describe();
  if (e.find('\n') != std::string::npos)
    return ::testing::AssertionFailure() << "more than one line on stderr\n" << r.Describe();
  return ::testing::AssertionSuccess() << "stderr: " << e;
}

// ---------------------------------------------------------------- files

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return "";
  return buf.data();
}

void RemoveTree(const std::string& path) {
  if (path.empty() || path == "/" || path.rfind("/tmp/", 0) != 0) return;  // paranoia
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) std::cerr << "warning: could not remove " << path << ": " << ec.message() << "\n";
}

std::string MountFsType(const std::string& dir) {
  std::string type;
  for (const auto& m : ReadMounts())
    if (m.mountpoint == dir) type = m.fstype;  // later lines are mounted on top
  return type;
}

bool IsMounted(const std::string& dir) { return !MountFsType(dir).empty(); }

int MountCount(const std::string& dir) {
  int n = 0;
  for (const auto& m : ReadMounts()) n += m.mountpoint == dir;
  return n;
}

int DetachMountsUnder(const std::string& dir) {
  int count = 0;
  for (int round = 0; round < 10; ++round) {
    bool any = false;
    auto mounts = ReadMounts();
    std::reverse(mounts.begin(), mounts.end());
    for (const auto& m : mounts) {
      if (m.mountpoint == dir || m.mountpoint.rfind(dir + "/", 0) == 0) {
        if (umount2(m.mountpoint.c_str(), MNT_DETACH) == 0) {
          ++count;
          any = true;
        }
      }
    }
    if (!any) break;
  }
  return count;
}

std::string ProcessCmdline(pid_t pid) {
  std::string s = ReadSmallFile("/proc/" + std::to_string(pid) + "/cmdline");
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  auto p = stat.rfind(')');
  if (p == std::string::npos || p + 2 >= stat.size()) return false;
  char state = stat[p + 2];
  return state != 'Z' && state != 'X';
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

void WriteFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << "open " << path << ": " << strerror(errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "write " << path << ": " << strerror(errno);
    done += static_cast<size_t>(n);
  }
  ASSERT_EQ(close(fd), 0) << "close " << path << ": " << strerror(errno);
}

std::string ReadFile(const std::string& path, int* err) {
  if (err) *err = 0;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return "";
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (err) *err = errno;
      break;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

::testing::AssertionResult FileContentIs(const std::string& path, const std::string& expected) {
  int err = 0;
  std::string got = ReadFile(path, &err);
  if (err != 0) return ::testing::AssertionFailure() << "cannot read " << path << ": " << strerror(err);
  if (got == expected) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < expected.size() && got[i] == expected[i]) ++i;
  auto show = [](const std::string& s, size_t at) {
    std::string w = s.substr(at, 40);
    for (auto& c : w)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '.';
    return "\"" + w + "\"";
  };
  return ::testing::AssertionFailure() << path << ": " << got.size() << " bytes, expected "
                                       << expected.size() << "; first difference at byte " << i
                                       << ": got " << show(got, i) << ", expected " << show(expected, i);
}

std::string FormatRfc3339Millis(const struct timespec& t) {
  struct tm tm {};
  time_t secs = t.tv_sec;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, t.tv_nsec / 1000000);
  return buf;
}

std::string FormatAtSeconds(const struct timespec& t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "@%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return buf;
}

// ---------------------------------------------------------------- server

ServerProcess::~ServerProcess() { Stop(2); }

std::string ServerProcess::Start(const std::string& store, const std::string& listen,
                                 const std::string& log_path, double timeout_s,
                                 const std::vector<std::string>& extra_args) {
  if (running()) return "server already running";
  const std::string bin = ServerBin();
  if (bin.empty() || access(bin.c_str(), X_OK) != 0) return "replifs-server binary missing: '" + bin + "'";
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return std::string("pipe: ") + strerror(errno);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<std::string> argv = {bin, "--listen", listen, "--store", store};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    if (log_fd >= 0) dup2(log_fd, 2);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  if (log_fd >= 0) close(log_fd);
  if (devnull >= 0) close(devnull);
  if (pid < 0) {
    close(out_pipe[0]);
    return std::string("fork: ") + strerror(errno);
  }
  pid_ = pid;
  out_fd_ = out_pipe[0];
  SetNonBlocking(out_fd_);
  {
    std::lock_guard<std::mutex> l(mu_);
    out_.clear();
  }

  const std::string prefix = "replifs-server listening on ";
  const auto t0 = Clock::now();
  std::string buf;
  std::string error;
  for (;;) {
    pollfd pfd{out_fd_, POLLIN, 0};
    poll(&pfd, 1, 50);
    bool open_ = ReadAvailable(out_fd_, buf);
    size_t nl;
    bool found = false;
    size_t start = 0;
    while ((nl = buf.find('\n', start)) != std::string::npos) {
      std::string line = buf.substr(start, nl - start);
      start = nl + 1;
      if (line.rfind(prefix, 0) == 0) {
        std::string addr = line.substr(prefix.size());
        auto colon = addr.rfind(':');
        if (colon != std::string::npos) port_ = std::atoi(addr.c_str() + colon + 1);
        if (port_ <= 0) error = "unparsable listening line: " + line;
        found = true;
        break;
      }
    }
    if (found) break;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error = "replifs-server exited (status " + std::to_string(status) + ") before listening";
      break;
    }
    if (!open_) {
      error = "replifs-server closed stdout before listening";
      break;
    }
    if (SecondsSince(t0) > timeout_s) {
      error = "replifs-server did not print its listening line within " + std::to_string(timeout_s) + " s";
      break;
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    out_ = buf;
  }
  if (!error.empty()) {
    Stop(2);
    return error + "; stdout: " + buf + "; stderr log: " + Tail(ReadSmallFile(log_path), 3000);
  }
  stop_drain_ = false;
  drain_ = std::thread([this] {
    while (!stop_drain_) {
      pollfd pfd{out_fd_, POLLIN, 0};
      poll(&pfd, 1, 100);
      std::string chunk;
      bool open_ = ReadAvailable(out_fd_, chunk);
      {
        std::lock_guard<std::mutex> l(mu_);
        out_ += chunk;
      }
      if (!open_) break;
    }
  });
  return "";
}

std::string ServerProcess::Stop(double grace_s) {
  std::string how;
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    const auto t0 = Clock::now();
    int status = 0;
    bool reaped = false;
    while (SecondsSince(t0) < grace_s) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped = true;
        break;
      }
      usleep(20000);
    }
    if (!reaped) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      how = "did not exit within " + std::to_string(grace_s) + " s of SIGTERM; killed";
    } else if (WIFEXITED(status)) {
      how = "exited with status " + std::to_string(WEXITSTATUS(status)) + " after SIGTERM";
    } else if (WIFSIGNALED(status)) {
      how = "ended by signal " + std::to_string(WTERMSIG(status));
    }
    pid_ = -1;
  }
  stop_drain_ = true;
  if (drain_.joinable()) drain_.join();
  if (out_fd_ >= 0) {
    close(out_fd_);
    out_fd_ = -1;
  }
  return how;
}

std::string ServerProcess::stdout_text() {
  std::lock_guard<std::mutex> l(mu_);
  return out_;
}

// ---------------------------------------------------------------- content

void PopulateInitialTree(const std::string& d) {
  auto mk = [&](const std::string& rel, mode_t mode = 0755) {
    ASSERT_EQ(mkdir((d + "/" + rel).c_str(), mode), 0) << rel << ": " << strerror(errno);
  };
  WriteFile(d + "/big.bin", RandomBytes(3 << 20, 1));
  WriteFile(d + "/append.txt", "first line\n");
  WriteFile(d + "/shrink.bin", RandomBytes(200 * 1024, 2));
  WriteFile(d + "/grow.bin", RandomBytes(10 * 1024, 3));
  WriteFile(d + "/over_src.txt", "the source of a rename over another file\n");
  WriteFile(d + "/over_dst.txt", "the file that gets replaced\n");
  mk("tree");
  mk("tree/sub");
  mk("tree/sub/deeper");
  WriteFile(d + "/tree/a.txt", "tree a\n");
  WriteFile(d + "/tree/sub/b.txt", "tree sub b\n");
  WriteFile(d + "/tree/sub/deeper/c.bin", RandomBytes(100 * 1024, 4));
  WriteFile(d + "/del1.txt", "delete me 1\n");
  WriteFile(d + "/del2.txt", "delete me 2\n");
  mk("emptydir");
  WriteFile(d + "/link_src.txt", "hard link source\n");
  WriteFile(d + "/punch.bin", RandomBytes(512 * 1024, 5));
  WriteFile(d + "/mmap.bin", RandomBytes(64 * 1024, 6));
  WriteFile(d + "/mmap2.bin", RandomBytes(64 * 1024, 7));
  WriteFile(d + "/script.sh", "#!/bin/sh\necho hi\n", 0755);
  mk("docs");
  WriteFile(d + "/docs/readme.md", "# readme\n");
  ASSERT_EQ(symlink("tree/a.txt", (d + "/sym_to_a").c_str()), 0) << strerror(errno);
  ASSERT_EQ(setxattr((d + "/docs/readme.md").c_str(), "user.pre", "existing", 8, 0), 0)
      << "setxattr on the underlying fs: " << strerror(errno);
  struct timespec ts[2] = {{1600000000, 111111111}, {1600000000, 987654321}};
  ASSERT_EQ(utimensat(AT_FDCWD, (d + "/docs/readme.md").c_str(), ts, 0), 0) << strerror(errno);
}

// ---------------------------------------------------------------- fixture

bool InCI() {
  const char* ci = getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

void ReplifsTest::SetUp() {
  std::string why_not;
  if (geteuid() != 0) why_not = "integration tests need root (FUSE mounts, chown, setuid children)";
  else if (access("/dev/fuse", R_OK | W_OK) != 0)
    why_not = std::string("/dev/fuse is not usable: ") + strerror(errno);
  if (!why_not.empty()) {
    if (InCI()) FAIL() << why_not << " (CI=true: not skipping)";
    GTEST_SKIP() << why_not;
  }
  ASSERT_EQ(access(ReplifsBin().c_str(), X_OK), 0) << "replifs binary missing: " << ReplifsBin();
  ASSERT_EQ(access(ServerBin().c_str(), X_OK), 0) << "replifs-server binary missing: " << ServerBin();

  root_ = MakeTempDir("replifs-it-");
  ASSERT_FALSE(root_.empty()) << "mkdtemp: " << strerror(errno);
  // Unprivileged test users must be able to reach the protected dir.
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  prot_ = root_ + "/protected";
  state_ = root_ + "/state";
  store_ = root_ + "/store";
  server_log_ = root_ + "/server.log";
  ASSERT_EQ(mkdir(prot_.c_str(), 0755), 0);
  ASSERT_EQ(chmod(prot_.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(state_.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(store_.c_str(), 0700), 0);
  ASSERT_EQ(guard_.Arm(root_, state_), "") << "starting the orphan guard";
  std::string err = server_.Start(store_, "127.0.0.1:0", server_log_);
  ASSERT_EQ(err, "") << "starting replifs-server";
  ASSERT_EQ(guard_.AddServer(server_.pid()), "");
  // The operator creates the repository; the client gets its token in a file.
  token_file_ = root_ + "/token";
  ASSERT_NO_FATAL_FAILURE(CreateRepo(repo_, token_file_));
  // Also in the state dir, where `replifs mount --state` finds it without
  // --token-file (as an earlier mount would have left it).
  WriteFile(state_ + "/token", ReadFile(token_file_), 0600);
  std::cout << "[ harness  ] server " << server_.address() << " pid " << server_.pid()
            << ", protected dir " << prot_ << std::endl;
  ASSERT_NO_FATAL_FAILURE(PopulateInitialTree(prot_));
}

void ReplifsTest::TearDown() {
  if (root_.empty()) return;
  if (HasFailure()) DumpDiagnostics();
  if (IsMounted(prot_)) {
    RunResult r = Run({"umount", prot_, "--lazy"}, 60);
    if (r.exit_code != 0) std::cerr << "teardown: " << r.Describe() << "\n";
  }
  int detached = DetachMountsUnder(root_);
  if (detached > 0) std::cerr << "teardown: detached " << detached << " mount(s) under " << root_ << "\n";
  pid_t daemon = DaemonPid();
  if (daemon > 0 && ProcessAlive(daemon) && ProcessCmdline(daemon).find("replifs") != std::string::npos) {
    kill(daemon, SIGTERM);
    if (!WaitDaemonGone(daemon, 5)) {
      kill(daemon, SIGKILL);
      WaitDaemonGone(daemon, 5);
    }
  }
  server_.Stop();
  DetachMountsUnder(root_);
  guard_.Disarm();
  if (IsMounted(prot_)) {
    std::cerr << "teardown: " << prot_ << " still mounted; not removing " << root_ << "\n";
    return;
  }
  if (getenv("REPLIFS_KEEP_TEMP") != nullptr) {
    std::cerr << "teardown: keeping " << root_ << "\n";
    return;
  }
  RemoveTree(root_);
}

void ReplifsTest::DumpDiagnostics() {
  std::cerr << "---- diagnostics for " << root_ << "\n";
  std::cerr << "mount fs type of " << prot_ << ": '" << MountFsType(prot_) << "'\n";
  pid_t d = DaemonPid();
  std::cerr << "daemon pid " << d << (ProcessAlive(d) ? " (alive)" : " (not running)") << "\n";
  if (IsMounted(prot_)) std::cerr << Status().Describe() << "\n";
  std::cerr << "server stdout: " << Tail(server_.stdout_text(), 2000) << "\n";
  std::cerr << "server stderr (tail): " << Tail(ReadSmallFile(server_log_), 6000) << "\n";
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(state_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::cerr << "state: " << it->path().string();
    if (it->is_regular_file(ec)) std::cerr << " (" << it->file_size(ec) << " bytes)";
    std::cerr << "\n";
    auto name = it->path().filename().string();
    if (name.find("log") != std::string::npos && it->is_regular_file(ec)) {
      std::string text = Tail(ReadSmallFile(it->path().string()), 6000);
      size_t binary = std::count_if(text.begin(), text.end(), [](unsigned char c) {
        return c == 0 || (c < 0x20 && c != '\n' && c != '\t' && c != '\r');
      });
      if (binary == 0) std::cerr << text << "\n";  // not the binary journal
    }
  }
  std::cerr << "---- end diagnostics\n";
}

void ReplifsTest::CreateRepo(const std::string& name, const std::string& token_file,
                             const std::string& store) {
  RunResult r = RunProcess({ServerBin(), "repo", "create", name, "--store", store.empty() ? store_ : store}, 60);
  ASSERT_EQ(r.exit_code, 0) << "replifs-server repo create\n" << r.Describe();
  ASSERT_EQ(r.out.size(), 65u) << "expected one 64-hex-digit token line\n" << r.Describe();
  WriteFile(token_file, r.out, 0600);
}

RunResult ReplifsTest::Run(std::vector<std::string> args, double timeout_s) {
  args.insert(args.begin(), ReplifsBin());
  RunResult r = RunProcess(args, timeout_s);
  return r;
}

RunResult ReplifsTest::Mount(std::vector<std::string> extra) {
  std::vector<std::string> a = {"mount", prot_, "--server", server_.address(), "--repo", repo_,
                                "--state", state_, "--token-file", token_file_};
  a.insert(a.end(), extra.begin(), extra.end());
  return Run(a, 90);
}

::testing::AssertionResult ReplifsTest::MountOk(std::vector<std::string> extra) {
  RunResult r = Mount(extra);
  if (r.exit_code != 0 || r.timed_out) return ::testing::AssertionFailure() << "mount failed\n" << r.Describe();
  std::string type = MountFsType(prot_);
  if (type != "fuse.replifs")
    return ::testing::AssertionFailure() << "after `replifs mount` exited 0, " << prot_
                                         << " has mount type '" << type << "', expected fuse.replifs\n"
                                         << r.Describe();
  pid_t d = DaemonPid();
  if (!ProcessAlive(d))
    return ::testing::AssertionFailure() << "daemon.pid (" << d << ") names no live process\n" << r.Describe();
  std::cout << "[ harness  ] mounted in " << r.seconds << " s, daemon pid " << d << std::endl;
  return ::testing::AssertionSuccess();
}

RunResult ReplifsTest::Umount(bool lazy) {
  std::vector<std::string> a = {"umount", prot_};
  if (lazy) a.push_back("--lazy");
  return Run(a, 120);
}

RunResult ReplifsTest::Sync(double timeout_s) {
  char t[32];
  std::snprintf(t, sizeof t, "%g", timeout_s);
  RunResult r = Run({"sync", prot_, "--timeout", t}, timeout_s + 30);
  std::cout << "[ harness  ] sync took " << r.seconds << " s (exit " << r.exit_code << ")" << std::endl;
  return r;
}

RunResult ReplifsTest::Status() { return Run({"status", prot_}, 30); }

RunResult ReplifsTest::Verify() { return Run({"verify", prot_}, 180); }

RunResult ReplifsTest::Restore(const std::string& dest, std::vector<std::string> extra) {
  std::vector<std::string> a = {"restore", "--to", dest, prot_};
  a.insert(a.end(), extra.begin(), extra.end());
  return Run(a, 180);
}

RunResult ReplifsTest::RestoreFromServer(const std::string& dest, std::vector<std::string> extra) {
  std::vector<std::string> a = {"restore", "--to", dest, "--server", server_.address(), "--repo", repo_,
                                "--token-file", token_file_};
  a.insert(a.end(), extra.begin(), extra.end());
  return Run(a, 180);
}

std::optional<long long> ReplifsTest::PendingChanges() {
  RunResult r = Status();
  if (r.exit_code != 0) return std::nullopt;
  std::istringstream in(r.out);
  std::string line;
  const std::string key = "pending changes:";
  while (std::getline(in, line)) {
    auto p = line.find(key);
    if (p == std::string::npos) continue;
    const char* s = line.c_str() + p + key.size();
    char* end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (end != s) return v;
  }
  return std::nullopt;
}

pid_t ReplifsTest::DaemonPid() const {
  if (state_.empty()) return -1;
  std::string s = ReadSmallFile(state_ + "/daemon.pid");
  long v = std::strtol(s.c_str(), nullptr, 10);
  return v > 1 ? static_cast<pid_t>(v) : -1;
}

bool ReplifsTest::WaitDaemonGone(pid_t pid, double timeout_s) {
  const auto t0 = Clock::now();
  while (ProcessAlive(pid)) {
    if (SecondsSince(t0) > timeout_s) return false;
    usleep(20000);
  }
  return true;
}

std::string ReplifsTest::StopServer() { return server_.Stop(); }

std::string ReplifsTest::RestartServerSamePort() {
  const std::string listen = server_.address();
  std::string last;
  // The port may linger briefly; retry for a few seconds.
  for (int attempt = 0; attempt < 10; ++attempt) {
    last = server_.Start(store_, listen, server_log_);
    if (last.empty()) return guard_.AddServer(server_.pid());
    usleep(500000);
  }
  return last;
}

std::string ReplifsTest::FreshPath(const std::string& name) {
  return root_ + "/" + name + "-" + std::to_string(++fresh_counter_);
}

}  // namespace replifs::test
