#!/bin/bash
# The eBPF shim on the host, records asserted one by one (no daemon): runs
# replifs-shim-trace on a fresh directory and checks
#  - stores through a shared mapping are named by msync, close-while-mapped
#    and munmap (shim-dev-probe --mmap-write), and nothing for the same
#    workload outside the tree;
#  - the verdict cache follows renames: a file written through an
#    fd kept open is reported once it is moved into the tree, and no longer
#    once it is moved out;
#  - the fanotify backstop names a file written by aio (io_submit: no hooked
#    syscall) in the tree's root, in a directory that existed before, in one
#    made and in one moved in while it runs (its directory marks follow),
#    and ignores files outside the tree.
#  - msync while another thread holds the mmap lock: the shim counts the
#    lookups it could not make (vma_busy > 0) and fanotify names the file at
#    its close.
#  - calls decided in the kernel send nothing outside the tree and are
#    reported inside: a create and writes in a new directory (directory
#    verdict cache), chmod through "/proc/self/fd/N" (glibc's
#    fchmodat(AT_SYMLINK_NOFOLLOW)), "chown -h" of that link (procfs itself),
#    a file written 30 directories deep outside (deeper than names reach);
#    and a directory moved into the tree with a file in it kept open.
# The hooks are the ones REPLIFS_SHIM_HOOKS asks for (raw when unset): the
# tracer must say it uses them (no silent fallback).
#   usage: shim_trace_test.sh REPLIFS-SHIM-TRACE SHIM-DEV-PROBE SHIM-AIO-WRITE SHIM-MMAP-CONTEND
set -euo pipefail
trace=$1 probe=$2 aio=$3 contend=$4
if [[ $(id -u) != 0 ]]; then
  echo "shim_trace_test: needs root (eBPF)" >&2
  [[ "${CI:-}" == "true" ]] && exit 1
  exit 77
fi
work=$(mktemp -d /tmp/shim-trace-test.XXXXXX)
trace_pid=""
cleanup() {
  [[ -n "$trace_pid" ]] && kill "$trace_pid" 2>/dev/null && wait "$trace_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/prot/pre/deep" "$work/plain/moving/inner"
"$trace" "$work/prot" 60 --fanotify > "$work/out" 2> "$work/err" &
trace_pid=$!
for _ in $(seq 100); do grep -q protecting "$work/err" && break; sleep 0.1; done
grep -q protecting "$work/err" || { cat "$work/err" >&2; exit 1; }
want_hooks="raw sys_enter/sys_exit"; [[ "${REPLIFS_SHIM_HOOKS:-raw}" == tracepoints ]] && want_hooks="85 tracepoints"
grep -q "protecting .*($want_hooks, fanotify on 3 directories)" "$work/err" || {
  echo "shim_trace_test: not the hooks asked for ($want_hooks) or not 3 directory marks:" >&2; cat "$work/err" >&2; exit 1; }

# 1. Shared mappings, inside and outside.
"$probe" --mmap-write "$work/prot/m"
"$probe" --mmap-write "$work/plain/m_outside"
# 2. The verdict cache across renames (bash writes through fd 3 each time).
exec 3>> "$work/plain/moved_in"
echo before >&3                       # outside: cached as outside
mv "$work/plain/moved_in" "$work/prot/moved_in"
echo after-in >&3                     # inside now: must be reported
exec 3>&-
exec 4>> "$work/prot/moved_out"
echo before >&4                       # inside: reported, cached as inside
mv "$work/prot/moved_out" "$work/plain/moved_out"
echo after-out >&4                    # outside now: must not be reported
exec 4>&-
# 3. aio: invisible to the syscall hooks, seen by fanotify.
"$aio" "$work/prot/aio.bin"
"$aio" "$work/plain/aio_outside.bin"
"$aio" "$work/prot/pre/deep/aio_pre.bin"
mkdir "$work/prot/made"
mv "$work/plain/moving" "$work/prot/moved"
sleep 0.5  # the backstop marks new directories as their events arrive
"$aio" "$work/prot/made/aio_made.bin"
"$aio" "$work/prot/moved/inner/aio_moved.bin"
# 4. msync against a busy mmap lock.
"$contend" "$work/prot/contended" 1 > /dev/null
# 5. Calls decided in the kernel (the directory verdict cache; "/proc/self/fd/N"
#    names): outside the tree they send nothing (checked by the writer's pid),
#    the same calls inside are reported. as_pid TAG CMD...: runs CMD with its
#    pid in $work/pid.TAG.
as_pid() { local tag=$1; shift; sh -c 'echo $$ > "$0"; exec "$@"' "$work/pid.$tag" "$@"; }
mkdir -p "$work/plain/fresh" "$work/prot/fresh"
as_pid dd_out dd if=/dev/zero of="$work/plain/fresh/f" bs=4096 count=2 status=none
as_pid dd_in dd if=/dev/zero of="$work/prot/fresh/f" bs=4096 count=2 status=none
echo x > "$work/plain/pfd_out"; echo x > "$work/prot/pfd_in"
as_pid chmod_out chmod 600 /proc/self/fd/7 7< "$work/plain/pfd_out"
as_pid chmod_in chmod 600 /proc/self/fd/7 7< "$work/prot/pfd_in"
as_pid chown_link chown -h root /proc/self/fd/7 7< "$work/prot/pfd_in"  # the procfs link itself
deep_out="$work/plain/deep$(printf '/d%.0s' $(seq 30))"  # deeper than the naming walk
mkdir -p "$deep_out"
as_pid dd_deep dd if=/dev/zero of="$deep_out/f" bs=4096 count=1 status=none
mkdir -p "$work/plain/dmove"
exec 5>> "$work/plain/dmove/f"
echo a >&5                            # outside: its directory cached as outside
mv "$work/plain/dmove" "$work/prot/dmove"
echo b >&5                            # its directory moved in: must be reported
exec 5>&-
sleep 0.5
kill -INT "$trace_pid"; wait "$trace_pid" || true; trace_pid=""

fail=0
expect() {  # expect REGEX: a record line matching it
  grep -qE "$1" "$work/out" || { echo "shim_trace_test: no record matching: $1" >&2; fail=1; }
}
expect_count() {  # expect_count N REGEX
  local n; n=$(grep -cE "$2" "$work/out" || true)
  [[ "$n" == "$1" ]] || { echo "shim_trace_test: $n records matching '$2', expected $1" >&2; fail=1; }
}
expect '^pid=[0-9]+ msync path=m size=4096 -> RESCAN\(m\)'
expect '^pid=[0-9]+ close path=m size=4096 -> RESCAN\(m\)'
expect '^pid=[0-9]+ munmap path=m size=4096 -> RESCAN\(m\)'
expect_count 1 ' write path=moved_in off=7 len=9 '
expect_count 1 ' write path=moved_out off=0 len=7 '
expect_count 0 'off=7 len=10'  # the write after moving out
expect '^pid=[0-9]+ fanotify path=aio.bin$'
expect '^pid=[0-9]+ fanotify path=pre/deep/aio_pre.bin$'
expect '^pid=[0-9]+ fanotify path=made/aio_made.bin$'
expect '^pid=[0-9]+ fanotify path=moved/inner/aio_moved.bin$'
expect_count 0 'outside'
expect_count 0 'UNRESOLVED|OVERFLOW'
expect '^pid=[0-9]+ fanotify path=contended$'
for tag in dd_out dd_deep chmod_out chown_link; do expect_count 0 "^pid=$(cat "$work/pid.$tag") "; done
expect_count 2 "^pid=$(cat "$work/pid.dd_in") write path=fresh/f off=(0|4096) len=4096 "
expect_count 1 "^pid=$(cat "$work/pid.dd_in") openat path=fresh/f "
expect_count 1 "^pid=$(cat "$work/pid.chmod_in") (chmod|fchmodat) path=pfd_in "
expect_count 1 ' write path=dmove/f off=2 len=2 '
expect_count 0 'dmove/f off=0'
grep -q 'dropped=0 ' "$work/err" || { echo "shim_trace_test: records dropped" >&2; fail=1; }
grep -qE 'vma_busy=[1-9]' "$work/err" || { echo "shim_trace_test: no msync met a busy mmap lock (vma_busy=0)" >&2; fail=1; }
if [[ $fail != 0 ]]; then
  echo "---- records" >&2; cat "$work/out" >&2; cat "$work/err" >&2
  exit 1
fi
echo "shim_trace_test: mapping hooks, verdict cache across renames and fanotify backstop as expected"
grep 'records=' "$work/err"
cat "$work/out"
