#!/usr/bin/env bash
# rootfs.sh: the systemd lane's root filesystem: a Debian minbase tree with
# systemd and dbus from debootstrap, plus the lane's test unit, packed into an
# ext4 image without mounting anything on the host (mkfs.ext4 -d).
#
# usage: test/vm/rootfs.sh [VMDIR]      (default $CGSEM_VM_DIR or /var/tmp/cgsem-vm)
# env:   CGSEM_VM_SUITE     Debian suite (default: this machine's VERSION_CODENAME)
#        CGSEM_VM_MIRROR    mirror URI (default: the first apt source serving
#                           SUITE's main component, from /etc/apt/sources.list,
#                           sources.list.d/*.list or sources.list.d/*.sources)
#        CGSEM_VM_PACKAGES  more packages for the root, comma separated
#
# Result, each step cached and redone only when its inputs change:
#   VMDIR/systemd/rootfs/    debootstrap's tree, never modified afterwards
#                            (inputs: suite, architecture, package list)
#   VMDIR/systemd/root.img   ext4 image of that tree plus the lane's changes
#                            (inputs: the tree's stamp and this script)
# The guest boots it with qemu's snapshot=on, so the image stays pristine.
# debootstrap runs in private mount and pid namespaces: the proc and sysfs
# it mounts inside the tree are never visible on the host, and nothing it
# starts survives it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vmdir=${1:-${CGSEM_VM_DIR:-/var/tmp/cgsem-vm}}
sd=$vmdir/systemd
log() { echo "rootfs: $*" >&2; }
die() { log "$*"; exit 1; }

# systemd-sysv gives /sbin/poweroff and friends; dbus is the system bus the
# tests and systemctl talk to. Everything else comes with minbase.
packages=systemd,systemd-sysv,dbus${CGSEM_VM_PACKAGES:+,$CGSEM_VM_PACKAGES}
# shellcheck disable=SC1091 # the machine's own release file
suite=${CGSEM_VM_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[ -n "$suite" ] || die "no VERSION_CODENAME in /etc/os-release: set CGSEM_VM_SUITE"
arch=$(dpkg --print-architecture)

# mirror SUITE: the URI of the first enabled "deb" source whose suites
# include SUITE with the main component, in the order apt reads them.
mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		case $f in
		*.sources)
			# deb822: paragraphs of "Field: value" lines; values may continue
			# on indented lines, which are joined here.
			awk -v suite="$1" '
				function flush() {
					if (types ~ /(^| )deb( |$)/ && enabled !~ /^no$/ && (" " suites " ") ~ (" " suite " ") && (" " comps " ") ~ / main /) {
						split(uris, u, " "); print u[1]; found = 1; exit
					}
					types = uris = suites = comps = enabled = ""; last = ""
				}
				/^#/ { next }
				/^[ \t]*$/ { flush(); next }
				/^[ \t]/ { v = $0; sub(/^[ \t]+/, "", v); val[last] = val[last] " " v; assign(last, val[last]); next }
				{
					k = tolower($0); sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
					last = k; val[k] = v; assign(k, v)
				}
				function assign(k, v) {
					if (k == "types") types = v; else if (k == "uris") uris = v
					else if (k == "suites") suites = v; else if (k == "components") comps = v
					else if (k == "enabled") enabled = tolower(v)
				}
				END { if (!found) flush() }' "$f"
			;;
		*)
			# one-line: deb [options] URI SUITE COMPONENT...
			awk -v suite="$1" '
				$1 != "deb" { next }
				{
					i = 2
					if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
					if ($(i + 1) != suite) next
					for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit }
				}' "$f"
			;;
		esac
	done | grep -E '^(https?|ftp|file):' | head -n 1
}

# A proxy configured for apt is one debootstrap's wget must use too.
proxy_from_apt() {
	local http='' https=''
	eval "$(apt-config shell http Acquire::http::Proxy https Acquire::https::Proxy)"
	if [ -n "$http" ] && [ "$http" != DIRECT ] && [ -z "${http_proxy:-}" ]; then export http_proxy=$http; fi
	if [ -n "$https" ] && [ "$https" != DIRECT ] && [ -z "${https_proxy:-}" ]; then export https_proxy=$https; fi
}

mkdir -p "$sd"
exec 7>"$sd/.lock"
flock 7

tree_want="suite=$suite arch=$arch variant=minbase packages=$packages"
if [ ! -f "$sd/rootfs.stamp" ] || [ "$(cat "$sd/rootfs.stamp")" != "$tree_want" ]; then
	command -v debootstrap >/dev/null || die "no debootstrap: run test/vm/setup.sh --systemd"
	uri=${CGSEM_VM_MIRROR:-$(mirror "$suite")}
	[ -n "$uri" ] || die "no apt source serves $suite main (set CGSEM_VM_MIRROR)"
	proxy_from_apt
	rm -rf "$sd/rootfs" "$sd/rootfs.stamp" "$sd"/.debootstrap.*
	tmp=$(mktemp -d "$sd/.debootstrap.XXXXXX")
	log "debootstrap $suite ($packages) from $uri"
	t0=$SECONDS
	if ! unshare --mount --propagation private --pid --fork \
		debootstrap --variant=minbase --arch="$arch" --include="$packages" "$suite" "$tmp/root" "$uri" \
		>"$sd/debootstrap.log" 2>&1; then
		tail -n 30 "$sd/debootstrap.log" >&2
		[ -f "$tmp/root/debootstrap/debootstrap.log" ] && tail -n 30 "$tmp/root/debootstrap/debootstrap.log" >&2
		rm -rf "$tmp"
		die "debootstrap failed (log: $sd/debootstrap.log)"
	fi
	# The packages are installed; their archives and the lists only make
	# the image bigger.
	rm -rf "$tmp/root"/var/cache/apt/archives/*.deb "$tmp/root"/var/lib/apt/lists/*
	mv "$tmp/root" "$sd/rootfs"
	rmdir "$tmp"
	echo "$tree_want" >"$sd/rootfs.stamp"
	log "debootstrap done in $((SECONDS - t0))s, $(du -sm "$sd/rootfs" | cut -f1) MiB"
fi

# customize DIR: the lane's changes to a copy of the tree.
customize() {
	local root=$1 etc=$1/etc/systemd/system u
	echo cgsem-vm >"$root/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 cgsem-vm\n' >"$root/etc/hosts"
	# vminit mounts the root read-write before systemd starts; no fstab
	# entry means no fsck or remount job waiting for a device unit that,
	# without udev, would never appear.
	echo "# the root and /test are mounted by vminit before systemd starts" >"$root/etc/fstab"
	ln -sf /lib/systemd/system/multi-user.target "$etc/default.target"
	# No udev in this root: a getty would wait 90 s for its dev-tty*.device.
	# The timers are housekeeping that would start units, and so make
	# cgroups, in the middle of a test run.
	for u in getty.target serial-getty@ttyS0.service getty@tty1.service console-getty.service \
		systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
		e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer systemd-tmpfiles-clean.timer; do
		ln -sf /dev/null "$etc/$u"
	done
	# The journal stays in memory (the disk is a throwaway snapshot, and
	# every write costs under TCG); a unit that hangs on stop does not
	# hold up the power-off for 90 s.
	mkdir -p "$root/etc/systemd/journald.conf.d" "$root/etc/systemd/system.conf.d"
	printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$root/etc/systemd/journald.conf.d/cgsem-vm.conf"
	printf '[Manager]\nDefaultTimeoutStopSec=15s\n' >"$root/etc/systemd/system.conf.d/cgsem-vm.conf"
	# The test runner: vminit in runner mode, from the test disk that
	# vminit (as PID 1 of the initramfs) mounted at /test before it handed
	# over to systemd. It runs once, after multi-user.target. Type=exec,
	# not oneshot: a oneshot's start job would last the whole run and keep
	# the boot unfinished (SystemState "starting", systemd-analyze
	# refusing), which is not the system the tests are for; with exec the
	# boot finishes as the runner starts, and the runner waits for that.
	# Delegate=yes: the runner owns its cgroup subtree and puts each test
	# binary in a leaf of its own. Whatever the outcome, the VM powers off
	# when it ends; the runner has drained ttyS1 by then.
	cat >"$etc/cgsem-vmtest.service" <<-'UNIT'
		[Unit]
		Description=cgsem VM lane: run the test binaries of /test
		After=multi-user.target
		SuccessAction=poweroff-force
		FailureAction=poweroff-force

		[Service]
		Type=exec
		ExecStart=/test/vminit runner /test/manifest
		Delegate=yes
		StandardInput=null
		StandardOutput=tty
		StandardError=inherit
		TTYPath=/dev/console

		[Install]
		WantedBy=multi-user.target
	UNIT
	mkdir -p "$etc/multi-user.target.wants"
	ln -sf ../cgsem-vmtest.service "$etc/multi-user.target.wants/cgsem-vmtest.service"
	mkdir -p "$root/test"
}

img_want="$tree_want script=$(sha256sum "$here/rootfs.sh" | cut -c1-16)"
if [ ! -f "$sd/root.img" ] || [ ! -f "$sd/root.stamp" ] || [ "$(cat "$sd/root.stamp")" != "$img_want" ]; then
	command -v mkfs.ext4 >/dev/null || die "no mkfs.ext4 (e2fsprogs)"
	rm -rf "$sd"/.stage.*
	stage=$(mktemp -d "$sd/.stage.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	t0=$SECONDS
	cp -a "$sd/rootfs/." "$stage/"
	customize "$stage"
	used=$(du -sm "$stage" | cut -f1)
	# Room for the tests' files in /tmp and the volatile journal; the image
	# is sparse, so the slack costs no disk. Inode tables are written now,
	# so no ext4lazyinit thread spends the guest's emulated CPU on them.
	mkfs.ext4 -q -F -L cgsem-root -E lazy_itable_init=0,lazy_journal_init=0 \
		-d "$stage" "$sd/root.img.tmp" "$((used + 1024))M" >/dev/null
	mv "$sd/root.img.tmp" "$sd/root.img"
	echo "$img_want" >"$sd/root.stamp"
	log "image $sd/root.img: ${used} MiB used, built in $((SECONDS - t0))s"
fi
echo "rootfs: $suite ($packages), systemd $(dpkg-query --admindir="$sd/rootfs/var/lib/dpkg" -W -f='${Version}' systemd) in $sd/root.img"
