// What the mount daemon exports at `replifs mount --metrics ADDR` (README,
// "Monitoring"): read from the scheduler, client, journal and shim when
// scraped, never copied.
#pragma once

#include <cstdint>
#include <functional>

#include "cli/change_age_tracker.h"
#include "replicator/client/backup_client.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"
#include "replicator/telemetry/metrics.h"

namespace replifs::cli {

struct DaemonMetricSources {
  scheduler::Scheduler* scheduler;
  client::BackupClient* client;
  journal::Journal* journal;
  const ChangeAgeTracker* ages;
  std::function<uint64_t()> shim_events;   // changes the kernel shim reported
  std::function<uint64_t()> shim_dropped;  // shim records lost
  std::function<bool()> rescan_needed;
};

// Registers the daemon's metrics in `registry`; every source must outlive it.
void RegisterDaemonMetrics(telemetry::MetricsRegistry* registry, DaemonMetricSources sources);

}  // namespace replifs::cli
