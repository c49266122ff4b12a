#!/bin/bash
# The loadable module, for real: builds it against Debian's linux-headers-amd64,
# boots Debian's linux-image-amd64 under qemu (TCG) with a busybox-static
# initramfs holding the module and shim-dev-probe (the daemon's shim reader),
# runs a scripted workload over a protected and an unprotected directory, and
# asserts the exact events, none after protection is off, and a working
# kernel after rmmod.
#   usage: vm_test.sh PATH/TO/shim-dev-probe WORKDIR
set -euo pipefail
probe=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)

missing() {
  # In CI a missing capability fails; elsewhere the test is skipped (77).
  echo "vm_test: $1" >&2
  if [[ "${CI:-}" == "true" ]]; then exit 1; fi
  exit 77
}
kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -1 || true)
[[ -n "$kernel" ]] || missing "no /boot/vmlinuz-*-amd64 (package linux-image-amd64)"
kver=${kernel#/boot/vmlinuz-}
headers=/usr/src/linux-headers-$kver
[[ -d "$headers" ]] || missing "no $headers (package linux-headers-amd64)"
command -v qemu-system-x86_64 >/dev/null || missing "no qemu-system-x86_64 (package qemu-system-x86)"
[[ -x /bin/busybox ]] || missing "no /bin/busybox (package busybox-static)"
command -v cpio >/dev/null || missing "no cpio"

rm -rf "$work"
mkdir -p "$work/src/module" "$work/src/include" "$work/root"
# 1. Build the module here, so a kernel-headers change is caught.
cp "$here/Kbuild" "$here/replifs_shim.c" "$work/src/module/"
cp "$here/../include/replifs_shim.h" "$work/src/include/"
make -s -C "$headers" M="$work/src/module" modules > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

# 2. The initramfs: busybox, the module, the probe and the libraries it needs.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,prot,plain,tmp}
cp /bin/busybox "$root/bin/"
cp "$work/src/module/replifs_shim.ko" "$root/"
cp "$probe" "$root/bin/shim-dev-probe"
for lib in $(ldd "$probe" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /replifs_shim.ko && echo "INSMOD OK"
shim-dev-probe /prot /tmp/stop &
probe=$!
while [ ! -e /tmp/stop.ready ]; do sleep 0.1; done
# Protected: each line's events are listed in vm_test.sh.
cd /prot
echo hello > a
echo more >> a
mkdir d
mv a d/a2
ln -s a2 d/l
chmod 600 d/a2
rm d/l
# Stores through a shared mapping: msync, close while mapped, munmap.
shim-dev-probe --mmap-write /prot/m
# Unprotected: nothing.
cd /plain
echo no > b
mkdir e
mv b e/b
rm e/b
shim-dev-probe --mmap-write /plain/m
# Absolute name into the protected tree.
echo abs > /prot/abs
sleep 0.5
touch /tmp/stop
while [ ! -e /tmp/stop.cleared ]; do sleep 0.1; done
# Protection off: nothing.
cd /prot
echo after > off.txt
mkdir offdir
mv off.txt offdir/
sleep 0.3
touch /tmp/stop.off
wait $probe
cd /
rmmod replifs_shim && echo "RMMOD OK"
echo alive > /plain/alive && [ "$(cat /plain/alive)" = alive ] && ls /prot/offdir/off.txt >/dev/null && echo "KERNEL OK"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 > "$work/initramfs.gz")

# 3. Boot.
timeout 240 qemu-system-x86_64 -accel tcg -m 768 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 oops=panic" > "$work/console.log" 2>&1 || true
tr -d '\r' < "$work/console.log" > "$work/console.txt"

# 4. The exact events, in order.
cat > "$work/expected.txt" <<'EXPECTED'
EVENT CREATE a
EVENT TRUNCATE a
EVENT WRITE a
EVENT CREATE a
EVENT WRITE a
EVENT MKDIR d
EVENT RENAME a -> d/a2
EVENT SYMLINK d/l
EVENT SETATTR d/a2
EVENT UNLINK d/l
EVENT CREATE m
EVENT TRUNCATE m
EVENT RESCAN m
EVENT RESCAN m
EVENT RESCAN m
EVENT CREATE abs
EVENT TRUNCATE abs
EVENT WRITE abs
EXPECTED
sed -n '/^PROTECTING/,/^PROTECTION OFF/p' "$work/console.txt" | grep '^EVENT' > "$work/events.txt" || true
sed -n '/^PROTECTION OFF/,$p' "$work/console.txt" | grep -E '^(EVENT|RECORD)' > "$work/after_off.txt" || true
fail=0
for marker in "INSMOD OK" "IMPLEMENTATION module" "DROPPED 0" "PROTECTING /prot" "PROTECTION OFF" "PROBE DONE" "RMMOD OK" "KERNEL OK"; do
  grep -q "$marker" "$work/console.txt" || { echo "vm_test: missing \"$marker\" on the console" >&2; fail=1; }
done
if ! diff -u "$work/expected.txt" "$work/events.txt" >&2; then
  echo "vm_test: events differ from the expected (above: - expected, + seen)" >&2
  fail=1
fi
if [[ -s "$work/after_off.txt" ]]; then
  echo "vm_test: records after protection was switched off:" >&2
  cat "$work/after_off.txt" >&2
  fail=1
fi
if grep -qiE 'BUG:|Oops|Call Trace|kernel panic' "$work/console.txt"; then
  echo "vm_test: the kernel complained" >&2
  fail=1
fi
if [[ $fail != 0 ]]; then
  echo "---- console" >&2
  tail -80 "$work/console.txt" >&2
  exit 1
fi
echo "vm_test: module built against $kver; $(wc -l < "$work/events.txt") events as expected; none after protection off; kernel fine after rmmod"
grep '^RECORD' "$work/console.txt" | sed -n '1,40p'
