// `replifs-server scrub` and `replifs-server prune`: maintenance of a store,
// safe while a server serves it (SQLite serializes the catalog between
// processes; the chunk store's GC.LOCK keeps collection and uploads apart).
#pragma once

#include <string>
#include <vector>

namespace replifs::server {

// argv after the subcommand; each returns the process exit code.
int ScrubCommand(const std::vector<std::string>& args);
int PruneCommand(const std::vector<std::string>& args);
// `replifs-server rebuild-index`: recreates the pack index from the packs
// (and re-records their chunks in the catalog). Needs the store's LOCK.
int RebuildIndexCommand(const std::vector<std::string>& args);

}  // namespace replifs::server
