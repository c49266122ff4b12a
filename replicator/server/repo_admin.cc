#include "replicator/server/repo_admin.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include "absl/strings/escaping.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/sqlite_catalog.h"
#include "replicator/server/status_macros.h"
#include "replicator/server/store_directory.h"

namespace replifs::server {
namespace {

constexpr char kUsage[] =
    "usage: replifs-server repo create NAME [--store DIR]\n"
    "       replifs-server repo reset-token NAME [--store DIR]\n"
    "       replifs-server repo list [--store DIR]\n"
    "create and reset-token print the repository's token once on stdout; the\n"
    "server keeps only its hash. Give it to the client (`replifs mount\n"
    "--token-file F`) and keep a copy off the protected machine.\n";

absl::StatusOr<std::unique_ptr<SqliteCatalog>> OpenCatalog(const std::string& store) {
  // A store nobody has served yet is created (and its lock released at once).
  if (::access((store + "/" + kStoreMarkerName).c_str(), F_OK) != 0) {
    REPLIFS_RETURN_IF_ERROR(StoreDirectory::Open(store).status());
  }
  return SqliteCatalog::Open(store + "/catalog.sqlite");
}

int Fail(const std::string& message, int code = 1) {
  std::cerr << "replifs-server: " << message << "\n";
  return code;
}

}  // namespace

int RepoAdminCommand(const std::vector<std::string>& args) {
  std::string store = "/var/lib/replifs-server";
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (args[i] == "--store") {
      if (i + 1 >= args.size()) return Fail("--store needs a value", 2);
      store = args[++i];
    } else if (args[i].rfind("--store=", 0) == 0) {
      store = args[i].substr(8);
    } else if (args[i].rfind("--", 0) == 0) {
      return Fail("unknown argument " + args[i] + " (try repo --help)", 2);
    } else {
      positional.push_back(args[i]);
    }
  }
  if (positional.empty()) return Fail(std::string("missing repo subcommand\n") + kUsage, 2);
  const std::string& verb = positional[0];
  const bool named = verb == "create" || verb == "reset-token";
  if ((named && positional.size() != 2) || (verb == "list" && positional.size() != 1) ||
      (!named && verb != "list")) {
    return Fail(std::string("bad repo command\n") + kUsage, 2);
  }
  absl::StatusOr<std::unique_ptr<SqliteCatalog>> catalog = OpenCatalog(store);
  if (!catalog.ok()) return Fail(std::string(catalog.status().message()));

  if (verb == "list") {
    absl::StatusOr<std::vector<Repo>> repos = (*catalog)->ListRepos();
    if (!repos.ok()) return Fail(std::string(repos.status().message()));
    for (const Repo& repo : *repos) {
      std::cout << absl::CHexEscape(repo.name)
                << (repo.token_hash.empty() ? "  (no token: run repo reset-token)" : "") << "\n";
    }
    return 0;
  }
  absl::StatusOr<std::string> token = verb == "create"
                                          ? CreateRepoWithToken(**catalog, positional[1])
                                          : ResetRepoToken(**catalog, positional[1]);
  if (!token.ok()) return Fail(std::string(token.status().message()));
  std::cout << *token << std::endl;
  std::cerr << "replifs-server: the token of repository \"" << absl::CHexEscape(positional[1])
            << "\" was printed once; the server keeps only its hash. Keep a copy off the "
               "protected machine (you need it to restore after losing it)."
            << std::endl;
  return 0;
}

}  // namespace replifs::server
