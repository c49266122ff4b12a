// The `replifs` subcommands. Each takes the arguments after its name and
// returns the process exit code; errors are one line on stderr.
#pragma once

#include <string>
#include <vector>

namespace replifs::cli {

int MountCommand(const std::vector<std::string>& args);
int UmountCommand(const std::vector<std::string>& args);
int SyncCommand(const std::vector<std::string>& args);
int StatusCommand(const std::vector<std::string>& args);
int RestoreCommand(const std::vector<std::string>& args);
int VerifyCommand(const std::vector<std::string>& args);
int VersionsCommand(const std::vector<std::string>& args);

// "replifs: <message>" on stderr; returns `code`.
int Fail(const std::string& message, int code = 1);

}  // namespace replifs::cli
