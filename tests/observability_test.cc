// Monitoring (issue 7): the Prometheus endpoints of replifs-server
// (--metrics) and of the mount daemon (replifs mount --metrics), scraped
// over HTTP while real changes replicate, and the structured log lines both
// write. Label `observability`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "replicator/telemetry/log.h"
#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

using Samples = std::map<std::string, double>;  // "name{labels}" -> value

// GET http://HOST:PORT/metrics; "" if it could not be fetched.
std::string HttpGet(const std::string& host_port, std::string* error) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    *error = "bad address " + host_port;
    return "";
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr);
  const timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = "cannot connect to " + host_port + ": " + strerror(errno);
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: " + host_port + "\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  return response;
}

// The samples of a scrape. Fails the test if the response is not a 200 in
// the text format, or a sample lacks its HELP and TYPE lines.
Samples Scrape(const std::string& host_port) {
  std::string error;
  const std::string response = HttpGet(host_port, &error);
  EXPECT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << error << response;
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << response;
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return {};
  std::istringstream lines(response.substr(body + 4));
  Samples samples;
  std::map<std::string, int> described;  // name -> HELP/TYPE lines seen
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string name;
      words >> name;
      ++described[name];
      continue;
    }
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(space != std::string::npos && absl::SimpleAtod(line.substr(space + 1), &value))
        << "unparsable sample: " << line;
    const std::string series = line.substr(0, space);
    const std::string name = series.substr(0, series.find('{'));
    EXPECT_EQ(described[name], 2) << "no HELP and TYPE before " << line;
    samples[series] = value;
  }
  return samples;
}

double Get(const Samples& samples, const std::string& series) {
  const auto found = samples.find(series);
  EXPECT_NE(found, samples.end()) << "no sample " << series;
  return found == samples.end() ? -1 : found->second;
}

// The structured lines of a log file that parse (others are counted in `bad`).
std::vector<std::map<std::string, std::string>> LogEvents(const std::string& path, int* bad) {
  std::vector<std::map<std::string, std::string>> events;
  std::istringstream lines(ReadFile(path));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("time=", 0) != 0) continue;  // not ours (e.g. a library's print)
    auto fields = telemetry::ParseLogLine(line);
    if (!fields.ok()) {
      ++*bad;
      ADD_FAILURE() << "unparsable log line (" << fields.status() << "): " << line;
      continue;
    }
    events.push_back(*fields);
  }
  return events;
}

// The first event with this component and msg, waiting up to 10 s for it.
std::map<std::string, std::string> WaitForEvent(const std::string& path,
                                                const std::string& component,
                                                const std::string& msg) {
  for (int i = 0; i < 100; ++i) {
    int bad = 0;
    for (const auto& event : LogEvents(path, &bad)) {
      const auto c = event.find("component");
      const auto m = event.find("msg");
      if (c != event.end() && c->second == component && m != event.end() && m->second == msg)
        return event;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "no log event component=" << component << " msg=\"" << msg << "\" in " << path
                << ":\n"
                << ReadFile(path);
  return {};
}

// "http://HOST:PORT/metrics" -> "HOST:PORT"
std::string HostPortOf(const std::map<std::string, std::string>& event) {
  const auto url = event.find("url");
  if (url == event.end()) return "";
  std::string rest = url->second;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  return rest.substr(0, rest.find('/'));
}

class ObservabilityTest : public ReplifsTest {
 protected:
  // Restarts the fixture's server with --metrics on a free port.
  void StartServerWithMetrics() {
    server_.Stop();
    const std::string err =
        server_.Start(store_, "127.0.0.1:0", server_log_, 20, {"--metrics", "127.0.0.1:0"});
    ASSERT_EQ(err, "");
    server_metrics_ = HostPortOf(WaitForEvent(server_log_, "server", "metrics endpoint"));
    ASSERT_NE(server_metrics_, "");
  }
  void MountWithMetrics() {
    ASSERT_TRUE(MountOk({"--metrics", "127.0.0.1:0"}));
    daemon_metrics_ =
        HostPortOf(WaitForEvent(state_ + "/daemon.log", "daemon", "metrics endpoint"));
    ASSERT_NE(daemon_metrics_, "");
  }

  std::string server_metrics_;
  std::string daemon_metrics_;
};

TEST_F(ObservabilityTest, MetricsOfServerAndDaemonFollowReplication) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithMetrics());
  ASSERT_NO_FATAL_FAILURE(MountWithMetrics());
  ASSERT_TRUE(Succeeded(Sync()));

  const Samples server0 = Scrape(server_metrics_);
  const Samples daemon0 = Scrape(daemon_metrics_);
  EXPECT_EQ(Get(daemon0, "replifs_pending_changes"), 0);
  EXPECT_EQ(Get(daemon0, "replifs_rpo_seconds"), 0);
  EXPECT_EQ(Get(daemon0, "replifs_server_reachable"), 1);

  // 1 MiB of random bytes: incompressible, so at least that much crosses the wire.
  constexpr double kMiB = 1 << 20;
  WriteFile(P("random.bin"), RandomBytes(1 << 20, 7));
  ASSERT_TRUE(Succeeded(Sync()));
  const Samples server1 = Scrape(server_metrics_);
  const Samples daemon1 = Scrape(daemon_metrics_);
  EXPECT_GE(Get(server1, "replifs_server_bytes_received_total") -
                Get(server0, "replifs_server_bytes_received_total"),
            kMiB);
  EXPECT_GE(Get(server1, "replifs_server_chunks_stored_total") -
                Get(server0, "replifs_server_chunks_stored_total"),
            4);  // ~64 KiB chunks
  EXPECT_GE(Get(server1, "replifs_server_chunk_bytes_stored_total") -
                Get(server0, "replifs_server_chunk_bytes_stored_total"),
            kMiB);
  EXPECT_GE(
      Get(server1, "replifs_server_commits_total") - Get(server0, "replifs_server_commits_total"),
      1);
  EXPECT_GE(Get(server1, "replifs_server_file_bytes_committed_total") -
                Get(server0, "replifs_server_file_bytes_committed_total"),
            kMiB);
  EXPECT_GE(Get(server1, "replifs_server_requests_total{method=\"Apply\",code=\"OK\"}"), 1);
  EXPECT_GE(Get(daemon1, "replifs_commits_total") - Get(daemon0, "replifs_commits_total"), 1);
  EXPECT_GE(Get(daemon1, "replifs_bytes_sent_total") - Get(daemon0, "replifs_bytes_sent_total"),
            kMiB);
  EXPECT_EQ(Get(daemon1, "replifs_pending_changes"), 0);
  EXPECT_EQ(Get(daemon1, "replifs_rpo_seconds"), 0);
  const double latency = Get(daemon1, "replifs_last_ack_latency_seconds");
  EXPECT_GT(latency, 0);
  EXPECT_LT(latency, 60);

  // The same bytes under another name: committed again, stored once.
  WriteFile(P("copy.bin"), RandomBytes(1 << 20, 7));
  ASSERT_TRUE(Succeeded(Sync()));
  const Samples server2 = Scrape(server_metrics_);
  EXPECT_EQ(Get(server2, "replifs_server_chunk_bytes_stored_total"),
            Get(server1, "replifs_server_chunk_bytes_stored_total"));
  EXPECT_GE(Get(server2, "replifs_server_file_bytes_committed_total") -
                Get(server1, "replifs_server_file_bytes_committed_total"),
            kMiB);
  EXPECT_GT(Get(server2, "replifs_server_dedup_ratio"), Get(server1, "replifs_server_dedup_ratio"));

  // Server down: the change waits, and the RPO grows with its age.
  StopServer();
  WriteFile(P("while-down.txt"), "written while the server was down\n");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const Samples daemon3 = Scrape(daemon_metrics_);
  EXPECT_GE(Get(daemon3, "replifs_pending_changes"), 1);
  EXPECT_GE(Get(daemon3, "replifs_rpo_seconds"), 2.0);
  EXPECT_LT(Get(daemon3, "replifs_rpo_seconds"), 60.0);
  EXPECT_GE(Get(daemon3, "replifs_failed_batches_total"), 1);
  EXPECT_EQ(Get(daemon3, "replifs_server_reachable"), 0);

  ASSERT_EQ(RestartServerSamePort(), "");
  ASSERT_TRUE(Succeeded(Sync()));
  const Samples daemon4 = Scrape(daemon_metrics_);
  EXPECT_EQ(Get(daemon4, "replifs_pending_changes"), 0);
  EXPECT_EQ(Get(daemon4, "replifs_rpo_seconds"), 0);
  // The change waited at least as long as the server was down.
  EXPECT_GE(Get(daemon4, "replifs_last_ack_latency_seconds"), 2.0);
  std::cout << "[ metrics  ] close-to-ack latency " << latency << " s; dedup ratio "
            << Get(server1, "replifs_server_dedup_ratio") << " -> "
            << Get(server2, "replifs_server_dedup_ratio")
            << " after a copy; RPO with the server down " << Get(daemon3, "replifs_rpo_seconds")
            << " s, after its return " << Get(daemon4, "replifs_rpo_seconds") << " s (latency "
            << Get(daemon4, "replifs_last_ack_latency_seconds") << " s)" << std::endl;
}

TEST_F(ObservabilityTest, RefusedRequestsAreCountedAndLoggedAsEvents) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithMetrics());
  const Samples before = Scrape(server_metrics_);
  const std::string wrong_token = root_ + "/wrong.token";
  WriteFile(wrong_token, "not-the-token\n", 0600);
  RunResult r = Run({"restore", "--to", FreshPath("dest"), "--server", server_.address(), "--repo",
                     repo_, "--token-file", wrong_token});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  const Samples after = Scrape(server_metrics_);
  EXPECT_GE(
      Get(after, "replifs_server_warnings_total") - Get(before, "replifs_server_warnings_total"),
      1);
  double denied = 0;
  for (const auto& [series, value] : after) {
    if (series.find("code=\"PERMISSION_DENIED\"") != std::string::npos) denied += value;
  }
  EXPECT_GE(denied, 1) << "no replifs_server_requests_total{code=\"PERMISSION_DENIED\"}";

  // The refusal is one parseable event with the standard fields.
  const auto event = WaitForEvent(server_log_, "server", "request failed");
  EXPECT_EQ(event.count("time"), 1u);
  EXPECT_EQ(event.count("method"), 1u);
  EXPECT_EQ(event.count("error"), 1u);
  EXPECT_EQ(event.count("level") ? event.at("level") : "", "warn");
  EXPECT_EQ(event.count("code") ? event.at("code") : "", "PERMISSION_DENIED");
}

TEST_F(ObservabilityTest, LogLinesOfServerAndDaemonAreStructured) {
  ASSERT_TRUE(MountOk());
  WriteFile(P("logged.txt"), "x\n");
  ASSERT_TRUE(Succeeded(Sync()));
  ASSERT_TRUE(Succeeded(Umount()));
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  for (const std::string& path : {server_log_, state_ + "/daemon.log"}) {
    int bad = 0;
    const auto events = LogEvents(path, &bad);
    EXPECT_EQ(bad, 0) << path;
    ASSERT_FALSE(events.empty()) << "no structured line in " << path << ":\n" << ReadFile(path);
    for (const auto& event : events) {
      ASSERT_EQ(event.count("time") + event.count("level") + event.count("component") +
                    event.count("msg"),
                4u);
      EXPECT_TRUE(std::regex_match(event.at("time"), rfc3339)) << event.at("time");
      EXPECT_TRUE(event.at("level") == "debug" || event.at("level") == "info" ||
                  event.at("level") == "warn" || event.at("level") == "error")
          << event.at("level");
    }
  }
  const auto protecting = WaitForEvent(state_ + "/daemon.log", "daemon", "protecting");
  EXPECT_EQ(protecting.count("dir") ? protecting.at("dir") : "", prot_);
  EXPECT_EQ(protecting.count("repo") ? protecting.at("repo") : "", repo_);
  WaitForEvent(state_ + "/daemon.log", "daemon", "unprotected");
  WaitForEvent(server_log_, "server", "listening");
}

}  // namespace
}  // namespace replifs::test
