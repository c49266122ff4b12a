#include "replicator/server/store_maintenance.h"

#include <iostream>
#include <map>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "replicator/chunker/chunker.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/chunk_tree.h"
#include "replicator/server/pack_chunk_store.h"
#include "replicator/server/retention_policy.h"
#include "replicator/server/sqlite_catalog.h"
#include "replicator/server/store_directory.h"

namespace replifs::server {
namespace {

constexpr char kDefaultStore[] = "/var/lib/replifs-server";
// A pack whose live entries fill less than this share of it is rewritten.
constexpr double kRepackBelowLiveFraction = 0.5;

int Fail(const std::string& message, int code = 1) {
  std::cerr << "replifs-server: " << message << "\n";
  return code;
}

// --name value / --name=value / --flag parsing for the maintenance commands.
struct Flags {
  std::map<std::string, std::string> values;
  std::vector<std::string> booleans;
  bool Has(const std::string& name) const { return values.count(name) > 0; }
};
absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args,
                                 const std::vector<std::string>& with_value,
                                 const std::vector<std::string>& booleans) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i], value;
    const bool has_eq = name.find('=') != std::string::npos;
    if (has_eq) {
      value = name.substr(name.find('=') + 1);
      name = name.substr(0, name.find('='));
    }
    if (name.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument " + name);
    name = name.substr(2);
    if (std::find(booleans.begin(), booleans.end(), name) != booleans.end() && !has_eq) {
      flags.booleans.push_back(name);
      continue;
    }
    if (std::find(with_value.begin(), with_value.end(), name) == with_value.end()) {
      return absl::InvalidArgumentError("unknown argument --" + name);
    }
    if (!has_eq) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--" + name + " needs a value");
      value = args[++i];
    }
    flags.values[name] = value;
  }
  return flags;
}

struct OpenStore {
  std::unique_ptr<PackChunkStore> chunks;  // before catalog: it uses chunks as page store
  std::unique_ptr<SqliteCatalog> catalog;
};

absl::StatusOr<OpenStore> Open(const std::string& store) {
  if (::access((store + "/" + kStoreMarkerName).c_str(), F_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(store, " is not a replifs-server store"));
  }
  OpenStore out;
  auto chunks = PackChunkStore::Open(store + "/repos");
  if (!chunks.ok()) return chunks.status();
  out.chunks = std::move(*chunks);
  if (out.chunks->needs_rebuild()) {
    return absl::FailedPreconditionError(absl::StrCat(
        store, " has lost its pack index: stop the server and run replifs-server rebuild-index"));
  }
  auto catalog = SqliteCatalog::Open(store + "/catalog.sqlite", out.chunks.get());
  if (!catalog.ok()) return catalog.status();
  out.catalog = std::move(*catalog);
  return out;
}

std::string FormatTime(int64_t time_ns) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(time_ns), absl::UTCTimeZone());
}

}  // namespace

int ScrubCommand(const std::vector<std::string>& args) {
  auto flags = ParseFlags(args, {"store"}, {});
  if (!flags.ok()) return Fail(absl::StrCat(flags.status().message(), "\nusage: replifs-server scrub [--store DIR]"), 2);
  auto store = Open(flags->Has("store") ? flags->values.at("store") : kDefaultStore);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  auto repos = store->catalog->ListRepos();
  if (!repos.ok()) return Fail(std::string(repos.status().message()));
  uint64_t checked = 0, damaged = 0, bytes = 0;
  for (const Repo& repo : *repos) {
    auto chunks = store->catalog->ListChunks(repo.id);
    if (!chunks.ok()) return Fail(std::string(chunks.status().message()));
    const chunker::ChunkIdHasher hasher(repo.chunk_secret);
    for (const SqliteCatalog::ChunkRecord& chunk : *chunks) {
      ++checked;
      const std::string hex = absl::BytesToHexString(ToAbsl(chunk.id));
      absl::StatusOr<std::string> data = store->chunks->Get(repo.id, chunk.id);
      std::string problem;
      if (!data.ok()) {
        problem = std::string(data.status().message());
      } else if (data->size() != chunk.length) {
        problem = absl::StrCat(data->size(), " bytes, the catalog says ", chunk.length);
      } else if (hasher.Hash(*data).ToBytes() != chunk.id) {
        problem = "content does not match its id";
      }
      if (data.ok()) bytes += data->size();
      if (problem.empty()) continue;
      ++damaged;
      std::cout << "DAMAGED repo \"" << absl::CHexEscape(repo.name) << "\" chunk " << hex << ": "
                << problem << "\n";
    }
  }
  // Chunk-list pages: re-hashed against their ids, headers checked.
  uint64_t pages_checked = 0;
  for (const Repo& repo : *repos) {
    auto pages = store->chunks->ListIds(repo.id, EntryKind::kPage);
    if (!pages.ok()) return Fail(std::string(pages.status().message()));
    for (const std::string& id : *pages) {
      ++pages_checked;
      absl::StatusOr<std::string> page = store->chunks->GetPage(repo.id, id);
      std::string problem;
      if (!page.ok()) {
        problem = std::string(page.status().message());
      } else if (PageId(*page) != id) {
        problem = "content does not match its id";
      } else if (absl::Status status = CheckPage(*page); !status.ok()) {
        problem = std::string(status.message());
      }
      if (problem.empty()) continue;
      ++damaged;
      std::cout << "DAMAGED repo \"" << absl::CHexEscape(repo.name) << "\" page "
                << absl::BytesToHexString(ToAbsl(id)) << ": " << problem << "\n";
    }
  }
  std::cout << "scrub: " << checked << " chunks (" << bytes << " bytes) and " << pages_checked
            << " pages in " << repos->size() << " repositories checked, " << damaged
            << " damaged" << std::endl;
  return damaged == 0 ? 0 : 1;
}

int PruneCommand(const std::vector<std::string>& args) {
  constexpr char kUsage[] =
      "usage: replifs-server prune --repo NAME [--keep-last N] [--keep-within 7d]\n"
      "         [--keep-daily N] [--keep-weekly N] [--apply] [--gc-grace 1h] [--store DIR]\n"
      "Dry run unless --apply: prints the versions that would go. A path's newest\n"
      "version is always kept. With --apply, chunks no version names any more (and\n"
      "not stored or offered within --gc-grace) are deleted.";
  auto flags = ParseFlags(args, {"repo", "keep-last", "keep-within", "keep-daily", "keep-weekly",
                                 "gc-grace", "store"},
                          {"apply"});
  if (!flags.ok()) return Fail(absl::StrCat(flags.status().message(), "\n", kUsage), 2);
  if (!flags->Has("repo")) return Fail(absl::StrCat("--repo is required\n", kUsage), 2);
  RetentionPolicy policy;
  for (auto [name, field] : {std::pair{"keep-last", &policy.keep_last},
                             {"keep-daily", &policy.keep_daily},
                             {"keep-weekly", &policy.keep_weekly}}) {
    if (!flags->Has(name)) continue;
    if (!absl::SimpleAtoi(flags->values.at(name), field) || *field < 0) {
      return Fail(absl::StrCat("--", name, " needs a count"), 2);
    }
  }
  if (flags->Has("keep-within")) {
    auto within = ParseRetentionDuration(flags->values.at("keep-within"));
    if (!within.ok()) return Fail(absl::StrCat("--keep-within: ", within.status().message()), 2);
    policy.keep_within = *within;
  }
  absl::Duration grace = absl::Hours(1);
  if (flags->Has("gc-grace")) {
    if (flags->values.at("gc-grace") == "0") {
      grace = absl::ZeroDuration();
    } else {
      auto parsed = ParseRetentionDuration(flags->values.at("gc-grace"));
      if (!parsed.ok()) return Fail(absl::StrCat("--gc-grace: ", parsed.status().message()), 2);
      grace = *parsed;
    }
  }
  const bool apply = !flags->booleans.empty();
  auto store = Open(flags->Has("store") ? flags->values.at("store") : kDefaultStore);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  auto repo = store->catalog->FindRepo(flags->values.at("repo"));
  if (!repo.ok()) return Fail(std::string(repo.status().message()));

  const int64_t now = absl::GetCurrentTimeNanos();
  std::vector<int64_t> doomed;
  size_t total = 0;
  if (!policy.empty()) {
    auto rows = store->catalog->ListVersionRows(repo->id);
    if (!rows.ok()) return Fail(std::string(rows.status().message()));
    total = rows->size();
    for (size_t begin = 0; begin < rows->size();) {
      size_t end = begin;
      std::vector<int64_t> times;
      while (end < rows->size() && (*rows)[end].path == (*rows)[begin].path) {
        times.push_back((*rows)[end++].time_ns);
      }
      const std::vector<bool> kept = VersionsKept(policy, times, now);
      for (size_t i = begin; i < end; ++i) {
        if (kept[i - begin]) continue;
        const SqliteCatalog::VersionRow& row = (*rows)[i];
        doomed.push_back(row.row_id);
        std::cout << (apply ? "remove " : "would remove ") << absl::CHexEscape(row.path) << " @"
                  << FormatTime(row.time_ns)
                  << (row.deleted ? " (deleted)" : absl::StrCat(" ", row.size, " bytes")) << "\n";
      }
      begin = end;
    }
  }
  std::cout << (apply ? "removed " : "would remove ") << doomed.size() << " of " << total
            << " versions" << std::endl;
  if (!apply) {
    std::cout << "dry run: nothing changed (give --apply to prune and collect garbage)" << std::endl;
    return 0;
  }
  if (absl::Status status = store->catalog->DeleteVersionRows(repo->id, doomed); !status.ok()) {
    return Fail(std::string(status.message()));
  }
  // Garbage collection: uploads wait while the collector holds the guard.
  auto guard = store->chunks->GuardCollection();
  if (!guard.ok()) return Fail(std::string(guard.status().message()));
  PackChunkStore* chunks = store->chunks.get();
  const int64_t repo_id = repo->id;
  auto collected = store->catalog->DeleteUnreferencedChunks(
      repo_id, now - absl::ToInt64Nanoseconds(grace), /*dry_run=*/false,
      [chunks, repo_id](const std::string& id) { return chunks->Delete(repo_id, id); });
  if (!collected.ok()) return Fail(std::string(collected.status().message()));
  std::cout << "collected " << collected->size() << " unreferenced chunks" << std::endl;
  // Pages no version reaches (the guard keeps commits from adding any).
  auto reachable = store->catalog->ReachablePages(repo_id);
  if (!reachable.ok()) return Fail(std::string(reachable.status().message()));
  auto pages = chunks->ListIds(repo_id, EntryKind::kPage);
  if (!pages.ok()) return Fail(std::string(pages.status().message()));
  int pages_collected = 0;
  for (const std::string& id : *pages) {
    if (reachable->contains(id)) continue;
    if (absl::Status status = chunks->DeletePage(repo_id, id); !status.ok()) {
      return Fail(std::string(status.message()));
    }
    ++pages_collected;
  }
  // Space comes back when packs that are mostly garbage are rewritten.
  auto compacted = chunks->Compact(repo_id, kRepackBelowLiveFraction);
  if (!compacted.ok()) return Fail(std::string(compacted.status().message()));
  std::cout << "collected " << pages_collected << " unreferenced pages; repacked "
            << compacted->packs_removed << " packs, freed " << compacted->bytes_freed << " bytes"
            << (compacted->packs_skipped_damaged > 0
                    ? absl::StrCat(" (", compacted->packs_skipped_damaged,
                                   " damaged packs kept: run scrub)")
                    : "")
            << std::endl;
  return 0;
}

int RebuildIndexCommand(const std::vector<std::string>& args) {
  auto flags = ParseFlags(args, {"store"}, {});
  if (!flags.ok()) {
    return Fail(absl::StrCat(flags.status().message(),
                             "\nusage: replifs-server rebuild-index [--store DIR]"), 2);
  }
  const std::string path = flags->Has("store") ? flags->values.at("store") : kDefaultStore;
  if (::access((path + "/" + kStoreMarkerName).c_str(), F_OK) != 0) {
    return Fail(absl::StrCat(path, " is not a replifs-server store"));
  }
  // The store's LOCK: no server may append or read while the index is redone.
  auto directory = StoreDirectory::Open(path);
  if (!directory.ok()) return Fail(std::string(directory.status().message()));
  auto chunks = PackChunkStore::Open((*directory)->repos_path());
  if (!chunks.ok()) return Fail(std::string(chunks.status().message()));
  auto catalog = SqliteCatalog::Open((*directory)->catalog_path(), chunks->get());
  if (!catalog.ok()) return Fail(std::string(catalog.status().message()));
  // Chunks in packs are re-recorded in the catalog (a no-op for known ones).
  SqliteCatalog* recorder = catalog->get();
  auto stats = (*chunks)->RebuildIndex(
      [recorder](int64_t repo_id, const std::string& id, uint32_t length) {
        return recorder->RecordChunk(repo_id, id, length);
      });
  if (!stats.ok()) return Fail(std::string(stats.status().message()));
  std::cout << "rebuild-index: " << stats->entries << " entries in " << stats->packs
            << " packs indexed, " << stats->torn_bytes << " bytes of torn tails cut off"
            << std::endl;
  return 0;
}

}  // namespace replifs::server
