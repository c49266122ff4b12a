# bench/fs/targets.sh: sourced by bench/fs/run and bench/fs/profile. Builds the
# binaries if needed and mounts the four targets under $WORK:
#   native   a plain directory
#   replifs  `replifs mount` with a real local replifs-server (replication on)
#   norepl   `replifs mount --no-replicate` (the over-mount only)
#   pll      libfuse's passthrough_ll, built here from Debian's libfuse3-dev examples
# Env: REPLIFS_BUILD (build dir, built if missing), BENCH_DIR (parent of the work
# dir), MOUNT_FLAGS (extra `replifs mount` flags for both replifs targets).
# Sets WORK, REPLIFS, TARGETS; removes everything on exit.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${REPLIFS_BUILD:-$REPO/build}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
BENCH_NAME=$(basename "$0")

[ "$(id -u)" = 0 ] || { echo "bench/fs/$BENCH_NAME: needs root (FUSE mounts, drop_caches)" >&2; exit 1; }

if [ ! -x "$BUILD/cli/replifs" ] || [ ! -x "$BUILD/replicator/server/replifs-server" ]; then
  cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  make -C "$BUILD" -j"$(nproc)" replifs replifs-server >/dev/null
fi
REPLIFS=$BUILD/cli/replifs
SERVER=$BUILD/replicator/server/replifs-server
[ -x "$REPLIFS" ] && [ -x "$SERVER" ] || { echo "bench/fs/$BENCH_NAME: replifs binaries not found in $BUILD" >&2; exit 1; }

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/replifs-bench-fs.XXXXXX")
SERVER_PID=""
PLL_PID=""
cleanup() {
  set +e
  for t in replifs norepl; do
    mountpoint -q "$WORK/$t" && "$REPLIFS" umount "$WORK/$t" >/dev/null 2>&1
    mountpoint -q "$WORK/$t" && umount -l "$WORK/$t"
  done
  mountpoint -q "$WORK/pll" && umount "$WORK/pll"
  [ -n "$PLL_PID" ] && kill "$PLL_PID" 2>/dev/null && wait "$PLL_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# The peer, built from the copy Debian ships (not committed).
cc -O2 -Wall -o "$WORK/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
  $(pkg-config --cflags --libs fuse3)
cc -O2 -Wall -o "$WORK/smallfiles" "$REPO/bench/fs/smallfiles.c"

mkdir -p "$WORK"/{native,replifs,norepl,pll,pll-src,store}
# One repository per mount; the server prints each token once.
for t in replifs norepl; do
  "$SERVER" repo create "bench-$t" --store "$WORK/store" >"$WORK/$t.token"
done
"$SERVER" --listen "127.0.0.1:$PORT" --store "$WORK/store" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
server_up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
for _ in $(seq 100); do server_up && break; sleep 0.1; done
server_up || { echo "bench/fs/$BENCH_NAME: replifs-server did not start; see $WORK/server.log" >&2; exit 1; }
"$REPLIFS" mount "$WORK/replifs" --server "127.0.0.1:$PORT" --state "$WORK/state-replifs" \
  --repo bench-replifs --token-file "$WORK/replifs.token" ${MOUNT_FLAGS:-}
"$REPLIFS" mount "$WORK/norepl" --server "127.0.0.1:$PORT" --state "$WORK/state-norepl" \
  --repo bench-norepl --token-file "$WORK/norepl.token" --no-replicate ${MOUNT_FLAGS:-}
"$WORK/passthrough_ll" -f -o source="$WORK/pll-src" "$WORK/pll" 2>"$WORK/pll.log" &
PLL_PID=$!
for _ in $(seq 50); do mountpoint -q "$WORK/pll" && break; sleep 0.1; done
mountpoint -q "$WORK/pll" || { echo "bench/fs/$BENCH_NAME: passthrough_ll did not mount" >&2; exit 1; }
TARGETS="native replifs norepl pll"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
