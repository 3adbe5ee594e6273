#!/usr/bin/env bash
# build.sh: write the lane's initramfs around one or more Go test binaries.
#
# usage: test/vm/build.sh [options] SPEC [-- SPEC]...
#   SPEC       [--pkgdir DIR] BIN [ARG...]
#   BIN        a test binary from `CGO_ENABLED=0 go test -c` (must be static)
#   ARG        its arguments; -test.v and -test.timeout=$CGSEM_VM_TEST_TIMEOUT
#              (default 10m) are added when not given
#   DIR        the package's source directory: its testdata/ goes along, and
#              the binary runs there as under go test (default: its TMPDIR)
# options (before the first BIN):
#   -o FILE              the initramfs to write (default VMDIR/initramfs.cpio)
#   --controllers SPEC   root cgroup.subtree_control in the guest: all (default),
#                        none, or a quoted list such as "memory pids"
#   --env NAME=VALUE     environment for every binary (repeatable)
#   --module "NAME [PARAMS]"  also load VMDIR/kernel/modules/NAME.ko (repeatable)
#   --no-brd             leave out the RAM block device (/dev/ram0)
#   --systemd            the systemd lane: the tests go on an ext4 test disk
#                        (see --disk), and the initramfs only loads the virtio
#                        modules and hands over to systemd on /dev/vda (the
#                        root from rootfs.sh), with the test disk (/dev/vdb)
#                        mounted at /test; there systemd's cgsem-vmtest.service
#                        runs "/test/vminit runner"
#   --disk FILE          with --systemd: the test disk to write
#                        (default VMDIR/tests.img)
# env: CGSEM_VM_DIR (VMDIR, default /var/tmp/cgsem-vm, prepared by setup.sh)
#
# The archive holds /init (vminit), /test/manifest, /test/bin/NN-<name> and
# /modules/*.ko; it is uncompressed because decompression is slow under TCG.
# With --systemd the archive holds /init, the modules and a manifest of
# switchroot and mount lines; the test disk holds what /test held
# (manifest, bin/, pkg/) and vminit again, for the runner.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir=${CGSEM_VM_DIR:-/var/tmp/cgsem-vm}
timeout=${CGSEM_VM_TEST_TIMEOUT:-10m}
out='' controllers=all brd=1 systemd='' disk=''
envs=() modules=()
die() { echo "build: $*" >&2; exit 2; }
# mkcpio's list is split on blanks.
nospace() { [[ $1 != *[[:space:]]* ]] || die "path with a blank is not supported: $1"; }

while [ $# -gt 0 ]; do
	case $1 in
	-o) out=$2; shift 2 ;;
	--controllers) controllers=$2; shift 2 ;;
	--env) [[ $2 == *=* ]] || die "--env $2: not NAME=VALUE"; envs+=("$2"); shift 2 ;;
	--module) modules+=("$2"); shift 2 ;;
	--no-brd) brd=; shift ;;
	--systemd) systemd=1; shift ;;
	--disk) disk=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	--pkgdir) break ;; # the first SPEC's
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || die "no test binary given (try --help)"
out=${out:-$vmdir/initramfs.cpio}
[ -z "$disk" ] || [ -n "$systemd" ] || die "--disk is for --systemd"
disk=${disk:-$vmdir/tests.img}
kdir=$vmdir/kernel
nospace "$kdir"
[ -f "$kdir/stamp" ] || die "no kernel in $kdir: run test/vm/setup.sh first"
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/init" ./test/vm/vminit &&
	CGO_ENABLED=0 go build -o "$tmp/mkcpio" ./test/vm/mkcpio)

# list and manifest are the initramfs's; tlist and tmanifest hold the
# tests. Without --systemd they are the same files: everything goes into
# the initramfs. With it, the tests go on the test disk, and the
# initramfs's manifest only switches root.
list=$tmp/list manifest=$tmp/manifest tlist=$tmp/list tmanifest=$tmp/manifest
if [ -n "$systemd" ]; then
	tlist=$tmp/tlist tmanifest=$tmp/tmanifest
	nospace "$disk"
fi
{
	echo "dir /dev 0755 0 0"
	# The kernel opens /dev/console for /init before anything is mounted.
	echo "nod /dev/console 0600 0 0 c 5 1"
	for d in proc sys run root tmp test modules; do echo "dir /$d 0755 0 0"; done
	echo "file /init $tmp/init 0755 0 0"
	echo "file /test/manifest $manifest 0644 0 0"
} >"$list"
{
	for d in test/bin test/pkg; do echo "dir /$d 0755 0 0"; done
	if [ -n "$systemd" ]; then
		echo "file /test/manifest $tmanifest 0644 0 0"
		echo "file /test/vminit $tmp/init 0755 0 0"
	fi
} >>"$tlist"

case $controllers in
all | none) echo "controllers $controllers" >"$tmanifest" ;;
*) echo "controllers $controllers" | tr -s ' \t' '  ' >"$tmanifest" ;;
esac

add_module() { # NAME [PARAMS...]
	local name=$1; shift
	local ko=$kdir/modules/$name.ko
	[ -f "$ko" ] || die "module $name: no $ko (setup.sh extracts brd and virtio_*)"
	echo "file /modules/$name.ko $ko 0644 0 0" >>"$list"
	echo "module /modules/$name.ko $*" >>"$manifest"
}
# brd gives /dev/ram0, a block device for io.max and io.stat (64 MiB,
# allocated only when written).
[ -n "$brd" ] && [ -f "$kdir/modules/brd.ko" ] && add_module brd rd_nr=1 rd_size=65536
for m in ${modules[@]+"${modules[@]}"}; do
	# shellcheck disable=SC2086 # NAME and PARAMS are one word each by design
	add_module $m
done
if [ -n "$systemd" ]; then
	# virtio_blk and its dependencies, in dependency order (finit_module
	# resolves none); ext4 is built into the cloud kernel.
	for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
		add_module "$m"
	done
	{
		echo "switchroot /dev/vda ext4 /lib/systemd/systemd"
		echo "mount /dev/vdb /test ext4 rw"
	} >>"$manifest"
fi

# add_testdata SRCDIR DEST: SRCDIR/testdata, if any, becomes DEST/testdata,
# with its modes and symlinks.
add_testdata() {
	local src=$1/testdata dest=$2/testdata type mode rel target
	[ -d "$src" ] || return 0
	nospace "$src"
	echo "dir $dest 0755 0 0" >>"$tlist"
	while IFS=' ' read -r type mode rel; do
		nospace "$rel"
		case $type in
		d) echo "dir $dest/$rel $mode 0 0" ;;
		f) echo "file $dest/$rel $src/$rel $mode 0 0" ;;
		l)
			target=$(readlink "$src/$rel")
			nospace "$target"
			echo "slink $dest/$rel $target 0777 0 0"
			;;
		*) die "$src/$rel: only files, directories and symlinks can go into the initramfs" ;;
		esac
	done < <(cd "$src" && find . -mindepth 1 -printf '%y %m %P\n' | sort -k3) >>"$tlist"
}

n=0
while [ $# -gt 0 ]; do
	pkgdir=''
	if [ "$1" = --pkgdir ]; then
		[ $# -ge 3 ] || die "--pkgdir needs a directory and a binary"
		pkgdir=$2; shift 2
		[ -d "$pkgdir" ] || die "--pkgdir $pkgdir: not a directory"
	fi
	bin=$1; shift
	args=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
	[ $# -gt 0 ] && shift # the --
	if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then die "$bin: not an executable file"; fi
	# A cgo binary needs a dynamic loader that the initramfs does not have;
	# it would fail in the guest with a puzzling ENOENT.
	if ! go version -m "$bin" 2>/dev/null | grep -q 'CGO_ENABLED=0'; then
		die "$bin: not built with CGO_ENABLED=0 (go version -m shows its build settings)"
	fi
	n=$((n + 1))
	dest=/test/bin/$(printf %02d $n)-$(basename "$bin")
	src=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
	nospace "$src"
	echo "file $dest $src 0755 0 0" >>"$tlist"
	have_v='' have_timeout=''
	for a in ${args[@]+"${args[@]}"}; do
		case $a in
		-test.v | -test.v=* | --test.v | --test.v=*) have_v=1 ;;
		-test.timeout | -test.timeout=* | --test.timeout | --test.timeout=*) have_timeout=1 ;;
		esac
	done
	[ -n "$have_v" ] || args=(-test.v "${args[@]+"${args[@]}"}")
	[ -n "$have_timeout" ] || args+=("-test.timeout=$timeout")
	echo "run $dest" >>"$tmanifest"
	if [ -n "$pkgdir" ]; then
		cwd=/test/pkg/$(printf %02d $n)
		echo "dir $cwd 0755 0 0" >>"$tlist"
		add_testdata "$pkgdir" "$cwd"
		echo "dir $cwd" >>"$tmanifest"
	fi
	for a in "${args[@]}"; do
		[[ $a != *$'\n'* ]] || die "an argument of $bin contains a newline"
		echo "arg $a" >>"$tmanifest"
	done
	for e in ${envs[@]+"${envs[@]}"}; do
		[[ $e != *$'\n'* ]] || die "--env value contains a newline"
		echo "env $e" >>"$tmanifest"
	done
done

# materialize LIST PREFIX DIR: the entries of a mkcpio list below PREFIX,
# as files in DIR (for mkfs.ext4 -d, which copies a directory).
materialize() {
	local kind name a b
	while read -r kind name a b _; do
		case $kind in '' | '#'*) continue ;; esac
		[[ $name == "$2" || $name == "$2"/* ]] || die "test disk entry $name is outside $2"
		name=$3${name#"$2"}
		case $kind in
		dir) mkdir -p "$name" && chmod "$a" "$name" ;;
		file) cp "$a" "$name" && chmod "$b" "$name" ;;
		slink) ln -s "$a" "$name" ;;
		*) die "$kind entry $name cannot go on the test disk" ;;
		esac
	done <"$1"
}

mkdir -p "$(dirname "$out")"
"$tmp/mkcpio" -o "$out.tmp" <"$list"
mv "$out.tmp" "$out"
if [ -n "$systemd" ]; then
	mkdir "$tmp/disk"
	materialize "$tlist" /test "$tmp/disk"
	mb=$(du -sm "$tmp/disk" | cut -f1)
	mkdir -p "$(dirname "$disk")"
	# Room for what a test writes into its package directory; sparse.
	mkfs.ext4 -q -F -L cgsem-tests -d "$tmp/disk" "$disk.tmp" "$((mb * 2 + 64))M" >/dev/null
	mv "$disk.tmp" "$disk"
	echo "build: $disk (${mb} MiB of tests, $n test binar$([ $n = 1 ] && echo y || echo ies), controllers $controllers), $out ($(($(stat -c %s "$out") >> 20)) MiB, switches root to systemd)"
else
	echo "build: $out ($(($(stat -c %s "$out") >> 20)) MiB, $n test binar$([ $n = 1 ] && echo y || echo ies), controllers $controllers)"
fi
