#!/usr/bin/env bash
# lane.sh: the cgroup-v2 VM lane end to end: setup, compile the packages'
# test binaries, build the initramfs, boot, report.
#
# usage: test/vm/lane.sh [options] PKG... [-- TEST ARGS...]
#   PKG        go package patterns, as for go test (./drivers/v2/...); packages
#              without test files are left out
#   TEST ARGS  given to every test binary (-test.run=Conformance, -test.short)
# options:
#   --systemd                     systemd mode: boot a debootstrap'd Debian root
#                                 with systemd as PID 1 (pure cgroup v2) and run
#                                 the binaries from a unit once it is up, with
#                                 CGSEM_VM_SYSTEMD=1 beside CGSEM_VM=1
#   --run REGEX                   shorthand for the test arg -test.run=REGEX
#   --controllers, --env, --module, --no-brd   passed to build.sh
#   --setup-only                  install and fetch, then stop (CI warm-up;
#                                 with --systemd also debootstrap the root)
# env: as setup.sh, rootfs.sh, build.sh and run.sh (CGSEM_VM_DIR,
#      CGSEM_VM_TIMEOUT, CGSEM_VM_TEST_TIMEOUT, CGSEM_VM_CONSOLE=1, ...)
#
# Examples:
#   test/vm/lane.sh ./test/vm/probe
#   test/vm/lane.sh ./drivers/v2/...
#   test/vm/lane.sh --systemd ./test/vm/sdprobe ./drivers/systemd/...
# Exit status and last line are run.sh's: "vm: N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CGSEM_VM_DIR=${CGSEM_VM_DIR:-/var/tmp/cgsem-vm}
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
build_opts=() pkgs=() test_args=() setup_only='' systemd=''
die() { echo "lane: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--run) test_args+=("-test.run=$2"); shift 2 ;;
	--controllers | --env | --module) build_opts+=("$1" "$2"); shift 2 ;;
	--no-brd) build_opts+=("$1"); shift ;;
	--setup-only) setup_only=1; shift ;;
	--systemd) systemd=1; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; test_args+=("$@"); break ;;
	-*) die "unknown option $1" ;;
	*) pkgs+=("$1"); shift ;;
	esac
done

t0=$SECONDS
echo "lane: setup"
"$here/setup.sh" ${systemd:+--systemd}
t_setup=$((SECONDS - t0))
[ -n "$setup_only" ] && exit 0
[ ${#pkgs[@]} -gt 0 ] || die "no package given (try --help)"

# Each mode has a work directory of its own, so the two can run at once.
work=$CGSEM_VM_DIR/lane${systemd:+-systemd}
mkdir -p "$work"
# One lane per cache directory at a time: the binaries and the output of
# a second one would overwrite the first one's.
exec 8>"$work/.lock"
flock -n 8 || die "another lane is running in $CGSEM_VM_DIR (set CGSEM_VM_DIR to run two)"
rm -rf "${work:?}/bin"
mkdir -p "$work/bin"

t1=$SECONDS
# Package patterns are the caller's, relative to where it stands; outside
# the module they are taken relative to the repository root.
case $PWD/ in "$repo"/*) ;; *) cd "$repo" ;; esac
module=$(go list -m)
mapfile -t tested < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' "${pkgs[@]}" | sed '/^$/d')
[ ${#tested[@]} -gt 0 ] || die "no package with tests in: ${pkgs[*]}"
spec=()
for line in "${tested[@]}"; do
	p=${line%% *} dir=${line#* }
	rel=${p#"$module"/}
	bin=$work/bin/${rel//\//_}.test
	echo "lane: go test -c $p"
	# Static, stripped: the guest has no dynamic loader, and every byte of
	# the initramfs is copied into guest memory at boot.
	CGO_ENABLED=0 go test -c -trimpath -ldflags='-s -w' -o "$bin" "$p"
	[ ${#spec[@]} -gt 0 ] && spec+=(--)
	# --pkgdir: the binary runs in a copy of its package directory's
	# testdata, as go test runs it in the package directory.
	spec+=(--pkgdir "$dir" "$bin" ${test_args[@]+"${test_args[@]}"})
done
t_compile=$((SECONDS - t1))

t2=$SECONDS
run_opts=()
if [ -n "$systemd" ]; then
	build_opts+=(--systemd --disk "$work/tests.img")
	run_opts=(--systemd "$CGSEM_VM_DIR/systemd/root.img" "$work/tests.img")
fi
"$here/build.sh" ${build_opts[@]+"${build_opts[@]}"} -o "$work/initramfs.cpio" "${spec[@]}"
t_build=$((SECONDS - t2))

t3=$SECONDS
# run.sh's output is shown as it comes, except its last line, the count,
# which stays the last line of the lane.
set +e
CGSEM_VM_OUT=${CGSEM_VM_OUT:-$work/out} "$here/run.sh" ${run_opts[@]+"${run_opts[@]}"} "$work/initramfs.cpio" 2>&1 |
	tee "$work/run.log" | sed -u '$d'
rc=${PIPESTATUS[0]}
set -e
t_vm=$((SECONDS - t3))
echo "lane: ${systemd:+systemd mode, }setup ${t_setup}s, go test -c ${t_compile}s, ${systemd:+test disk and }initramfs ${t_build}s, vm ${t_vm}s, total $((SECONDS - t0))s"
tail -n 1 "$work/run.log"
exit "$rc"
