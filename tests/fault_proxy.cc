#include "tests/fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

namespace replifs::test {
namespace {

void SleepMs(double ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
}

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Ends the connection both ways at once. The fds stay open until Stop, so
// a peer still sending is left half-open (its socket in CLOSE-WAIT with a
// full send queue): the nastiest way a link dies, and the one the client's
// keepalive exists for. SO_LINGER 0 makes the final close in Stop a reset.
void Reset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  shutdown(fd, SHUT_RDWR);
}

}  // namespace

std::string FaultProxy::Start(int target_port) {
  target_port_ = target_port;
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return std::string("socket: ") + strerror(errno);
  sockaddr_in a = Loopback(0);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(listen_fd_, 64) != 0) {
    return std::string("bind/listen: ") + strerror(errno);
  }
  socklen_t len = sizeof(a);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return "";
}

void FaultProxy::AcceptLoop() {
  uint64_t index = 0;
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in t = Loopback(target_port_);
    if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&t), sizeof(t)) != 0) {
      Reset(client);
      close(client);
      if (server >= 0) close(server);
      continue;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard lock(mu_);
    stats_.connections++;
    fds_.push_back(client);
    fds_.push_back(server);
    ++index;
    pumps_.emplace_back([this, client, server, index] { Pump(client, server, options_.seed * 1000003 + index * 2); });
    pumps_.emplace_back([this, client, server, index] { Pump(server, client, options_.seed * 1000003 + index * 2 + 1); });
  }
}

void FaultProxy::Pump(int from, int to, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  char buffer[16384];
  while (!stopping_) {
    pollfd p{from, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(from, buffer, sizeof(buffer));
    if (n <= 0) break;
    bool reset = false, stall = false;
    {
      std::lock_guard lock(mu_);
      stats_.chunks++;
      stats_.bytes += static_cast<uint64_t>(n);
      if (unit(rng) < options_.reset_probability && stats_.resets < static_cast<uint64_t>(options_.max_resets)) {
        reset = true;
        stats_.resets++;
      } else if (unit(rng) < options_.stall_probability) {
        stall = true;
        stats_.stalls++;
      }
    }
    if (reset && !calm_) break;
    if (!calm_) {
      SleepMs(unit(rng) * options_.max_delay_ms + (stall ? options_.stall_ms : 0));
      if (options_.bytes_per_second > 0) SleepMs(1000.0 * static_cast<double>(n) / options_.bytes_per_second);
    }
    for (ssize_t sent = 0; sent < n;) {
      const ssize_t w = send(to, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += w;
    }
  }
  // Either side ending (or a chosen reset) ends the connection both ways.
  Reset(from);
  Reset(to);
}

void FaultProxy::Stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> pumps;
  {
    std::lock_guard lock(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    pumps.swap(pumps_);
  }
  for (std::thread& t : pumps) t.join();
  std::lock_guard lock(mu_);
  for (int fd : fds_) close(fd);
  fds_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

FaultProxyStats FaultProxy::stats() {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace replifs::test
