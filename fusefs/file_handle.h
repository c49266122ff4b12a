// An open backing file: what fuse_file_info::fh points to.
#pragma once

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "fusefs/open_writers.h"

namespace replifs::fusefs {

class FileHandle {
 public:
  FileHandle(int fd, bool append) : fd_(fd), append_(append) {}
  ~FileHandle() {
    close(fd_);
    if (positional_fd_ >= 0) close(positional_fd_);
    if (writers_ != nullptr) writers_->Released(writer_ino_);
  }
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;

  static FileHandle& Of(const fuse_file_info* fi) {
    return *reinterpret_cast<FileHandle*>(static_cast<std::uintptr_t>(fi->fh));
  }

  int fd() const { return fd_; }

  // A write handle: counted in `writers` until this handle is released.
  void CountAsWriter(OpenWriters* writers, uint64_t ino) {
    writers_ = writers;
    writer_ino_ = ino;
    writers->Opened(ino);
  }
  // The backing fd keeps O_APPEND, so appends land at the real end of file
  // even if it grew underneath the overlay.
  bool append() const { return append_; }

  // A second fd without O_APPEND, for page-cache writeback (mmap) whose
  // offsets are exact and must not be turned into appends. Opened once.
  int PositionalFd() {
    std::lock_guard<std::mutex> lock(mu_);
    if (positional_fd_ < 0) {
      std::string proc = "/proc/self/fd/" + std::to_string(fd_);
      positional_fd_ = open(proc.c_str(), O_WRONLY | O_CLOEXEC);
    }
    return positional_fd_;
  }

 private:
  const int fd_;
  const bool append_;
  std::mutex mu_;  // guards positional_fd_; a leaf lock
  int positional_fd_ = -1;
  OpenWriters* writers_ = nullptr;
  uint64_t writer_ino_ = 0;
};

}  // namespace replifs::fusefs
