//go:build linux

// Command vminit is /init (PID 1) of the throwaway cgroup-v2 VM in which
// cgsem's tests run with every controller enforcing.
//
// It mounts proc, sysfs, devtmpfs, cgroup2 at /sys/fs/cgroup (pure v2: the
// kernel runs with cgroup_no_v1=all), tmpfs on /tmp and /run, and bpffs;
// loads the modules the manifest names (brd for a RAM block device);
// enables the manifest's controllers in the root's cgroup.subtree_control;
// then runs each test binary of /test/manifest in turn, in the root cgroup,
// with CGSEM_VM=1 in its environment (the gate the in-VM tests check),
// and finally syncs and powers the VM off.
//
// Output, as the host's run.sh reads it:
//
//	ttyS0 (console): kernel messages, vminit's own log, and the tests'
//	    output, for a person; printk may interleave with it.
//	ttyS1 (raw): the protocol, for run.sh, never interleaved:
//	    VMTEST_INFO <key=value>...            once, after setup
//	    VMTEST_BEGIN <name>                   then the binary's output, verbatim
//	    VMTEST_RESULT <name> exit=<n> passed=<n> failed=<n> skipped=<n> leaked=<n> seconds=<s>
//	    VMTEST_EXIT=<n>                       last line: 0 when every binary exited 0
//	                                          and left no cgroup behind
//
// The layout of the initramfs is written by build.sh: /test/manifest (see
// parseManifest), the binaries under /test/bin, modules under /modules.
//
// The systemd lane uses vminit twice. As PID 1 of the initramfs it loads
// the virtio modules, mounts the root disk and the test disk (at /test of
// the new root), and hands PID 1 over to systemd (the manifest's
// switchroot). Once the VM is up, the root's cgsem-vmtest.service runs
// "/test/vminit runner /test/manifest": the same runs, the same protocol,
// with these differences (see runner):
//
//   - each binary runs in a leaf of the service's delegated cgroup
//     (test-NN), not in the root cgroup;
//   - CGSEM_VM_SYSTEMD=1 is set beside CGSEM_VM=1;
//   - leftovers are killed through that leaf (cgroup.kill), not with
//     kill(-1), which would hit systemd's own processes; units a binary
//     left failed count as leaks, like new cgroups anywhere in the tree;
//   - at the end it exits, and the unit's SuccessAction or FailureAction
//     powers the VM off.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const manifestPath = "/test/manifest"

// init1 is the state of the one run of PID 1, or of the runner.
type init1 struct {
	console io.Writer // ttyS0, via the kernel's /dev/console
	results *os.File  // ttyS1 in raw mode; nil if it could not be opened
	// cg is the runner's delegated cgroup; nil when this is PID 1.
	cg *delegation
}

func (in *init1) logf(format string, a ...any) {
	up := "?"
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		up, _, _ = strings.Cut(string(b), " ")
	}
	fmt.Fprintf(in.console, "[vminit %s] %s\n", up, fmt.Sprintf(format, a...))
}

// protocol writes one protocol line to ttyS1 and mirrors it to the console.
func (in *init1) protocol(format string, a ...any) {
	line := fmt.Sprintf(format, a...) + "\n"
	if in.results != nil {
		in.results.WriteString(line)
	}
	io.WriteString(in.console, line)
}

// finish reports the exit code and powers off; it never returns. With
// panic=-1 and qemu's -no-reboot, anything that kills PID 1 instead also
// ends the VM, and run.sh reports the missing VMTEST_EXIT as a crash.
// The runner exits instead, and systemd powers off.
func (in *init1) finish(code int) {
	in.protocol("VMTEST_EXIT=%d", code)
	drain(in.results)
	drain(os.Stdout)
	unix.Sync()
	if os.Getpid() != 1 {
		os.Exit(min(code, 255))
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}

func (in *init1) fatal(format string, a ...any) {
	in.logf("FATAL "+format, a...)
	in.protocol("VMTEST_INFO fatal=%q", fmt.Sprintf(format, a...))
	in.finish(125)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "runner" {
		path := manifestPath
		if len(os.Args) > 2 {
			path = os.Args[2]
		}
		runner(path)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vminit: this is the VM's /init and runs only as PID 1")
		os.Exit(2)
	}
	in := &init1{console: os.Stdout}
	defer func() {
		if r := recover(); r != nil {
			in.fatal("panic: %v", r)
		}
	}()
	mountErr := in.mountAll()
	ensureConsole()
	in.logf("vminit on %s", kernelRelease())
	results, err := openRawSerial("/dev/ttyS1")
	if err != nil {
		// Without the protocol port the host sees no VMTEST_EXIT and
		// reports a crash, which is what this is.
		in.logf("FATAL result port: %v", err)
		in.finish(125)
	}
	in.results = results
	if mountErr != nil {
		in.fatal("%v", mountErr)
	}
	f, err := os.Open(manifestPath)
	if err != nil {
		in.fatal("%v", err)
	}
	m, err := parseManifest(f)
	f.Close()
	if err != nil {
		in.fatal("%v", err)
	}
	in.loadModules(m.modules)
	if m.root != nil {
		err := in.switchRoot(m)
		in.fatal("switch root: %v", err)
	}
	enabled, err := in.enableControllers(cgroupRoot, m.controllers)
	if err != nil {
		in.fatal("%v", err)
	}
	blockdev := ""
	if _, err := os.Stat("/dev/ram0"); err == nil {
		blockdev = "/dev/ram0"
	}
	base := []string{
		"PATH=/test/bin:/bin:/sbin:/usr/bin:/usr/sbin",
		"HOME=/root",
		"GOTRACEBACK=all",
		"CGSEM_VM=1",
		"CGSEM_VM_BLOCKDEV=" + blockdev,
	}
	os.MkdirAll("/root", 0o700)
	cpus, mem := hostFacts()
	in.protocol("VMTEST_INFO kernel=%s cpus=%d mem_mib=%d subtree_control=%q blockdev=%q",
		kernelRelease(), cpus, mem, enabled, blockdev)

	code, leaks := 0, 0
	for i, r := range m.runs {
		c, l := in.runTest(i, r, base)
		if c != 0 && code == 0 {
			code = c
		}
		leaks += l
	}
	if code == 0 && leaks > 0 {
		code = 1
	}
	in.finish(code)
}

func hostFacts() (cpus int, memMiB uint64) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		cpus = set.Count()
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		memMiB = si.Totalram * uint64(si.Unit) >> 20
	}
	return cpus, memMiB
}
