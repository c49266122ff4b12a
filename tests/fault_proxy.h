// A fault-injecting TCP proxy on 127.0.0.1 for the slow, lossy link test
// (netem is not in this kernel, PLATFORM.md): every chunk it forwards may be
// delayed, a connection may stall or be reset (RST), and a bandwidth cap
// paces each direction. Decisions come from a seeded generator.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace replifs::test {

struct FaultProxyOptions {
  uint64_t seed = 1;
  int max_delay_ms = 20;           // each forwarded chunk waits 0..this
  double stall_probability = 0.02; // per chunk: stop forwarding for stall_ms
  int stall_ms = 500;
  double reset_probability = 0.01; // per chunk: reset both sides of the connection
  int max_resets = 10;             // then no more resets (keeps the test bounded)
  uint64_t bytes_per_second = 2 << 20;  // per direction and connection; 0 = no cap
};

struct FaultProxyStats {
  uint64_t connections = 0, chunks = 0, bytes = 0, stalls = 0, resets = 0;
};

class FaultProxy {
 public:
  explicit FaultProxy(FaultProxyOptions options) : options_(options) {}
  ~FaultProxy() { Stop(); }
  // Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:target_port.
  // Returns "" or an error description.
  std::string Start(int target_port);
  void Stop();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  FaultProxyStats stats();
  // From now on forward without faults (for the checks after the test).
  void Calm() { calm_ = true; }

 private:
  void AcceptLoop();
  void Pump(int from, int to, uint64_t seed);

  const FaultProxyOptions options_;
  int listen_fd_ = -1;
  int port_ = 0;
  int target_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> calm_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;  // guarded by mu_
  std::vector<int> fds_;            // guarded by mu_; closed by Stop
  FaultProxyStats stats_;           // guarded by mu_
};

}  // namespace replifs::test
