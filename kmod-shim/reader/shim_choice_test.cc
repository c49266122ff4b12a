// `replifs mount` runs the loadable module where its character device
// exists, else eBPF; REPLIFS_SHIM overrides.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "kmod-shim/reader/module_shim.h"

namespace replifs::shim {
namespace {

class ShimChoiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shim-choice-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    unlink((dir_ + "/dev").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(ShimChoiceTest, EbpfWithoutTheDevice) {
  EXPECT_EQ(ChooseShim(nullptr, dir_ + "/dev"), ShimKind::kEbpf);
  EXPECT_EQ(ChooseShim("", dir_ + "/dev"), ShimKind::kEbpf);
}

TEST_F(ShimChoiceTest, ARegularFileIsNotTheModule) {
  int fd = open((dir_ + "/dev").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(ChooseShim(nullptr, dir_ + "/dev"), ShimKind::kEbpf);
}

TEST_F(ShimChoiceTest, ModuleWhenItsCharacterDeviceExists) {
  // Any character device stands in for /dev/replifs_shim (1:3 is /dev/null's).
  if (mknod((dir_ + "/dev").c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0) {
    if (getenv("CI") != nullptr && std::string(getenv("CI")) == "true") FAIL() << "mknod needs root";
    GTEST_SKIP() << "mknod needs root";
  }
  EXPECT_EQ(ChooseShim(nullptr, dir_ + "/dev"), ShimKind::kModule);
  EXPECT_EQ(ChooseShim("ebpf", dir_ + "/dev"), ShimKind::kEbpf) << "the environment overrides";
  EXPECT_EQ(ChooseShim("off", dir_ + "/dev"), ShimKind::kOff);
}

TEST_F(ShimChoiceTest, EnvironmentOverrides) {
  EXPECT_EQ(ChooseShim("off", dir_ + "/dev"), ShimKind::kOff);
  EXPECT_EQ(ChooseShim("module", dir_ + "/dev"), ShimKind::kModule);
  EXPECT_STREQ(ShimKindName(ShimKind::kModule), "module");
  EXPECT_STREQ(ShimKindName(ShimKind::kEbpf), "ebpf");
}

TEST_F(ShimChoiceTest, StartingWithoutTheModuleSaysWhy) {
  replifs_shim_config config{};
  auto shim = ModuleShim::Start(config, [](const void*, size_t) {}, dir_ + "/dev");
  ASSERT_FALSE(shim.ok());
  EXPECT_NE(shim.status().message().find(dir_ + "/dev"), std::string::npos) << shim.status();
}

}  // namespace
}  // namespace replifs::shim
