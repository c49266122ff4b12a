// replifs-server [--listen HOST:PORT] [--store DIR] [--tls-cert F --tls-key F] [--insecure]
//                [--metrics HOST:PORT]
// replifs-server repo create|reset-token|list ...
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>

#include <vector>

#include "replicator/server/backup_server.h"
#include "replicator/server/repo_admin.h"
#include "replicator/server/store_maintenance.h"
#include "replicator/telemetry/log.h"

namespace {

constexpr int kUsageExit = 2;
constexpr char kStoreRegistry[] = "/run/replifs-server";

constexpr char kUsage[] =
    "usage: replifs-server [--listen HOST:PORT] [--store DIR] [--tls-cert F --tls-key F]\n"
    "                      [--insecure] [--metrics HOST:PORT]\n"
    "       replifs-server repo create|reset-token NAME | repo list [--store DIR]\n"
    "       replifs-server scrub [--store DIR]   (re-hash every stored chunk)\n"
    "       replifs-server prune --repo NAME --keep-... [--apply]   (see prune --help)\n"
    "       replifs-server rebuild-index [--store DIR]   (re-read the packs; server stopped)\n"
    "  --listen    address to serve on (default 127.0.0.1:7433; port 0 picks a free one)\n"
    "  --store     store directory (default /var/lib/replifs-server)\n"
    "  --tls-cert  PEM certificate (chain) to serve TLS with; needs --tls-key\n"
    "  --tls-key   PEM private key of --tls-cert\n"
    "  --insecure  allow a non-loopback --listen without TLS (tokens travel in clear)\n"
    "  --metrics   serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)\n"
    "Logs: one line per event on stderr, logfmt (time= level= component= msg= ...).\n";

[[noreturn]] void Fail(std::string_view message) {
  std::cerr << "replifs-server: " << message << "\n";
  std::exit(kUsageExit);
}

replifs::server::ServerOptions ParseFlags(int argc, char** argv) {
  replifs::server::ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (arg == "--insecure") {
      options.insecure = true;
      continue;
    }
    std::string* target = nullptr;
    std::string_view name = arg;
    std::string_view value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name == "--listen") {
      target = &options.listen_address;
    } else if (name == "--store") {
      target = &options.store_dir;
    } else if (name == "--tls-cert") {
      target = &options.tls_cert_file;
    } else if (name == "--tls-key") {
      target = &options.tls_key_file;
    } else if (name == "--metrics") {
      target = &options.metrics_address;
    } else {
      Fail(std::string("unknown argument ") + std::string(arg) + " (try --help)");
    }
    if (!has_value) {
      if (i + 1 >= argc) Fail(std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (value.empty()) Fail(std::string(name) + " must not be empty");
    *target = std::string(value);
  }
  return options;
}

// Running servers name their stores in /run/replifs-server/<pid>, so that
// `replifs mount` can refuse to protect a directory holding a store.
std::string RegisterStore(const std::string& store_dir) {
  char resolved[PATH_MAX];
  if (realpath(store_dir.c_str(), resolved) == nullptr) return "";
  mkdir(kStoreRegistry, 0755);
  const std::string path = std::string(kStoreRegistry) + "/" + std::to_string(getpid());
  std::ofstream(path) << resolved << "\n";
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2) {
    const std::string_view command = argv[1];
    const std::vector<std::string> rest(argv + 2, argv + argc);
    if (command == "repo") return replifs::server::RepoAdminCommand(rest);
    if (command == "scrub") return replifs::server::ScrubCommand(rest);
    if (command == "prune") return replifs::server::PruneCommand(rest);
    if (command == "rebuild-index") return replifs::server::RebuildIndexCommand(rest);
  }
  const replifs::server::ServerOptions options = ParseFlags(argc, argv);

  // Block the shutdown signals before any thread starts, so only the waiter
  // below receives them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGTERM);
  sigaddset(&shutdown_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  // An inherited SIG_IGN (background jobs ignore SIGINT) would discard the
  // signal before sigwait could see it.
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);

  auto server = replifs::server::BackupServer::Start(options);
  if (!server.ok()) {
    replifs::telemetry::LogError("server", "cannot start", {{"error", std::string(server.status().message())}});
    return kUsageExit;
  }
  // Tests and scripts wait for this stdout line; the log says it for people.
  std::cout << "replifs-server listening on " << (*server)->address() << std::endl;
  replifs::telemetry::LogInfo("server", "listening",
                              {{"address", (*server)->address()},
                               {"store", options.store_dir},
                               {"tls", options.tls_cert_file.empty() ? "off" : "on"}});
  if (!(*server)->metrics_address().empty()) {
    replifs::telemetry::LogInfo("server", "metrics endpoint",
                                {{"url", "http://" + (*server)->metrics_address() + "/metrics"}});
  }
  const std::string registration = RegisterStore(options.store_dir);

  std::thread signal_waiter([&shutdown_signals, &server] {
    int signal = 0;
    sigwait(&shutdown_signals, &signal);
    replifs::telemetry::LogInfo("server", "shutting down", {{"signal", strsignal(signal)}});
    (*server)->Shutdown();
  });
  (*server)->Wait();
  signal_waiter.join();
  if (!registration.empty()) unlink(registration.c_str());
  replifs::telemetry::LogInfo("server", "stopped");
  return 0;
}
