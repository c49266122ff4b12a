// The one thing fusefs knows about its listeners: something that takes a
// ChangeEvent after each successful modifying operation.
#pragma once

#include "replifs/v1/events.pb.h"

namespace replifs::fusefs {

class EventSink {
 public:
  virtual ~EventSink() = default;

  // Called after the backing operation succeeded and before the reply to the
  // kernel, from any FUSE worker thread (must be thread-safe). When it
  // returns, the event must survive a kill -9 of this process.
  virtual void OnChange(replifs::v1::ChangeEvent event) = 0;

  // Called before replying to fsync, fsyncdir and flush-on-syncfs: every
  // event reported so far must then survive a power loss.
  virtual void OnDurabilityBarrier() = 0;
};

}  // namespace replifs::fusefs
