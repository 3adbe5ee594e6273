#!/usr/bin/env bash
# setup.sh: install what the cgroup-v2 VM lane needs, from Debian packages only.
#
# usage: test/vm/setup.sh [--systemd] [VMDIR]   (default $CGSEM_VM_DIR or /var/tmp/cgsem-vm)
#   --systemd  also prepare the systemd lane: debootstrap and e2fsprogs from
#              apt, then rootfs.sh (VMDIR/systemd/root.img, cached)
# env:   CGSEM_VM_KFLAVOUR  kernel flavour, default cloud-amd64 (LZ4 image; the
#                           generic "amd64" is XZ and boots 5-7 s slower under TCG)
#        and rootfs.sh's (CGSEM_VM_SUITE, CGSEM_VM_MIRROR, CGSEM_VM_PACKAGES)
#
# Result (cached, idempotent; a second run does nothing and prints the same):
#   qemu-system-x86_64 on PATH (apt, --no-install-recommends)
#   VMDIR/kernel/vmlinuz, VMDIR/kernel/config, VMDIR/kernel/version
#   VMDIR/kernel/modules/*.ko  (brd for a RAM block device; virtio_* for the
#                               systemd lane's disks)
# The kernel is taken out of the .deb with dpkg-deb: nothing is installed into
# the host's /boot or /lib/modules, nothing is mounted, no cgroup is written.
# The package mirror is whatever the machine's apt sources say.
set -euo pipefail

systemd=
if [ "${1:-}" = --systemd ]; then systemd=1; shift; fi
vmdir=${1:-${CGSEM_VM_DIR:-/var/tmp/cgsem-vm}}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
flavour=${CGSEM_VM_KFLAVOUR:-cloud-amd64}
# Modules the lane may load, as paths below lib/modules/<ver>/kernel/drivers.
modules="block/brd virtio/virtio virtio/virtio_ring virtio/virtio_pci_modern_dev
         virtio/virtio_pci_legacy_dev virtio/virtio_pci block/virtio_blk"

mkdir -p "$vmdir"
# Two lanes (make test-vm beside CI) may set up the same cache at once.
exec 9>"$vmdir/.setup.lock"
flock 9

log() { echo "setup: $*" >&2; }

# Another apt user (unattended upgrades, a parallel job) may hold the lock.
apt_get() {
	local i
	for i in $(seq 1 30); do
		if DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=20 "$@"; then
			return 0
		fi
		log "apt-get $1 failed (attempt $i), retrying"
		sleep 5
	done
	return 1
}

updated=
apt_update() {
	[ -n "$updated" ] && return 0
	log "apt-get update"
	apt_get update -qq >&2
	updated=1
}

if ! command -v qemu-system-x86_64 >/dev/null; then
	apt_update
	log "installing qemu-system-x86"
	apt_get install -y -qq --no-install-recommends qemu-system-x86 >"$vmdir/apt.log" ||
		{ tail -n 30 "$vmdir/apt.log" >&2; exit 1; }
fi

# The systemd lane builds its root with debootstrap and packs it with
# mkfs.ext4 -d (e2fsprogs 1.43 or later).
if [ -n "$systemd" ]; then
	need=()
	command -v debootstrap >/dev/null || need+=(debootstrap)
	command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
	if [ ${#need[@]} -gt 0 ]; then
		apt_update
		log "installing ${need[*]}"
		apt_get install -y -qq --no-install-recommends "${need[@]}" >"$vmdir/apt.log" ||
			{ tail -n 30 "$vmdir/apt.log" >&2; exit 1; }
	fi
fi

kdir=$vmdir/kernel
want="flavour=$flavour"
if [ ! -f "$kdir/stamp" ] || ! grep -qx "$want" "$kdir/stamp"; then
	apt_update
	# linux-image-<flavour> is a metapackage; its dependency is the real image.
	pkg=$(apt-cache depends "linux-image-$flavour" | awk '/Depends: linux-image-/ {print $2; exit}')
	[ -n "$pkg" ] || { log "no linux-image-$flavour in the apt lists"; exit 1; }
	kver=${pkg#linux-image-}
	kver=${kver%-unsigned}
	tmp=$(mktemp -d "$vmdir/.kernel.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	# apt-get download writes as the unprivileged _apt user where it can.
	if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
	log "downloading $pkg"
	(cd "$tmp" && apt_get download "$pkg" >"$vmdir/apt.log") || { tail -n 30 "$vmdir/apt.log" >&2; exit 1; }
	deb=$(ls "$tmp"/*.deb)
	mkdir -p "$tmp/x" "$tmp/kernel/modules"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" \
		"./boot/vmlinuz-$kver" "./boot/config-$kver" \
		--wildcards "./lib/modules/$kver/kernel/drivers/block/*" "./lib/modules/$kver/kernel/drivers/virtio/*"
	cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/kernel/vmlinuz"
	cp "$tmp/x/boot/config-$kver" "$tmp/kernel/config"
	for m in $modules; do
		f=$(find "$tmp/x/lib/modules/$kver/kernel/drivers/$(dirname "$m")" -maxdepth 1 -name "$(basename "$m").ko*" 2>/dev/null | head -n 1)
		if [ -z "$f" ]; then
			log "module $m not in $pkg (built in or absent)"
			continue
		fi
		case $f in
		*.ko) cp "$f" "$tmp/kernel/modules/" ;;
		*.ko.xz) xz -dc "$f" >"$tmp/kernel/modules/$(basename "${f%.xz}")" ;;
		*.ko.zst) zstd -qdc "$f" >"$tmp/kernel/modules/$(basename "${f%.zst}")" ;;
		*) log "module $f: unknown compression"; exit 1 ;;
		esac
	done
	echo "$kver" >"$tmp/kernel/version"
	echo "$want" >"$tmp/kernel/stamp"
	rm -rf "$kdir"
	mv "$tmp/kernel" "$kdir"
fi

# The lane needs a pure cgroup v2 kernel with these; fail early and clearly.
for opt in CONFIG_CGROUPS CONFIG_MEMCG CONFIG_CGROUP_PIDS CONFIG_BLK_CGROUP CONFIG_CGROUP_SCHED \
	CONFIG_CGROUP_BPF CONFIG_BPF_SYSCALL CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE CONFIG_BLK_DEV_INITRD; do
	grep -q "^$opt=y" "$kdir/config" || { log "kernel $(cat "$kdir/version") lacks $opt=y"; exit 1; }
done

# The root is built after the setup lock is released: rootfs.sh has a lock
# of its own, and a lane of the other mode need not wait for debootstrap.
if [ -n "$systemd" ]; then
	flock -u 9
	"$here/rootfs.sh" "$vmdir"
fi

echo "setup: qemu $(qemu-system-x86_64 --version | awk 'NR==1{print $4}'), kernel $(cat "$kdir/version") in $kdir, modules: $(find "$kdir/modules" -name '*.ko' -printf '%f\n' | sort | tr '\n' ' ')"
