// Cancels a gRPC call that outlives its deadline.
//
// A synchronous streaming Write can block well past the call's deadline when
// the peer stops reading but keeps the connection half-open (seen through a
// stalling proxy: the socket in CLOSE-WAIT, the batch stuck for minutes).
// TryCancel from another thread makes the blocked Write return false.
#pragma once

#include <grpcpp/client_context.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace replifs::client {

class CancelWatchdog {
 public:
  CancelWatchdog(grpc::ClientContext* context, std::chrono::system_clock::time_point deadline)
      : thread_([this, context, deadline] {
          std::unique_lock lock(mutex_);
          if (!done_cv_.wait_until(lock, deadline, [this] { return done_; })) context->TryCancel();
        }) {}
  ~CancelWatchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    thread_.join();
  }
  CancelWatchdog(const CancelWatchdog&) = delete;
  CancelWatchdog& operator=(const CancelWatchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace replifs::client
