package v2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// AddProcess moves every thread of pid into the group by writing
// cgroup.procs. A group with children is refused (the leaf rule, see the
// package documentation); the root is left to the kernel.
func (g *group) AddProcess(ctx context.Context, pid int) error {
	return g.add(ctx, "add process", "cgroup.procs", pid)
}

// AddThread moves one thread by writing cgroup.threads; only a threaded
// driver (setting threaded=true) does, and only within its subtree.
func (g *group) AddThread(ctx context.Context, tid int) error {
	const op = "add thread"
	if !g.d.caps.Supports(semantic.Threads) {
		return g.notSupported(semantic.Threads)
	}
	return g.add(ctx, op, "cgroup.threads", tid)
}

func (g *group) add(ctx context.Context, op, file string, id int) error {
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if id <= 0 {
		// cgroup.procs takes 0 as "the writer", which would move the caller.
		return errorf(op, g.path, semantic.ErrInvalid, "%d is not a process or thread id", id)
	}
	if err := g.d.acquire(ctx, op, g.path); err != nil {
		return err
	}
	defer g.d.release()
	if err := g.checkLeaf(op); err != nil {
		return err
	}
	err := g.d.root.Write(join(g.rel, file), strconv.Itoa(id))
	if errors.Is(err, unix.EBUSY) && !isInjected(err) {
		// A group whose last child is gone keeps the controllers it
		// handed down, and the kernel takes no process while it does.
		if released, rerr := g.releaseControllers(); rerr != nil {
			return wrap(op, g.path, rerr)
		} else if released {
			err = g.d.root.Write(join(g.rel, file), strconv.Itoa(id))
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ESRCH):
		return errorf(op, g.path, semantic.ErrNotExist, "no process or thread %d", id)
	case errors.Is(err, unix.EOPNOTSUPP) && file == "cgroup.threads":
		return errorf(op, g.path, semantic.ErrInvalid,
			"thread %d belongs to a process outside this driver's threaded subtree; add its process to a group of the driver first", id)
	case errors.Is(err, unix.EBUSY):
		return errorf(op, g.path, semantic.ErrBusy,
			"the kernel refuses processes in %s: it has controllers enabled for children (cgroup v2's leaf rule): %w", g.path.Display(), err)
	}
	return wrap(op, g.path, err)
}

// checkLeaf refuses a process for a group with child groups: cgroup v2
// lets a group that hands controllers down hold no processes, and the
// driver keeps the rule whatever is enabled, so a program behaves alike
// on every host. The root is the caller's business (it may hold the
// caller itself), and a threaded subtree has no such rule.
func (g *group) checkLeaf(op string) error {
	if g.path.IsRoot() || g.d.threaded {
		return nil
	}
	n, err := g.descendants()
	if err != nil {
		return wrap(op, g.path, err)
	}
	if n > 0 {
		return errorf(op, g.path, semantic.ErrBusy,
			"the group has child groups, and cgroup v2 keeps processes only in groups without children (the leaf rule); put the process in a child")
	}
	return nil
}

// releaseControllers disables every controller the group hands down
// when it has no child group left: the controllers Create enabled for a
// child stay when that child is deleted, and cgroup v2 refuses processes
// in a group that hands down controllers, children or not. With no child
// the change affects nobody. It reports whether it wrote.
func (g *group) releaseControllers() (bool, error) {
	if g.path.IsRoot() || g.d.threaded {
		return false, nil
	}
	file := join(g.rel, subtreeControl)
	enabled, err := g.d.root.ReadString(file)
	if err != nil || enabled == "" {
		return false, err
	}
	n, err := g.descendants()
	if err != nil || n > 0 {
		return false, err
	}
	var off []string
	for _, c := range strings.Fields(enabled) {
		off = append(off, "-"+c)
	}
	if err := g.d.root.Write(file, strings.Join(off, " ")); err != nil {
		return false, err
	}
	return true, nil
}

// descendants counts the group's live descendant groups (cgroup.stat).
func (g *group) descendants() (uint64, error) {
	b, err := g.d.root.Read(join(g.rel, "cgroup.stat"))
	if err != nil {
		return 0, err
	}
	var n uint64
	found := false
	err = statfile.ScanFlat(b, func(key []byte, v uint64) {
		if string(key) == "nr_descendants" {
			n, found = v, true
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("cgroup.stat has no nr_descendants: %w", statfile.ErrFormat)
	}
	return n, err
}

// Processes lists the processes with a task in the group itself, sorted.
// In a threaded group, whose cgroup.procs cannot be read, they are the
// processes of the threads in cgroup.threads.
func (g *group) Processes(ctx context.Context) ([]int, error) {
	const op = "list processes"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.d.checkOpen(op, g.path); err != nil {
		return nil, err
	}
	file := "cgroup.procs"
	if g.d.threaded && !g.path.IsRoot() {
		file = "cgroup.threads"
	}
	b, err := g.d.root.Read(join(g.rel, file))
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	ids, err := parseIDs(b)
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	if file == "cgroup.threads" {
		ids = tgids(ids)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

func parseIDs(b []byte) ([]int, error) {
	out := []int{}
	for f := range strings.FieldsSeq(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: %w", f, statfile.ErrFormat)
		}
		// The kernel lists 0 for a task that has lost its pid but not yet
		// left the group, and for one outside this pid namespace: no
		// process this caller can name, and kill(0) would signal the
		// caller's own process group.
		if n != 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// tgids maps thread ids to their processes; a thread that exited meanwhile
// is left out.
func tgids(tids []int) []int {
	var out []int
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					out = append(out, n)
				}
				break
			}
		}
	}
	return out
}

// Start starts cmd with clone3(CLONE_INTO_CGROUP) (exec.Cmd's
// SysProcAttr.UseCgroupFD), so the child is in the group before it runs
// its first instruction; the caller's SysProcAttr is kept and restored.
// The leaf rule applies as for AddProcess.
func (g *group) Start(ctx context.Context, cmd *exec.Cmd) error {
	const op = "start"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.caps.Supports(semantic.StartInside) {
		return g.notSupported(semantic.StartInside)
	}
	if err := g.d.acquire(ctx, op, g.path); err != nil {
		return err
	}
	defer g.d.release()
	if err := g.checkLeaf(op); err != nil {
		return err
	}
	// clone3 cannot be retried with the same cmd (Start closes what it
	// was given), so the controllers are released before, not on EBUSY.
	if _, err := g.releaseControllers(); err != nil {
		return wrap(op, g.path, err)
	}
	dir, err := g.d.openDir(g.rel)
	if err != nil {
		return wrap(op, g.path, err)
	}
	defer dir.Close()
	orig := cmd.SysProcAttr
	attr := &syscall.SysProcAttr{}
	if orig != nil {
		*attr = *orig
	}
	attr.UseCgroupFD, attr.CgroupFD = true, dir.Fd()
	cmd.SysProcAttr = attr
	err = cmd.Start()
	cmd.SysProcAttr = orig
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		// clone3 refuses CLONE_INTO_CGROUP as exec would refuse the
		// program: say which of the two it may be.
		err = fmt.Errorf("%w (starting into %s needs write permission on its cgroup.procs and on that of the common ancestor with the caller's group)",
			err, g.d.Dir(g.path))
	}
	if err != nil {
		return wrap(op, g.path, err)
	}
	g.d.log.Trace("started", "group", g.path.Display(), "pid", cmd.Process.Pid, "path", cmd.Path)
	return nil
}
