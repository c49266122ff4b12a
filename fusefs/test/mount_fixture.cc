#include "fusefs/test/mount_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace replifs::fusefs {

void RecordingSink::OnChange(ChangeEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(event));
}

void RecordingSink::OnDurabilityBarrier() {
  std::lock_guard<std::mutex> lock(mu_);
  ++barriers_;
}

std::vector<ChangeEvent> RecordingSink::Events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::vector<ChangeEvent> RecordingSink::Find(ChangeEvent::Op op,
                                             std::optional<std::string> path) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ChangeEvent> out;
  for (const ChangeEvent& e : events_) {
    if (e.op() == op && (!path || e.path() == *path)) out.push_back(e);
  }
  return out;
}

int RecordingSink::barriers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return barriers_;
}

void RecordingSink::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  events_.clear();
}

void MountTest::SetUp() {
  char tmpl[] = "/tmp/replifs-fusefs-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
  dir_ = tmpl;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  WriteAll(dir_ + "/hello.txt", "hello world\n");
  ASSERT_EQ(mkdir((dir_ + "/dir").c_str(), 0755), 0);
  WriteAll(dir_ + "/dir/inner.txt", "inner\n");

  root_fd_ = open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root_fd_, 0) << strerror(errno);
  MountOptions options;
  options.mountpoint = dir_;
  options.backing_root_fd = root_fd_;
  options.fsname = "replifs-test";
  // Not fuse.replifs: `replifs mount` (other tests) detaches those it finds no daemon for.
  options.subtype = "replifs-test";
  options.max_pinned_fds = max_pinned_fds_;
  absl::StatusOr<std::unique_ptr<PassthroughFs>> fs = PassthroughFs::Mount(options, &sink_);
  ASSERT_TRUE(fs.ok()) << fs.status();
  fs_ = std::move(*fs);
  loop_ = std::thread([this] { run_status_ = fs_->Run(); });
}

void MountTest::StopAndUnmount() {
  if (!fs_) return;
  if (umount2(dir_.c_str(), 0) != 0) umount2(dir_.c_str(), MNT_DETACH);
  if (loop_.joinable()) loop_.join();
  fs_->Unmount();
  fs_.reset();
}

void MountTest::TearDown() {
  StopAndUnmount();
  EXPECT_FALSE(IsMounted(dir_));
  if (root_fd_ >= 0) close(root_fd_);
  if (!dir_.empty() && !IsMounted(dir_)) {
    nftw(
        dir_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
}

std::string MountTest::M(const std::string& rel) const {
  return rel.empty() ? dir_ : dir_ + "/" + rel;
}

std::string MountTest::B(const std::string& rel) const {
  std::string base = "/proc/self/fd/" + std::to_string(root_fd_);
  return rel.empty() ? base : base + "/" + rel;
}

std::string MountTest::ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void MountTest::WriteAll(const std::string& path, const std::string& data, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(write(fd, data.data(), data.size()), ssize_t(data.size()));
  ASSERT_EQ(close(fd), 0);
}

struct stat MountTest::Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
  return st;
}

bool MountTest::IsMounted(const std::string& dir) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target;
    fields >> source >> target;
    if (target == dir) return true;
  }
  return false;
}

int MountTest::RunAsNobody(const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) != 0 ||
        setgroups(0, nullptr) != 0 ||  // drop root's supplementary groups
        setresuid(65534, 65534, 65534) != 0) {
      _exit(100);
    }
    _exit(fn());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

}  // namespace replifs::fusefs
