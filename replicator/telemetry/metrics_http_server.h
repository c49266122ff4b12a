// A minimal HTTP/1.1 responder for Prometheus scrapes: GET /metrics answers
// the registry's text; anything else gets 404/405/400. One connection at a
// time on one thread, each closed after its answer: enough for a scraper.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "replicator/telemetry/metrics.h"

namespace replifs::telemetry {

class MetricsHttpServer {
 public:
  // Listens on HOST:PORT (IPv4 or [IPv6] literal, or localhost; port 0
  // picks a free one). `registry` must outlive the server.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const MetricsRegistry* registry);
  ~MetricsHttpServer();  // stops serving and closes the socket

  // The address actually bound, e.g. "127.0.0.1:9464".
  const std::string& address() const { return address_; }

 private:
  MetricsHttpServer(int listen_fd, int stop_fd, std::string address,
                    const MetricsRegistry* registry);
  void Serve();
  void Answer(int fd);

  const int listen_fd_;
  const int stop_fd_;  // eventfd: written once by the destructor
  const std::string address_;
  const MetricsRegistry* const registry_;
  std::thread thread_;
};

}  // namespace replifs::telemetry
