// Builders for ChangeEvents in scheduler tests.
#pragma once

#include <string>

#include "replifs/v1/events.pb.h"

namespace replifs::scheduler::testing {

using replifs::v1::ChangeEvent;

inline ChangeEvent Event(uint64_t seq, ChangeEvent::Op op, const std::string& path,
                         uint64_t inode = 0) {
  ChangeEvent event;
  event.set_seq(seq);
  event.set_op(op);
  event.set_path(path);
  event.set_inode(inode);
  event.set_time_ns(static_cast<int64_t>(seq) * 1000);
  return event;
}

inline ChangeEvent Write(uint64_t seq, const std::string& path, uint64_t inode, uint64_t offset,
                         uint64_t length) {
  ChangeEvent event = Event(seq, ChangeEvent::WRITE, path, inode);
  event.set_offset(offset);
  event.set_length(length);
  return event;
}

inline ChangeEvent Rename(uint64_t seq, const std::string& from, const std::string& to,
                          uint32_t flags = 0, uint64_t inode = 0) {
  ChangeEvent event = Event(seq, ChangeEvent::RENAME, from, inode);
  event.set_new_path(to);
  event.set_rename_flags(flags);
  return event;
}

}  // namespace replifs::scheduler::testing
