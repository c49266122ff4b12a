#include "cli/daemon_metrics.h"

#include "absl/time/clock.h"
#include "replicator/telemetry/log.h"

namespace replifs::cli {

void RegisterDaemonMetrics(telemetry::MetricsRegistry* r, DaemonMetricSources s) {
  using telemetry::LogLevel;
  auto* scheduler = s.scheduler;
  auto* client = s.client;
  auto* journal = s.journal;
  const ChangeAgeTracker* ages = s.ages;
  r->AddGauge("replifs_pending_changes", "Journaled changes not yet durable on the server.",
              [scheduler] { return static_cast<double>(scheduler->stats().pending_events); });
  r->AddGauge("replifs_pending_bytes", "Dirty file bytes not yet durable on the server.",
              [scheduler] { return static_cast<double>(scheduler->stats().pending_bytes); });
  r->AddGauge("replifs_rpo_seconds",
              "Age of the oldest change not yet acknowledged by the server: what a lost disk "
              "would lose now (0 when everything is acknowledged).",
              [ages] { return ages->OldestPendingAgeNs(absl::GetCurrentTimeNanos()) / 1e9; });
  r->AddGauge("replifs_last_ack_latency_seconds",
              "From journaling to the server's acknowledgement, for the newest change of the last "
              "acknowledgement (close-to-commit latency).",
              [ages] { return ages->LastAckLatencyNs() / 1e9; });
  r->AddCounterFunction("replifs_commits_total", "Batches committed by the server (Apply calls).",
                        [client] { return client->stats().commits; });
  r->AddCounterFunction("replifs_operations_committed_total", "Operations in committed batches.",
                        [client] { return client->stats().operations; });
  r->AddCounterFunction("replifs_chunks_uploaded_total", "Chunks the server lacked, uploaded.",
                        [client] { return client->stats().chunks_uploaded; });
  r->AddCounterFunction("replifs_bytes_sent_total", "Chunk bytes uploaded (after compression).",
                        [client] { return client->stats().bytes_uploaded; });
  r->AddCounterFunction("replifs_file_bytes_read_total", "File bytes read to chunk.",
                        [client] { return client->stats().bytes_read; });
  r->AddGauge("replifs_dedup_ratio",
              "file_bytes_read / bytes_sent: file bytes read per byte uploaded (deduplication and "
              "compression; 0 before any upload).",
              [client] {
                const client::BackupClientStats stats = client->stats();
                return stats.bytes_uploaded == 0
                           ? 0.0
                           : static_cast<double>(stats.bytes_read) / stats.bytes_uploaded;
              });
  r->AddGauge("replifs_server_reachable", "1 when the last call to the server succeeded.",
              [client] { return client->stats().reachable ? 1.0 : 0.0; });
  r->AddCounterFunction("replifs_failed_batches_total",
                        "Batches the server refused or could not be reached for (retried).",
                        [scheduler] { return scheduler->stats().failed_batches; });
  r->AddCounterFunction("replifs_errors_total", "Error-level log lines.",
                        [] { return telemetry::LogLinesAt(LogLevel::kError); });
  r->AddCounterFunction("replifs_warnings_total", "Warn-level log lines.",
                        [] { return telemetry::LogLinesAt(LogLevel::kWarn); });
  r->AddGauge("replifs_acked_seq", "Every journal seq up to this is durable on the server.",
              [scheduler] { return static_cast<double>(scheduler->stats().acked_seq); });
  r->AddGauge("replifs_journal_seq", "Highest journal seq appended.",
              [journal] { return static_cast<double>(journal->stats().last_seq); });
  r->AddGauge("replifs_journal_bytes", "Bytes held by the journal's live segments.",
              [journal] { return static_cast<double>(journal->stats().disk_bytes); });
  r->AddGauge("replifs_rescan_needed", "1 when the journal missed changes and a rescan is due.",
              [rescan = s.rescan_needed] { return rescan() ? 1.0 : 0.0; });
  r->AddCounterFunction("replifs_shim_events_total", "Changes the kernel shim reported.",
                        s.shim_events);
  r->AddCounterFunction("replifs_shim_dropped_total",
                        "Kernel shim records lost (each led to a rescan).", s.shim_dropped);
}

}  // namespace replifs::cli
