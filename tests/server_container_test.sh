#!/usr/bin/env bash
# Builds examples/server-container with podman (FROM scratch, rootfs made
# from the built replifs-server), runs it with its store on a volume and
# its port on 127.0.0.1, creates a repository inside it, and replicates a
# protected directory into it with the real replifs (FUSE mount, sync,
# restore, compare). Exit 77 (ctest: skipped) with the exact reason when
# podman cannot run here; the issue allows that skip.
# usage: server_container_test.sh REPLIFS_BIN REPLIFS_SERVER_BIN SOURCE_DIR
set -euo pipefail
replifs=$1 server=$2 src=$3
skip() { echo "SKIPPED: $*"; exit 77; }

command -v podman >/dev/null || skip "podman is not installed (Debian package podman; see PLATFORM.md)"
[[ $(id -u) -eq 0 ]] || skip "needs root (FUSE mount of the protected directory)"
[[ -w /dev/fuse ]] || skip "/dev/fuse is not usable"

work=$(mktemp -d /tmp/replifs-container-XXXXXX)
tag="localhost/replifs-server-test:$$"
name="replifs-server-test-$$"
prot="$work/protected"
cleanup() {
  "$replifs" umount "$prot" --lazy >/dev/null 2>&1 || true
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$name" >/dev/null 2>&1 || true
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The settings PLATFORM.md lists for podman on this kind of machine.
cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$work/containers.conf"
podman info >"$work/podman-info" 2>&1 || skip "podman cannot run here: $(tail -1 "$work/podman-info")"

"$src/examples/server-container/make-rootfs" "$server" "$work/ctx/rootfs"
cp "$src/examples/server-container/Containerfile" "$work/ctx/"
podman build -q -t "$tag" -f "$work/ctx/Containerfile" "$work/ctx" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
podman run -d --init --name "$name" -v "$name:/store" -p "127.0.0.1:$port:7433" "$tag" >/dev/null
# The log goes to a file first: `podman logs | grep -q` fails under pipefail
# when grep's early exit kills podman with SIGPIPE.
listening() { podman logs "$name" >"$work/server.log" 2>&1; grep -q "listening on" "$work/server.log"; }
for _ in $(seq 100); do
  listening && break
  sleep 0.1
done
listening || { cat "$work/server.log"; echo "FAIL: server in container did not start"; exit 1; }

podman exec "$name" /usr/local/bin/replifs-server repo create ct --store /store >"$work/token"
[[ $(wc -c <"$work/token") -eq 65 ]] || { echo "FAIL: no token from repo create in the container"; exit 1; }

mkdir -p "$prot" "$work/state"
echo "replicated into a container" >"$prot/hello.txt"
head -c 300000 /dev/urandom >"$prot/random.bin"
"$replifs" mount "$prot" --server "127.0.0.1:$port" --repo ct --token-file "$work/token" --state "$work/state"
echo "changed after mount" >"$prot/later.txt"
"$replifs" sync "$prot" --timeout 60
"$replifs" restore --to "$work/restored" --server "127.0.0.1:$port" --repo ct --token-file "$work/token"
diff -r "$prot" "$work/restored"
"$replifs" umount "$prot"
# The store lives on the volume: a new container on it still has the data.
podman rm -f "$name" >/dev/null
podman run -d --init --name "$name" -v "$name:/store" -p "127.0.0.1:$port:7433" "$tag" >/dev/null
for _ in $(seq 100); do listening && break; sleep 0.1; done
"$replifs" restore --to "$work/again" --server "127.0.0.1:$port" --repo ct --token-file "$work/token" later.txt
cmp "$prot/later.txt" "$work/again/later.txt"
echo "PASS: built, ran, replicated into the container and restored from its volume"
