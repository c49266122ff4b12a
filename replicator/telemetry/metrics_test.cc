#include "replicator/telemetry/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "replicator/telemetry/metrics_http_server.h"

namespace replifs::telemetry {
namespace {

TEST(MetricsRegistryTest, RendersHelpTypeAndSamples) {
  MetricsRegistry registry;
  Counter* bytes = registry.AddCounter("x_bytes_total", "Bytes seen.\nSecond line");
  CounterFamily* requests =
      registry.AddCounterFamily("x_requests_total", "Requests.", {"method", "code"});
  registry.AddGauge("x_ratio", "A ratio.", [] { return 2.5; });
  registry.AddCounterFunction("x_read_total", "Read elsewhere.", [] { return uint64_t{7}; });
  bytes->Add(40);
  bytes->Add(2);
  requests->With({"Apply", "OK"})->Add();
  requests->With({"Apply", "OK"})->Add();
  requests->With({"Hel\"lo", "INVALID_ARGUMENT"})->Add();
  EXPECT_EQ(registry.RenderText(),
            "# HELP x_bytes_total Bytes seen.\\nSecond line\n"
            "# TYPE x_bytes_total counter\n"
            "x_bytes_total 42\n"
            "# HELP x_requests_total Requests.\n"
            "# TYPE x_requests_total counter\n"
            "x_requests_total{method=\"Apply\",code=\"OK\"} 2\n"
            "x_requests_total{method=\"Hel\\\"lo\",code=\"INVALID_ARGUMENT\"} 1\n"
            "# HELP x_ratio A ratio.\n"
            "# TYPE x_ratio gauge\n"
            "x_ratio 2.5\n"
            "# HELP x_read_total Read elsewhere.\n"
            "# TYPE x_read_total counter\n"
            "x_read_total 7\n");
}

TEST(MetricsRegistryTest, RefusesBadOrDuplicateNames) {
  MetricsRegistry registry;
  registry.AddCounter("ok_total", "x");
  EXPECT_THROW(registry.AddCounter("ok_total", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddGauge("9bad", "x", [] { return 0.0; }), std::invalid_argument);
  EXPECT_THROW(registry.AddGauge("has-dash", "x", [] { return 0.0; }), std::invalid_argument);
}

// Sends `request` to 127.0.0.1:port and returns everything answered.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  (void)!write(fd, request.data(), request.size());
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

TEST(MetricsHttpServerTest, AnswersScrapesAndRefusesTheRest) {
  MetricsRegistry registry;
  Counter* counter = registry.AddCounter("x_total", "X.");
  counter->Add(3);
  auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string& address = (*server)->address();
  ASSERT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  ASSERT_GT(port, 0);

  const std::string ok = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << ok;
  EXPECT_NE(ok.find("\r\n\r\n# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n"),
            std::string::npos)
      << ok;
  counter->Add(1);
  EXPECT_NE(Exchange(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").find("x_total 4\n"),
            std::string::npos);

  EXPECT_EQ(Exchange(port, "GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(Exchange(port, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(Exchange(port, "garbage\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(Exchange(port, std::string(20000, 'A')).rfind("HTTP/1.1 400", 0), 0u);
  // Still serving after the bad ones.
  EXPECT_EQ(Exchange(port, "GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST(MetricsHttpServerTest, BadAddressIsAClearError) {
  MetricsRegistry registry;
  auto no_port = MetricsHttpServer::Start("127.0.0.1", &registry);
  ASSERT_FALSE(no_port.ok());
  EXPECT_NE(no_port.status().message().find("not HOST:PORT"), std::string::npos);
  EXPECT_FALSE(MetricsHttpServer::Start("127.0.0.1:70000", &registry).ok());
}

}  // namespace
}  // namespace replifs::telemetry
