//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// systemctlTimeout bounds one systemctl call of the runner; systemd
// answers in milliseconds unless it is wedged, and then the lane must
// still end with a verdict.
const systemctlTimeout = 60 * time.Second

// runner runs the test binaries of a manifest under systemd, from the
// root's cgsem-vmtest.service (Type=oneshot, Delegate=yes), and writes
// the same protocol as PID 1 does. It never returns: it exits, and the
// unit's SuccessAction or FailureAction powers the VM off.
func runner(path string) {
	in := &init1{console: os.Stdout}
	results, err := openRawSerial("/dev/ttyS1")
	if err != nil {
		// Without the protocol port the host sees no VMTEST_EXIT and
		// reports a crash, which is what this is.
		in.logf("FATAL result port: %v", err)
		os.Exit(125)
	}
	in.results = results
	defer func() {
		if r := recover(); r != nil {
			in.fatal("panic: %v", r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		in.fatal("%v", err)
	}
	m, err := parseManifest(f)
	f.Close()
	switch {
	case err != nil:
		in.fatal("%v", err)
	case m.root != nil || len(m.modules) > 0:
		in.fatal("%s: switchroot, mount and module belong to the initramfs's manifest", path)
	}
	// Orphans of a test binary come to the runner, which reaps them with
	// the same wait4(-1) loop as PID 1, instead of to systemd.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		in.fatal("become a subreaper: %v", err)
	}
	cg, err := delegate()
	if err != nil {
		in.fatal("%v", err)
	}
	enabled, err := in.enableControllers(cg.dir, m.controllers)
	if err != nil {
		in.fatal("%v", err)
	}
	in.cg = cg

	blockdev := ""
	if _, err := os.Stat("/dev/ram0"); err == nil {
		blockdev = "/dev/ram0"
	}
	base := []string{
		"PATH=/test/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"GOTRACEBACK=all",
		"CGSEM_VM=1",
		"CGSEM_VM_SYSTEMD=1",
		"CGSEM_VM_BLOCKDEV=" + blockdev,
	}
	// The tests are for a booted system: the runner's unit is ordered
	// after multi-user.target, so this normally returns at once, with
	// "running", or "degraded" if a unit failed (named below).
	state := systemState()
	cpus, mem := hostFacts()
	failed := slices.Sorted(maps.Keys(failedUnits()))
	in.protocol("VMTEST_INFO kernel=%s cpus=%d mem_mib=%d init=%q state=%s boot=%q uptime=%s cgroup=%s subtree_control=%q blockdev=%q failed_units=%q",
		kernelRelease(), cpus, mem, systemdVersion(), state, bootTime(), uptime(), strings.TrimPrefix(cg.dir, cgroupRoot), enabled, blockdev, strings.Join(failed, " "))

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

// delegation is the runner's cgroup, delegated to it by systemd: the
// runner moves itself into a leaf ("runner"), so that the controllers can
// be enabled for the leaves it makes beside it, one per test binary.
type delegation struct {
	dir string
}

func delegate() (*delegation, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok || strings.Contains(own, "\n") {
		return nil, fmt.Errorf("/proc/self/cgroup is not a single cgroup2 entry: %q", b)
	}
	d := &delegation{dir: filepath.Join(cgroupRoot, own)}
	self := filepath.Join(d.dir, "runner")
	if err := os.Mkdir(self, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w (is the unit's Delegate=yes?)", err)
	}
	if err := os.WriteFile(filepath.Join(self, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return nil, fmt.Errorf("move the runner into %s: %w", self, err)
	}
	return d, nil
}

// leaf makes the cgroup for the binary of run i and opens it for
// CLONE_INTO_CGROUP.
func (d *delegation) leaf(i int) (dir string, fd int, err error) {
	dir = filepath.Join(d.dir, fmt.Sprintf("test-%02d", i+1))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", -1, fmt.Errorf("cgroup for the test binary: %w", err)
	}
	fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Rmdir(dir)
		return "", -1, fmt.Errorf("open %s: %w", dir, err)
	}
	return dir, fd, nil
}

// kill ends every process in dir and its descendants (cgroup.kill) and
// waits until the kernel reports the group unpopulated.
func (d *delegation) kill(dir string, limit time.Duration) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("kill %s: %w", dir, err)
	}
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("populated 0")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still populated %s after cgroup.kill", dir, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// remove deletes dir and every group below it, deepest first; the
// processes are gone by then (kill), but the kernel may keep a group busy
// for a moment after its last task was reaped.
func (d *delegation) remove(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, p := range slices.Backward(dirs) {
		deadline := time.Now().Add(drainGrace)
		for {
			err := unix.Rmdir(p)
			if err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// clean stops the units behind leftover cgroups and resets the failed
// ones, so the next binary starts where this one did. Groups inside the
// runner's own subtree go with the binary's leaf (remove).
func (d *delegation) clean(left []string) {
	var stop, reset []string
	own := strings.TrimPrefix(d.dir, cgroupRoot+"/")
	for _, l := range left {
		if u, ok := strings.CutPrefix(l, "unit:"); ok {
			reset = append(reset, u)
			continue
		}
		if strings.HasPrefix(l, own+"/") {
			continue
		}
		if u := filepath.Base(l); isUnitName(u) {
			stop = append(stop, u)
			reset = append(reset, u)
		}
	}
	if len(stop) > 0 {
		systemctl(append([]string{"stop", "--"}, stop...)...)
	}
	if len(reset) > 0 {
		systemctl(append([]string{"reset-failed", "--"}, reset...)...)
	}
}

// isUnitName tells a unit's cgroup (system.slice, foo.scope) from one a
// program made on its own below a delegated unit.
func isUnitName(name string) bool {
	for _, suffix := range []string{".slice", ".scope", ".service", ".socket", ".mount", ".swap"} {
		if strings.HasSuffix(name, suffix) && len(name) > len(suffix) {
			return true
		}
	}
	return false
}

// failedUnits lists the units systemd holds in the failed state; nil if
// systemctl cannot say, which then hides no leak it could have shown.
func failedUnits() map[string]bool {
	out, err := systemctl("list-units", "--all", "--state=failed", "--plain", "--no-legend", "--no-pager")
	if err != nil {
		return nil
	}
	units := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			units[f[0]] = true
		}
	}
	return units
}

func systemdVersion() string {
	out, err := systemctl("--version")
	if err != nil {
		return "systemd (version unknown: " + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// systemState waits for the end of the boot and returns systemd's view
// of the system then.
func systemState() string {
	out, _ := systemctl("is-system-running", "--wait")
	if s := strings.TrimSpace(string(out)); s != "" {
		return s
	}
	return "unknown"
}

// bootTime is systemd-analyze's account of the boot ("2.1s (kernel) +
// 11.0s (userspace) = 13.1s"), under TCG.
func bootTime() string {
	ctx, cancel := context.WithTimeout(context.Background(), systemctlTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", "time").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "Startup finished in "))
}

func systemctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), systemctlTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	if err != nil {
		return out, fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	s, _, _ := strings.Cut(string(b), " ")
	return s + "s"
}
