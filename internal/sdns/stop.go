package sdns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sigPoweroff is SIGRTMIN+4 as systemd counts (glibc's SIGRTMIN is 34).
const sigPoweroff = unix.Signal(38)

// Stop powers the container off (SIGRTMIN+4 to systemd) and waits for it
// within Options.StopGrace and ctx, kills whatever is left, removes every
// group it created and its state directory, and reports what it could not
// remove. The mounts all lived in the container's mount namespace and
// went away with it. Removal is bounded on its own and runs even when ctx
// has ended. Calling Stop again returns the first result.
func (in *Instance) Stop(ctx context.Context) error {
	in.stopOnce.Do(func() { in.stopErr = in.stop(ctx) })
	return in.stopErr
}

func (in *Instance) stop(ctx context.Context) error {
	t := time.Now()
	var errs []error
	select {
	case <-in.exited:
	default:
		if err := in.initProc.Signal(sigPoweroff); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("sdns: poweroff: %w", err))
		}
		grace := time.NewTimer(in.opts.StopGrace)
		select {
		case <-in.exited:
			in.log.Info("powered off", "after", time.Since(t))
		case <-grace.C:
			in.log.Warn("poweroff timed out, killing", "after", time.Since(t))
		case <-ctx.Done():
			in.log.Warn("stop cancelled, killing", "after", time.Since(t))
		}
		grace.Stop()
	}
	// The end of a pid namespace's init takes every process in it down;
	// the kernel has reaped them all by the time init itself is reaped.
	_ = in.initProc.Kill()
	<-in.exited

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	in.mu.Lock()
	procs := make([]*Process, 0, len(in.procs))
	for p := range in.procs {
		procs = append(procs, p)
	}
	in.mu.Unlock()
	for _, p := range procs {
		// nsenter ends as soon as its child, killed with the namespace,
		// has been reaped.
		select {
		case <-p.done:
		case <-cctx.Done():
			_ = p.Kill()
			<-p.done
		}
	}
	in.unpin()
	in.console.close()
	if err := in.removeGroups(cctx); err != nil {
		errs = append(errs, fmt.Errorf("sdns: %w", err))
	}
	if err := os.RemoveAll(in.state); err != nil {
		errs = append(errs, fmt.Errorf("sdns: remove state: %w", err))
	}
	if leaks := in.Leaks(); len(leaks) > 0 {
		errs = append(errs, fmt.Errorf("sdns: left behind: %s", strings.Join(leaks, ", ")))
	}
	in.log.Info("stopped", "after", time.Since(t), "errors", len(errs))
	return errors.Join(errs...)
}

// Leaks lists the container's groups and state directory that still exist.
func (in *Instance) Leaks() []string {
	var out []string
	for _, d := range append(in.groupDirs(), in.state) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			out = append(out, d)
		}
	}
	return out
}

// removeGroups removes the container's groups, deepest first, in every
// hierarchy. A process still inside (none is expected once the pid
// namespace is gone) is killed: everything below the container's groups
// descends from what this package started.
func (in *Instance) removeGroups(ctx context.Context) error {
	delay := 5 * time.Millisecond
	killed := map[int]bool{}
	for {
		var busy []string
		pids := map[int]bool{}
		for _, g := range in.groupDirs() {
			dirs, err := subtree(g)
			if err != nil {
				busy = append(busy, err.Error())
				continue
			}
			for _, d := range dirs {
				for _, pid := range readPIDs(filepath.Join(d, "cgroup.procs")) {
					pids[pid] = true
				}
				in.log.Trace("rmdir", "path", d)
				if err := unix.Rmdir(d); err != nil && err != unix.ENOENT {
					busy = append(busy, fmt.Sprintf("%s: %v", d, err))
				}
			}
		}
		if len(busy) == 0 {
			return nil
		}
		for pid := range pids {
			if !killed[pid] {
				in.log.Warn("killing leftover process", "pid", pid)
				in.killInGroups(pid)
				killed[pid] = true
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove groups: %w: %s", ctx.Err(), strings.Join(busy, "; "))
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// killInGroups kills pid if it is still in the container's groups: the
// pidfd pins the process, and the check after opening it rules out a pid
// reused by a process elsewhere.
func (in *Instance) killInGroups(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil || !strings.Contains(string(b), "/"+in.name) {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// subtree lists the directories of a cgroup tree, deepest first; none when
// it is gone.
func subtree(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs, err
}

func readPIDs(p string) []int {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil {
			out = append(out, n)
		}
	}
	return out
}
