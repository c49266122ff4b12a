#!/usr/bin/env bash
# Runs the server fuzzer for a bounded time (REPLIFS_FUZZ_SECONDS, default
# 30) from the seed corpus; fails if it finds anything. A crashing input is
# kept in ARTIFACT_DIR for `server_request_fuzzer FILE` to reproduce.
# usage: run_fuzzer.sh FUZZER WRITE_SEEDS ARTIFACT_DIR
set -euo pipefail
fuzzer=$1 write_seeds=$2 artifacts=$3
seconds=${REPLIFS_FUZZ_SECONDS:-30}

# The store lives in memory where possible: commits fsync, and a disk would
# make each input cost milliseconds.
base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
work=$(mktemp -d "$base/replifs-fuzz-run-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/seeds" "$work/corpus" "$work/server" "$artifacts"
"$write_seeds" "$work/seeds"
echo "server_request_fuzz: $(ls "$work/seeds" | wc -l) seeds, ${seconds}s"

# Leak checking is off: gRPC keeps process-lifetime allocations that LSan
# would report at exit. The server logs only errors (failed requests are
# expected here and would flood the output).
status=0
REPLIFS_FUZZ_DIR="$work/server" REPLIFS_LOG_LEVEL=error ASAN_OPTIONS=detect_leaks=0 \
  "$fuzzer" "$work/corpus" "$work/seeds" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
    -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$work/fuzz.log" 2>&1 || status=$?
tail -n 30 "$work/fuzz.log"
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$' || true)
if ((status != 0)); then
  echo "FAIL: the fuzzer found a problem (exit $status); inputs kept in $artifacts"
  exit 1
fi
# A run that executed nothing proves nothing.
if [[ -z "$execs" || "$execs" -lt 100 ]]; then
  echo "FAIL: only '${execs:-no}' inputs executed"
  exit 1
fi
echo "server_request_fuzz: $execs inputs, nothing found"
