// `replifs-server repo create|reset-token|list`: the operator creates each
// repository and hands its token to the one machine that backs up into it.
// Works whether or not a server is running on the store (SQLite serializes
// the catalog between processes; the server reads repositories per call).
#pragma once

#include <string>
#include <vector>

namespace replifs::server {

// argv after "repo"; returns the process exit code.
int RepoAdminCommand(const std::vector<std::string>& args);

}  // namespace replifs::server
