// replifs: protect a directory with real-time backup.
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace replifs::cli {

int Fail(const std::string& message, int code) {
  std::cerr << "replifs: " << message << std::endl;
  return code;
}

}  // namespace replifs::cli

namespace {

constexpr char kUsage[] = R"(usage: replifs COMMAND ...
  mount DIR [--server ADDR] [--repo NAME] [--state DIR] [--quiet-ms N] [--max-delay-ms N] [--journal-max-mb N] [--foreground]
                     protect DIR: over-mount it and replicate every change
  umount DIR [--lazy] [--timeout S]   stop protecting DIR (pending changes stay journaled)
  sync DIR [--timeout S]              wait until every change so far is durable on the server
  status DIR                          pending changes, last acknowledged change, server reachability
  restore --to DEST (DIR | --server ADDR --repo NAME) [--at TIME] [PATH...]
                     write the tree (or PATHs) as of TIME (RFC 3339 or @UNIXSECONDS) into DEST
  verify DIR                          compare DIR with the server's latest versions
  versions PATH                       every stored version of PATH with its time and size
                     (or --server ADDR --repo NAME --token-file F [--ca F] PATH, PATH relative)
  mount, restore, verify also take --token-file F (the repository's token) and --ca F (TLS)
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace replifs::cli;
  const std::map<std::string, int (*)(const std::vector<std::string>&)> commands = {
      {"mount", MountCommand},   {"umount", UmountCommand},   {"sync", SyncCommand},
      {"status", StatusCommand}, {"restore", RestoreCommand}, {"verify", VerifyCommand},
      {"versions", VersionsCommand}};
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  auto command = commands.find(argv[1]);
  if (command == commands.end()) return Fail(std::string("unknown command '") + argv[1] + "'\n" + kUsage, 2);
  return command->second(std::vector<std::string>(argv + 2, argv + argc));
}
