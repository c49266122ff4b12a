// A real FUSE mount of PassthroughFs over a fresh temp dir, with a sink that
// records every event. TearDown always unmounts and joins, even after a
// failed assertion.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "fusefs/event_sink.h"
#include "fusefs/passthrough_fs.h"
#include "gtest/gtest.h"

namespace replifs::fusefs {

using replifs::v1::ChangeEvent;

class RecordingSink : public EventSink {
 public:
  void OnChange(ChangeEvent event) override;
  void OnDurabilityBarrier() override;

  std::vector<ChangeEvent> Events() const;
  // Events with this op (and path, if given), in order.
  std::vector<ChangeEvent> Find(ChangeEvent::Op op, std::optional<std::string> path = {}) const;
  int barriers() const;
  void Clear();

 private:
  mutable std::mutex mu_;  // guards events_ and barriers_
  std::vector<ChangeEvent> events_;
  int barriers_ = 0;
};

// A fresh temp dir (mode 0755) with:
//   hello.txt      "hello world\n"
//   dir/inner.txt  "inner\n"
class MountTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Through the mount.
  std::string M(const std::string& rel) const;
  // The backing directory under the mount, via the saved root fd.
  std::string B(const std::string& rel) const;

  static std::string ReadAll(const std::string& path);
  static void WriteAll(const std::string& path, const std::string& data, mode_t mode = 0644);
  static struct stat Lstat(const std::string& path);
  static bool IsMounted(const std::string& dir);
  // Runs fn in a child process as uid/gid 65534; returns its exit code.
  static int RunAsNobody(const std::function<int()>& fn);

  void StopAndUnmount();

  std::string dir_;
  int root_fd_ = -1;
  std::size_t max_pinned_fds_ = 0;  // MountOptions::max_pinned_fds; set before SetUp
  RecordingSink sink_;
  std::unique_ptr<PassthroughFs> fs_;
  std::thread loop_;
  absl::Status run_status_;
};

}  // namespace replifs::fusefs
