// Replication runs at a low CPU priority (nice 10), the filesystem at the normal
// one (cli/daemon.cc, LowerThisThreadsPriority): on a busy machine the
// chunking and uploading take only the CPU that programs writing through the
// mount leave idle (issue 4, bench/fs repl/norepl). Checked on a real daemon
// by the nice value of each of its threads (/proc/PID/task/TID/stat).
#include <dirent.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

constexpr int kReplicationNice = 10;  // cli/daemon.cc

// tid -> nice of every thread of `pid`.
std::map<int, int> ThreadNiceValues(pid_t pid) {
  std::map<int, int> out;
  const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = opendir(task_dir.c_str());
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream in(task_dir + "/" + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    // Fields after the ")" closing the name: state is field 3, nice field 19.
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i < 19 && fields >> field;) ++i;
    int nice;
    if (fields >> nice) out[std::stoi(entry->d_name)] = nice;
  }
  closedir(dir);
  return out;
}

class ReplicationPriorityTest : public ReplifsTest {};

TEST_F(ReplicationPriorityTest, UploadThreadsAreLoweredAndTheFilesystemIsNot) {
  ASSERT_TRUE(MountOk());
  WriteFile(P("lowered.txt"), RandomBytes(300 << 10, 41));
  ASSERT_TRUE(Succeeded(Sync()));  // the scheduler's processing thread has sent a batch
  const pid_t pid = DaemonPid();
  ASSERT_GT(pid, 0);
  const std::map<int, int> nice = ThreadNiceValues(pid);
  ASSERT_FALSE(nice.empty());
  int lowered = 0;
  for (const auto& [tid, value] : nice) lowered += value == kReplicationNice;
  EXPECT_GE(lowered, 1) << "no replication thread runs at nice " << kReplicationNice;
  // The main thread runs the FUSE loop and starts its workers: lowering it
  // (or the whole process) would slow every request through the mount.
  ASSERT_TRUE(nice.count(pid));
  EXPECT_EQ(nice.at(pid), 0);
  EXPECT_LT(lowered, static_cast<int>(nice.size())) << "every thread was lowered";
  // The mount still answers, and the file reached the server whole.
  EXPECT_TRUE(Succeeded(Verify()));
}

}  // namespace
}  // namespace replifs::test
