#!/usr/bin/env bash
# A small real Linux guest, from Debian packages only: the cloud kernel and an initramfs
# of static busybox with the virtio modules. It boots under TCG in a few seconds
# (shared/spec/qemu-on-these-machines.md), starts a shell on the serial console, brings
# up eth0 (a static address from the kernel command line, else DHCP), and serves:
#   tcp/7   echo
#   tcp/9   sink: counts what a connection sends, reported on tcp/10
#   tcp/10  the byte count of the last finished sink connection
#   tcp/11  "<bytes> <seconds>" of the last finished sink connection (throughput)
#   tcp/12  pings the IPv4 address the client sends (one line), 20 times 0.2 s apart,
#           and answers with ping's summary (latency between guests)
#   tcp/13  "ADDR N": sends N blocks of 10 KiB to ADDR's sink as fast as it can
# (a test image for isolated test networks: these services answer anyone who asks)
# Kernel command line options (all optional):
#   fxip=10.0.0.5/24 fxgw=10.0.0.1   static address and default gateway (else DHCP)
#   fxname=web1                      host name (shown in the prompt)
#   fxstream=ADDR:PORT:N:DELAY_MS    after boot, send N blocks of 10 KiB to ADDR:PORT,
#                                    one every DELAY_MS (a stream to watch across a
#                                    migration); the outcome goes to the console
#
# Usage: scripts/build-linux-guest.sh [OUT_DIR]   (default target/linux-guest)
# Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.gz; does nothing when they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/linux-guest}
recipe_version=2
if [[ -s $out/vmlinuz && -s $out/initrd.gz && "$(cat "$out/recipe" 2>/dev/null)" == "$recipe_version" ]]; then
    exit 0
fi
need=()
command -v cpio >/dev/null || need+=(cpio)
[[ -x /bin/busybox && "$(file -b /bin/busybox 2>/dev/null)" == *static* ]] || need+=(busybox-static)
command -v file >/dev/null || need+=(file)
if ((${#need[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "build-linux-guest: needs ${need[*]} (apt-get install as root)" >&2
        exit 1
    fi
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
busybox=/bin/busybox
[[ "$(file -b $busybox)" == *static* ]] || { echo "build-linux-guest: $busybox is not static" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The ABI number in the package name changes with kernel updates: ask the meta-package.
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $kpkg ]] || { echo "build-linux-guest: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
(cd "$work" && apt-get download -qq "$kpkg" 2>/dev/null)
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
kdir=$(echo "$work"/kernel/lib/modules/*)

root=$work/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules,usr/share/udhcpc}
cp "$busybox" "$root/bin/busybox"
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon
    virtio_blk failover net_failover virtio_net virtio_console evdev button)
for m in "${modules[@]}"; do
    f=$(find "$kdir" -name "$m.ko" | head -1)
    [[ -n $f ]] || { echo "build-linux-guest: module $m not in $kpkg" >&2; exit 1; }
    cp "$f" "$root/lib/modules/"
done

cat > "$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc's hook: apply the lease.
case $1 in
  bound|renew)
    ip addr flush dev $interface
    ip addr add $ip/${mask:-24} dev $interface
    [ -n "$router" ] && ip route replace default via ${router%% *} dev $interface
    echo "FERROX-IP $ip" > /dev/console ;;
  deconfig) ip addr flush dev $interface ;;
esac
EOF
cat > "$root/bin/sink" <<'EOF'
#!/bin/sh
# One sink connection: count its bytes, keep the count for tcp/10 and the time for tcp/11.
t0=$(cut -d' ' -f1 /proc/uptime)
n=$(wc -c)
t1=$(cut -d' ' -f1 /proc/uptime)
echo "$n $(echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}')" > /tmp/sink.timed
echo "$n" > /tmp/sink.last
echo "SINK $n" > /dev/console
EOF
cat > "$root/bin/timed" <<'EOF'
#!/bin/sh
cat /tmp/sink.timed 2>/dev/null || echo none
EOF
cat > "$root/bin/pingpeer" <<'EOF'
#!/bin/sh
# Pings the address the client names: digits and dots only.
read addr
case $addr in *[!0-9.]*|"") echo "not an IPv4 address"; exit 1 ;; esac
ping -q -c 20 -i 0.2 "$addr" | tail -2
EOF
cat > "$root/bin/sendto" <<'EOF'
#!/bin/sh
# Sends N blocks of 10 KiB as fast as it can to ADDR's sink (tcp/9): "ADDR N".
read addr n
case $addr in *[!0-9.]*|"") echo "not an IPv4 address"; exit 1 ;; esac
case $n in *[!0-9]*|"") echo "not a count"; exit 1 ;; esac
dd if=/dev/zero bs=10240 count="$n" 2>/dev/null | nc "$addr" 9
echo "sent $n"
EOF
cat > "$root/bin/report" <<'EOF'
#!/bin/sh
cat /tmp/sink.last 2>/dev/null || echo none
EOF
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon virtio_blk failover net_failover virtio_net virtio_console evdev button; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
name=ferrox-guest; ip=; gw=; stream=
for a in $(cat /proc/cmdline); do case $a in
  fxip=*) ip=${a#fxip=} ;;
  fxgw=*) gw=${a#fxgw=} ;;
  fxname=*) name=${a#fxname=} ;;
  fxstream=*) stream=${a#fxstream=} ;;
esac; done
hostname "$name"
# ACPI power button (system_powerdown) -> poweroff
for d in /sys/class/input/input*; do
  if grep -q "Power Button" $d/name 2>/dev/null; then ev=$(ls $d | grep ^event | head -1)
    (dd if=/dev/input/$ev bs=24 count=1 >/dev/null 2>&1; sync; poweroff -f) &
  fi
done
ip link set lo up
ip link set eth0 up 2>/dev/null
if [ -n "$ip" ]; then
  ip addr add "$ip" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
  echo "FERROX-IP ${ip%/*}"
elif [ -e /sys/class/net/eth0 ]; then
  udhcpc -i eth0 -b -q -t 20 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 &
fi
nc -ll -p 7 -e cat &
nc -ll -p 9 -e /bin/sink &
nc -ll -p 10 -e /bin/report &
nc -ll -p 11 -e /bin/timed &
nc -ll -p 12 -e /bin/pingpeer &
nc -ll -p 13 -e /bin/sendto &
if [ -n "$stream" ]; then
  (
    IFS=: read addr port count delay <<END
$stream
END
    sleep 1
    i=0
    while [ $i -lt $count ]; do
      dd if=/dev/zero bs=10240 count=1 2>/dev/null
      usleep $((delay * 1000))
      i=$((i + 1))
    done | nc $addr $port
    echo "STREAM-DONE exit=$? blocks=$count"
  ) > /dev/console 2>&1 &
fi
echo "GUEST-BOOTED $(cut -d' ' -f1 /proc/uptime)"
export PS1="$name# "
while :; do setsid cttyhack sh -l; done
EOF
chmod +x "$root/init" "$root/bin/sink" "$root/bin/report" "$root/bin/timed" "$root/bin/pingpeer" "$root/bin/sendto" "$root/usr/share/udhcpc/default.script"

mkdir -p "$out"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "$kpkg" > "$out/kernel"
echo "$recipe_version" > "$out/recipe"
echo "linux guest: $out/vmlinuz ($kpkg), $out/initrd.gz ($(du -h "$out/initrd.gz" | cut -f1))"
