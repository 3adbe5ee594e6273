#!/usr/bin/env bash
# run.sh: boot the lane's VM on an initramfs from build.sh and report.
#
# usage: test/vm/run.sh [--systemd ROOTIMG TESTIMG] [INITRAMFS] [-- EXTRA QEMU ARGS...]
#        (default INITRAMFS: VMDIR/initramfs.cpio)
#   --systemd  boot systemd from ROOTIMG (rootfs.sh) with the tests on TESTIMG
#              (build.sh --systemd --disk): both attached as virtio disks
#              (/dev/vda, /dev/vdb) with snapshot=on, so the guest's writes
#              never reach the files, and root=/dev/vda rw on the command line
# env:   CGSEM_VM_DIR      VMDIR (default /var/tmp/cgsem-vm; kernel from setup.sh)
#        CGSEM_VM_OUT      where console.log and results.txt go (default VMDIR/out)
#        CGSEM_VM_TIMEOUT  host-side limit for the whole boot, seconds (default 1200)
#        CGSEM_VM_MEM      guest memory, MiB (default 2048)
#        CGSEM_VM_SMP      guest CPUs (default 2)
#        CGSEM_VM_ACCEL    qemu accelerator (default tcg: this machine has no usable KVM)
#        CGSEM_VM_APPEND   extra kernel command line (k=v words the kernel does
#                          not know reach /init, and so the tests, as environment)
#        CGSEM_VM_CONSOLE=1  also stream the guest console (kernel log) live
#
# Prints the guest's test output as it arrives (from the second serial port,
# which carries nothing else), then one VMTEST_RESULT line per binary and,
# as its last line, "vm: N passed, N failed" (top-level tests).
# Exit: 0 only if every binary exited 0 and left no cgroup behind, no
# top-level test failed and at least one passed; 124 if the host timeout hit; 125 if the guest never
# reported (boot failure, crash, /init died); otherwise nonzero.
set -uo pipefail

vmdir=${CGSEM_VM_DIR:-/var/tmp/cgsem-vm}
initrd=$vmdir/initramfs.cpio
disks=() mode_append=''
if [ "${1:-}" = --systemd ]; then
	[ $# -ge 3 ] || { echo "run: --systemd needs ROOTIMG and TESTIMG" >&2; exit 2; }
	for f in "$2" "$3"; do
		[ -f "$f" ] || { echo "run: $f missing (run rootfs.sh and build.sh --systemd)" >&2; exit 2; }
		case $f in *,*) echo "run: a comma in $f would end qemu's -drive option" >&2; exit 2 ;; esac
		# cache=unsafe: snapshot=on puts the guest's writes in a throwaway
		# overlay, so flushing them to the host's disk buys nothing.
		disks+=(-drive "file=$f,format=raw,if=virtio,snapshot=on,cache=unsafe")
	done
	# vminit, not the kernel, mounts the root (the initramfs has /init);
	# root= and rw say the same for systemd and for a person reading the
	# command line. systemd's boot status goes to the console, which run.sh
	# shows on failure; the journal stays off it.
	mode_append="root=/dev/vda rw systemd.journald.forward_to_console=0"
	shift 3
fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then initrd=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = -- ] && shift
out=${CGSEM_VM_OUT:-$vmdir/out}
limit=${CGSEM_VM_TIMEOUT:-1200}
kernel=$vmdir/kernel/vmlinuz
for f in "$kernel" "$initrd"; do
	[ -f "$f" ] || { echo "run: $f missing (run setup.sh and build.sh)" >&2; exit 2; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run: no qemu-system-x86_64 (run setup.sh)" >&2; exit 2; }
mkdir -p "$out"
console=$out/console.log results=$out/results.txt
rm -f "$console" "$results" "$out/qemu.log"
: >"$results"
: >"$console"

# cgroup_no_v1=all: every controller is free for the unified hierarchy.
# systemd.unified_cgroup_hierarchy=1 is for the systemd root; harmless
# without one.
# loglevel=4 keeps info-level chatter (and its cost under TCG) off the console
# while errors such as the OOM killer's report still show; panic=-1 with
# -no-reboot ends qemu at once if /init dies. mitigations=off: this guest
# runs only our tests, and page-table isolation makes every syscall flush
# TCG's software TLB.
append="console=ttyS0 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 panic=-1 loglevel=4 mitigations=off $mode_append ${CGSEM_VM_APPEND:-}"

start=$(date +%s.%N)
# ttyS0 (console) and ttyS1 (protocol) both go to files; nothing uses stdio,
# so -nographic only turns the display off and stdin can be /dev/null.
timeout --kill-after=15 "$limit" \
	qemu-system-x86_64 -accel "${CGSEM_VM_ACCEL:-tcg}" -m "${CGSEM_VM_MEM:-2048}" -smp "${CGSEM_VM_SMP:-2}" \
	-nographic -monitor none -no-reboot -nic none \
	-kernel "$kernel" -initrd "$initrd" -append "$append" \
	-serial "file:$console" -serial "file:$results" ${disks[@]+"${disks[@]}"} "$@" \
	</dev/null >"$out/qemu.log" 2>&1 &
qpid=$!

# tail --pid reads the file once more after the process is gone, so the
# stream is complete when it returns.
tail -n +1 -F --pid="$qpid" "$results" 2>/dev/null &
tpid=$!
cpid=
if [ "${CGSEM_VM_CONSOLE:-}" = 1 ]; then
	tail -n +1 -F --pid="$qpid" "$console" 2>/dev/null | tr -d '\r' | sed -u 's/^/console| /' &
	cpid=$!
fi
wait "$qpid"
qrc=$?
wait "$tpid"
[ -n "$cpid" ] && wait "$cpid"
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

count() { grep -ac "^$1" "$results"; }
passed=$(count '--- PASS: ') failed=$(count '--- FAIL: ') skipped=$(count '--- SKIP: ')
code=$(sed -n 's/^VMTEST_EXIT=\([0-9][0-9]*\)$/\1/p' "$results" | tail -n 1)

console_tail() {
	echo "---- last lines of the guest console ($console) ----"
	tr -d '\r' <"$console" | tail -n "${1:-40}"
	if [ -s "$out/qemu.log" ]; then
		echo "---- qemu ----"
		tail -n 20 "$out/qemu.log"
	fi
	echo "----"
}

echo
echo "---- vm summary (qemu exit $qrc, ${wall}s wall, output in $out) ----"
grep -a '^VMTEST_RESULT ' "$results" || true
rc=0
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "vm: TIMEOUT: no end after ${limit}s (CGSEM_VM_TIMEOUT)"
	console_tail
	rc=124
elif [ -z "$code" ]; then
	echo "vm: the guest never reported VMTEST_EXIT (boot failure or crash)"
	console_tail 60
	rc=125
else
	if [ "$code" != 0 ]; then
		# A panic or a -test.timeout ends a binary without a --- FAIL line
		# of its own, and a leaked cgroup fails no test: name the culprits.
		awk '/^VMTEST_RESULT / && ($3 != "exit=0" || $7 != "leaked=0") { print "vm: " $2 ": " $3 " " $5 " " $7 }' "$results"
		rc=$code
	fi
	if [ "$failed" -gt 0 ] && [ "$rc" = 0 ]; then rc=1; fi
	if [ "$passed" = 0 ] && [ "$failed" = 0 ]; then
		echo "vm: no top-level test passed: the lane proved nothing"
		[ "$rc" = 0 ] && rc=1
	fi
	# With loglevel=4 only the kernel's errors and warnings reach the
	# console; beside a failure they may be the reason (a BUG, a lockup).
	klog=$(tr -d '\r' <"$console" | grep -a '^\[ *[0-9]*\.[0-9]*\]' | grep -v 'reboot: Power down' | tail -n 30)
	if [ "$rc" != 0 ] && [ -n "$klog" ]; then
		echo "---- kernel errors and warnings on the console ----"
		echo "$klog"
	fi
fi
[ "$skipped" -gt 0 ] && echo "vm: $skipped top-level tests skipped"
echo "vm: $passed passed, $failed failed"
exit "$rc"
