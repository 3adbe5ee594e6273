//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Past its own -test.timeout a test binary panics and exits by itself;
// this much more is allowed before /init kills it, so a wedged binary
// still ends with a result line and the next binary still runs.
const killGrace = 60 * time.Second

// After the binary exited, output still buffered in the pipe is read for
// this long; a straggler that escaped the kill may hold the pipe open.
const drainGrace = 5 * time.Second

// settleGrace is how long systemd gets to remove what a binary stopped
// just before it exited.
const settleGrace = 5 * time.Second

// fanout copies test output to every sink, ignoring a sink's error so a
// broken console cannot starve the protocol port, and counts results.
type fanout struct {
	mu    sync.Mutex
	sinks []io.Writer
	tally tally
}

func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.sinks {
		w.Write(p)
	}
	f.tally.Write(p)
	return len(p), nil
}

// finish ends the stream at a line boundary, so the protocol line that
// follows starts in the first column, and returns the counts.
func (f *fanout) finish() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tally.flush()
	if !f.tally.endsLine() {
		for _, w := range f.sinks {
			w.Write([]byte("\n"))
		}
	}
	return f.tally.String()
}

// note writes a line of /init's own into the test stream, at the start of
// a line.
func (f *fanout) note(format string, a ...any) {
	f.mu.Lock()
	nl := ""
	if !f.tally.endsLine() {
		nl = "\n"
	}
	f.mu.Unlock()
	fmt.Fprintf(f, "%svminit: %s\n", nl, fmt.Sprintf(format, a...))
}

// runTest runs one test binary in its own process group, streams its
// output to the console and the protocol port, reports its result line and
// returns its exit code and the number of cgroups it left behind.
func (in *init1) runTest(i int, r testRun, base []string) (code, leaked int) {
	name := filepath.Base(r.path)
	in.protocol("VMTEST_BEGIN %s", name)
	out := &fanout{sinks: []io.Writer{in.console}}
	if in.results != nil {
		out.sinks = append(out.sinks, in.results)
	}
	start := time.Now()
	code, leaked = in.execute(i, r, base, out)
	counts := out.finish()
	in.protocol("VMTEST_RESULT %s exit=%d %s leaked=%d seconds=%.1f", name, code, counts, leaked, time.Since(start).Seconds())
	return code, leaked
}

func (in *init1) execute(i int, r testRun, base []string, out *fanout) (code, leaked int) {
	// A private TMPDIR per binary keeps one binary's leftovers from
	// meeting the next.
	tmp := fmt.Sprintf("/tmp/vmtest-%d", i)
	if err := os.MkdirAll(tmp, 0o1777); err != nil {
		out.note("mkdir %s: %v", tmp, err)
		return 126, 0
	}
	env := append(slices.Clone(base), "TMPDIR="+tmp)
	env = append(env, r.env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		out.note("pipe: %v", err)
		return 126, 0
	}
	defer pr.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		pw.Close()
		out.note("open %s: %v", os.DevNull, err)
		return 126, 0
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	var leaf string
	if in.cg != nil {
		// Under systemd the binary starts in a fresh leaf of the runner's
		// delegated cgroup (clone3 with CLONE_INTO_CGROUP), so whatever
		// it leaves running can be found and killed there.
		var fd int
		leaf, fd, err = in.cg.leaf(i)
		if err != nil {
			pw.Close()
			devnull.Close()
			out.note("%v", err)
			return 126, 0
		}
		defer unix.Close(fd)
		defer in.cg.remove(leaf)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
	}
	before := in.snapshot()
	dir := tmp
	if r.dir != "" {
		dir = r.dir
	}
	p, err := os.StartProcess(r.path, append([]string{r.path}, r.args...), &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{devnull, pw, pw},
		Sys:   sys,
	})
	pw.Close()
	devnull.Close()
	if err != nil {
		out.note("start %s: %v", r.path, err)
		return 126, 0
	}
	pid := p.Pid
	// /init reaps with wait4(-1) below, because as PID 1 it also inherits
	// every orphan; os.Process must not wait as well.
	p.Release()

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				out.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()

	if d, ok := r.testTimeout(); ok {
		t := time.AfterFunc(d+killGrace, func() {
			out.note("%s still running %s after its -test.timeout=%s: killing it", filepath.Base(r.path), killGrace, d)
			unix.Kill(-pid, unix.SIGKILL)
		})
		defer t.Stop()
	}
	ws, err := in.waitFor(pid)
	// Tests must remove what they create; a group left behind fails the
	// lane even when the binary's own leak check missed it.
	var left []string
	if in.cg == nil {
		// Every binary starts in a VM with no process but PID 1: whatever
		// this one left running, in any session or cgroup, goes now.
		// kill(-1) signals every process but the caller.
		unix.Kill(-1, unix.SIGKILL)
	} else {
		// Looked for before the kill: a scope holding a leftover process
		// would go with it (systemd collects an emptied scope) and so
		// hide the leak.
		left = in.leftovers(before)
		// systemd and its services are not the binary's to kill: only
		// its process group and its leaf go. A unit it left running is
		// stopped below.
		unix.Kill(-pid, unix.SIGKILL)
		if kerr := in.cg.kill(leaf, drainGrace); kerr != nil {
			out.note("%v", kerr)
		}
	}
	if n := in.reapAll(drainGrace); n > 0 {
		out.note("%s left %d process(es) running; killed them", filepath.Base(r.path), n)
	}
	pr.SetReadDeadline(time.Now().Add(drainGrace))
	<-copied
	if in.cg == nil {
		left = in.leftovers(before)
	}
	if len(left) > 0 {
		out.note("%s left behind: %s", filepath.Base(r.path), strings.Join(left, " "))
		if in.cg != nil {
			// The next binary must start on a clean system.
			in.cg.clean(left)
			in.reapAll(drainGrace)
		}
	}
	switch {
	case err != nil:
		out.note("wait %s: %v", r.path, err)
		return 126, len(left)
	case ws.Signaled():
		out.note("%s ended by signal %d (%v)", filepath.Base(r.path), int(ws.Signal()), ws.Signal())
		return 128 + int(ws.Signal()), len(left)
	default:
		return ws.ExitStatus(), len(left)
	}
}

// waitFor reaps children until pid exits, reaping orphans on the way.
func (in *init1) waitFor(pid int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return ws, err
		case got == pid && (ws.Exited() || ws.Signaled()):
			return ws, nil
		}
	}
}

// reapAll reaps children until none is left or the time is up, and
// returns how many it reaped.
func (in *init1) reapAll(limit time.Duration) int {
	n := 0
	deadline := time.Now().Add(limit)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil: // ECHILD: nothing left
			return n
		case got > 0:
			n++
		case time.Now().After(deadline):
			in.logf("children still alive %s after SIGKILL", limit)
			return n
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// state is what a binary could leave behind, taken before it starts.
type state struct {
	cgroups map[string]bool
	failed  map[string]bool // systemd units in the failed state (runner only)
}

func (in *init1) snapshot() state {
	s := state{cgroups: cgroupsNow()}
	if in.cg != nil {
		s.failed = failedUnits()
	}
	return s
}

// leftovers names what exists now and did not before the binary: cgroups
// (as paths below the root), and under systemd also failed units
// ("unit:NAME"). systemd removes a stopped unit's cgroup and collects an
// inactive unit asynchronously, so there a leftover gets a few seconds to
// go before it counts.
func (in *init1) leftovers(before state) []string {
	deadline := time.Now().Add(settleGrace)
	for {
		left := newCgroups(before.cgroups)
		// Without a list from before (systemctl failed then), every
		// failed unit would look new.
		if in.cg != nil && before.failed != nil {
			for u := range failedUnits() {
				if !before.failed[u] {
					left = append(left, "unit:"+u)
				}
			}
			slices.Sort(left)
		}
		if len(left) == 0 || in.cg == nil || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupsNow lists the groups below the root, as paths relative to it.
func cgroupsNow() map[string]bool {
	found := map[string]bool{}
	filepath.WalkDir(cgroupRoot, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != cgroupRoot {
			found[strings.TrimPrefix(p, cgroupRoot+"/")] = true
		}
		return nil
	})
	return found
}

// newCgroups lists the groups that exist now and did not before, sorted;
// a binary's tests should remove what they make.
func newCgroups(before map[string]bool) []string {
	var left []string
	for p := range cgroupsNow() {
		if !before[p] {
			left = append(left, p)
		}
	}
	slices.Sort(left)
	return left
}
