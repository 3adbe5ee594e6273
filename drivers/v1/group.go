package v1

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/internal/reap"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

var (
	errExist error = unix.EEXIST
	errNoEnt error = unix.ENOENT
)

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// group is a handle on a path, as a cgroupfs path is: a group deleted and
// created again at the same path is the one it addresses.
type group struct {
	d *Driver
	p semantic.Path

	// stats is what Stats keeps between calls, made by the first.
	stats atomic.Pointer[statsHolder]
}

var _ semantic.Group = (*group)(nil)
var _ semantic.Driver = (*Driver)(nil)

func (d *Driver) newGroup(p semantic.Path) *group {
	// Stats registers a cleanup that closes the files it holds once the
	// group is collected; a group never asked for stats needs none.
	return &group{d: d, p: p}
}

// holder returns the group's statsHolder, making it on first use.
func (g *group) holder() *statsHolder {
	if s := g.stats.Load(); s != nil {
		return s
	}
	g.stats.CompareAndSwap(nil, &statsHolder{})
	return g.stats.Load()
}

// Path is the group's path below the root.
func (g *group) Path() semantic.Path { return g.p }

// enterManaged enters the driver for op on a group it manages: the root
// takes processes and reports stats and events only, and refuses the rest.
func (g *group) enterManaged(ctx context.Context, op string) (release func(), err error) {
	release, err = g.d.enter(ctx, op, g.p)
	if err != nil {
		return nil, err
	}
	if g.p.IsRoot() {
		release()
		return nil, errorf(op, g.p, semantic.ErrInvalid, "the root is not managed by the driver: it takes processes and reports stats and events only")
	}
	return release, nil
}

// Apply changes the fields set in res, all or nothing.
func (g *group) Apply(ctx context.Context, res *semantic.Resources) error {
	const op = "apply"
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	pr, err := g.d.prepare(g.p, res)
	if err != nil {
		return err
	}
	defer g.d.unlock(g.d.lock(g.p))
	steps, err := g.d.plan(pr, &current{d: g.d, p: g.p})
	if err != nil {
		return wrap(op, g.p, err)
	}
	return g.d.run(ctx, g.p, steps)
}

// Resources reads back every supported setting.
func (g *group) Resources(ctx context.Context) (*semantic.Resources, error) {
	const op = "read resources"
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := g.d.readResources(g.p)
	return res, wrap(op, g.p, err)
}

// Plan lists the writes Apply(res) would make now, in order.
func (g *group) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	const op = "plan"
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return nil, err
	}
	defer release()
	pr, err := g.d.prepare(g.p, res)
	if err != nil {
		return nil, err
	}
	steps, err := g.d.plan(pr, &current{d: g.d, p: g.p})
	if err != nil {
		return nil, wrap(op, g.p, err)
	}
	plan := &semantic.Plan{Steps: []semantic.PlanStep{}}
	for _, st := range steps {
		plan.Steps = append(plan.Steps, semantic.PlanStep{Action: "write", Target: st.file, Value: st.value, Feature: st.feature})
	}
	return plan, nil
}

// AddProcess moves every thread of pid into the group, in every
// hierarchy.
func (g *group) AddProcess(ctx context.Context, pid int) error {
	return g.add(ctx, "add process", "cgroup.procs", pid)
}

// AddThread moves one thread into the group, in every hierarchy.
func (g *group) AddThread(ctx context.Context, tid int) error {
	return g.add(ctx, "add thread", "tasks", tid)
}

// add writes id into name in every hierarchy. If a write fails after
// others succeeded, the task is moved back where it was in those
// hierarchies where that is below the root; elsewhere the error says it
// was left split.
func (g *group) add(ctx context.Context, op, name string, id int) error {
	release, err := g.d.enter(ctx, op, g.p)
	if err != nil {
		return err
	}
	defer release()
	if id <= 0 {
		return errorf(op, g.p, semantic.ErrInvalid, "%d is not a process or thread id", id)
	}
	before, err := readTaskCgroup(id)
	if err != nil {
		return wrap(op, g.p, fmt.Errorf("task %d: %w", id, notExist(err)))
	}
	v := strconv.Itoa(id)
	for i, h := range g.d.hs {
		err := h.root.Write(file(g.p, name), v)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.ESRCH) {
			err = fmt.Errorf("task %d: %w", id, err)
		}
		var split []string
		for _, done := range g.d.hs[:i] {
			back, ok := g.d.below(done, before)
			if !ok || done.undo.Write(file(back, name), v) != nil {
				split = append(split, done.key)
			}
		}
		if len(split) > 0 {
			err = fmt.Errorf("%w; the task stays in the group in %s, outside the root elsewhere", err, strings.Join(split, ", "))
		}
		return wrap(op, g.p, err)
	}
	return nil
}

// readTaskCgroup reads /proc/ID/cgroup with openat, read and close, where
// os.Open would add an fstat, an epoll registration and a read of the
// end: a process moved into a group pays it once per move.
func readTaskCgroup(id int) ([]mountinfo.CgroupEntry, error) {
	name := "/proc/" + strconv.Itoa(id) + "/cgroup"
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	var small [1024]byte
	buf := small[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		}
		// A seq_file fills a read as far as its content goes: a short
		// read is the end.
		full := n == cap(buf)-len(buf)
		buf = buf[:len(buf)+n]
		if n == 0 || !full {
			break
		}
	}
	return mountinfo.ParseCgroup(bytes.NewReader(buf))
}

// notExist turns a missing /proc entry into ESRCH's kind.
func notExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return unix.ESRCH
	}
	return err
}

// below maps a task's cgroup in h (from its /proc/<pid>/cgroup) to a
// path below the root, if it is there.
func (d *Driver) below(h *hier, entries []mountinfo.CgroupEntry) (semantic.Path, bool) {
	for _, e := range entries {
		if e.IsV2() || e.Key() != h.key {
			continue
		}
		rest, ok := strings.CutPrefix(e.Path, strings.TrimSuffix(h.cgroupRoot, "/"))
		if !ok || rest != "" && rest[0] != '/' {
			return semantic.Path{}, false
		}
		if rest = strings.Trim(rest, "/"); rest == "" {
			return semantic.Root, true
		}
		p, err := semantic.ParsePath(rest)
		return p, err == nil
	}
	return semantic.Path{}, false
}

// Processes lists the pids in the group itself, from the primary
// hierarchy.
func (g *group) Processes(ctx context.Context) ([]int, error) {
	const op = "list processes"
	release, err := g.d.enter(ctx, op, g.p)
	if err != nil {
		return nil, err
	}
	defer release()
	pids, err := g.d.procs(g.p)
	return pids, wrap(op, g.p, err)
}

func (d *Driver) procs(p semantic.Path) ([]int, error) {
	b, err := d.primary.root.Read(file(p, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	return parsePids(b)
}

func parsePids(b []byte) ([]int, error) {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup.procs %q: %w", f, statfile.ErrFormat)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// subtree lists p and its descendants in the primary hierarchy, parents
// before children.
func (d *Driver) subtree(p semantic.Path) ([]semantic.Path, error) {
	out := []semantic.Path{p}
	for i := 0; i < len(out); i++ {
		names, err := d.subdirs(out[i])
		if err != nil {
			if i > 0 && errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return nil, err
		}
		for _, n := range names {
			if semantic.ValidateSegment(n) == nil {
				out = append(out, out[i].Child(n))
			}
		}
	}
	return out, nil
}

const (
	frozen   = "FROZEN"
	thawed   = "THAWED"
	freezing = "FREEZING"
)

// Freeze stops every process in the group and waits until they are.
func (g *group) Freeze(ctx context.Context) error { return g.setFrozen(ctx, "freeze", true) }

// Thaw resumes the group and waits until it runs.
func (g *group) Thaw(ctx context.Context) error { return g.setFrozen(ctx, "thaw", false) }

func (g *group) setFrozen(ctx context.Context, op string, want bool) error {
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	if !g.d.caps.Supports(semantic.Freeze) {
		return withGroup(semantic.NotSupported(Name, semantic.Freeze, g.d.caps.Get(semantic.Freeze).Reason), g.p)
	}
	defer g.d.unlock(g.d.lock(g.p))
	if want {
		return wrap(op, g.p, g.d.freeze(ctx, g.p))
	}
	return wrap(op, g.p, g.d.thaw(ctx, g.p))
}

// freeze writes FROZEN and waits through FREEZING. If ctx ends first, a
// group that was thawed is thawed again.
func (d *Driver) freeze(ctx context.Context, p semantic.Path) error {
	h := d.byCtrl["freezer"]
	before, err := h.root.ReadString(file(p, "freezer.state"))
	if err != nil {
		return err
	}
	if before == frozen {
		return nil
	}
	if err := h.root.Write(file(p, "freezer.state"), frozen); err != nil {
		return err
	}
	err = d.waitFor(ctx, func() (bool, error) {
		st, err := h.root.ReadString(file(p, "freezer.state"))
		return st == frozen, err
	})
	if err != nil && before == thawed {
		if uerr := h.undo.Write(file(p, "freezer.state"), thawed); uerr != nil {
			err = fmt.Errorf("%w; thawing the half-frozen group failed too: %w", err, uerr)
		}
	}
	return err
}

// thaw writes THAWED and waits until the group reads THAWED. A group
// whose ancestor is frozen stays frozen: that is ErrBusy.
func (d *Driver) thaw(ctx context.Context, p semantic.Path) error {
	h := d.byCtrl["freezer"]
	if err := h.root.Write(file(p, "freezer.state"), thawed); err != nil {
		return err
	}
	return d.waitFor(ctx, func() (bool, error) {
		st, err := h.root.ReadString(file(p, "freezer.state"))
		if err != nil || st == thawed {
			return err == nil, err
		}
		return false, d.frozenAncestor(p, "it stays frozen until that one is thawed")
	})
}

// frozenAncestor is nil unless a group above p freezes it
// (freezer.parent_freezing 1); then it is ErrBusy, naming the nearest
// ancestor frozen on its own and saying why that matters. A frozen
// ancestor is not p's to thaw.
func (d *Driver) frozenAncestor(p semantic.Path, why string) error {
	h := d.byCtrl["freezer"]
	pf, err := h.root.ReadString(file(p, "freezer.parent_freezing"))
	if err != nil || pf != "1" {
		return err
	}
	for i := p.Len() - 1; i >= 0; i-- {
		q := p.Prefix(i)
		if self, err := h.root.ReadString(file(q, "freezer.self_freezing")); err == nil && self == "1" {
			return fmt.Errorf("ancestor %s is frozen: %s: %w", q.Display(), why, semantic.ErrBusy)
		}
	}
	return fmt.Errorf("a group above the driver's root is frozen: %s: %w", why, semantic.ErrBusy)
}

// waitFor polls cond with backoff until it holds, fails, ctx ends or the
// driver closes.
func (d *Driver) waitFor(ctx context.Context, cond func() (bool, error)) error {
	wait := 200 * time.Microsecond
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-d.done:
			t.Stop()
			return fmt.Errorf("the driver was closed: %w", semantic.ErrInvalid)
		case <-t.C:
		}
		wait = min(wait*2, 20*time.Millisecond)
	}
}

// Kill SIGKILLs every process in the group and below and waits until the
// group is empty. Below a frozen ancestor it is ErrBusy (see kill).
func (g *group) Kill(ctx context.Context) error {
	const op = "kill"
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	defer g.d.unlock(g.d.lock(g.p))
	return wrap(op, g.p, g.d.kill(ctx, g.p))
}

// killBelowFrozen is why kill refuses a subtree below a frozen ancestor.
const killBelowFrozen = "its tasks cannot exit until it is thawed"

// kill freezes the group so nothing forks away, SIGKILLs every task
// listed in it and below, thaws it (and every descendant frozen on its
// own, whose tasks could not die otherwise), then waits until the whole
// subtree is empty, killing any task that joined meanwhile.
//
// A v1 task frozen by an ancestor does not die of SIGKILL until that
// ancestor thaws, and the ancestor is not the group's to thaw: with tasks
// in the subtree, kill is then ErrBusy naming the ancestor, before it
// signals or freezes anything (an empty subtree is already what kill
// makes). An ancestor frozen while kill waits ends the wait with ErrBusy
// too: the tasks are signalled and exit once it thaws.
func (d *Driver) kill(ctx context.Context, p semantic.Path) error {
	tree, err := d.subtree(p)
	if err != nil {
		return err
	}
	fz := d.byCtrl["freezer"]
	// list lists the tasks of the subtree, SIGKILLing each when signal is
	// set, and reports whether there was any.
	list := func(signal bool) (bool, error) {
		any := false
		for _, q := range tree {
			if signal {
				// Through pidfds, so a pid reused meanwhile by a process
				// outside the group is never hit (internal/reap).
				listed, err := reap.KillListed(func() ([]int, error) { return d.procs(q) })
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				if err != nil {
					return false, err
				}
				any = any || listed
				continue
			}
			pids, err := d.procs(q)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return false, err
			}
			if len(pids) > 0 {
				return true, nil
			}
		}
		return any, nil
	}
	if fz != nil {
		if busy := d.frozenAncestor(p, killBelowFrozen); busy != nil {
			if any, err := list(false); err != nil || any {
				return cmp.Or(err, busy)
			}
		}
		if err := d.freeze(ctx, p); err != nil {
			return err
		}
	}
	if _, err := list(true); err != nil {
		if fz != nil {
			// Kill leaves the group thawed, failed or not; what it
			// signalled dies once thawed.
			if terr := fz.undo.Write(file(p, "freezer.state"), thawed); terr != nil {
				d.log.Warn("thaw after a failed kill", "group", p.Display(), "error", terr)
			}
		}
		return err
	}
	if fz != nil {
		if err := fz.root.Write(file(p, "freezer.state"), thawed); err != nil {
			return err
		}
		for _, q := range tree[1:] {
			if self, err := fz.root.ReadString(file(q, "freezer.self_freezing")); err == nil && self == "1" {
				if err := fz.root.Write(file(q, "freezer.state"), thawed); err != nil && !errors.Is(err, unix.ENOENT) {
					return err
				}
			}
		}
	}
	return d.waitFor(ctx, func() (bool, error) {
		any, err := list(true)
		if err != nil || !any || fz == nil {
			return !any, err
		}
		return false, d.frozenAncestor(p, killBelowFrozen)
	})
}

// Delete removes the group; see semantic.Group.
func (g *group) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	const op = "delete"
	release, err := g.enterManaged(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	if opts == nil {
		opts = &semantic.DeleteOptions{}
	}
	defer g.d.unlock(g.d.lock(g.p))
	if s := g.stats.Load(); s != nil {
		defer g.d.release(s)
	}
	d := g.d
	if !opts.Recursive && !opts.Kill {
		// The common case costs one rmdir per hierarchy: the primary's
		// refusal is inspected only when it comes.
		err := d.primary.root.TryRmdir(rel(g.p))
		switch {
		case err == nil:
			return wrap(op, g.p, d.rmdirOthers(ctx, g.p))
		case errors.Is(err, unix.ENOENT):
			return errorf(op, g.p, semantic.ErrNotExist, "no such group")
		case !errors.Is(err, unix.EBUSY) || cgroupfs.IsInjected(err):
			return wrap(op, g.p, err)
		}
	}
	tree, err := d.subtree(g.p)
	if err != nil {
		return wrap(op, g.p, err)
	}
	if len(tree) > 1 && !opts.Recursive {
		return errorf(op, g.p, semantic.ErrBusy, "the group has child groups; delete them or ask for a recursive delete")
	}
	if opts.Kill {
		if err := d.kill(ctx, g.p); err != nil {
			return wrap(op, g.p, err)
		}
	} else {
		for _, q := range tree {
			pids, err := d.procs(q)
			if err != nil {
				return wrap(op, g.p, err)
			}
			if len(pids) > 0 {
				return errorf(op, g.p, semantic.ErrBusy, "%s holds processes %v; kill them first or ask Delete to", q.Display(), pids)
			}
		}
	}
	for _, q := range slices.Backward(tree) {
		if err := d.primary.root.Rmdir(ctx, rel(q)); err != nil && !errors.Is(err, unix.ENOENT) {
			return wrap(op, g.p, err)
		}
		if err := d.rmdirOthers(ctx, q); err != nil {
			return wrap(op, g.p, err)
		}
	}
	return nil
}

// rmdirOthers removes p from every hierarchy but the primary.
func (d *Driver) rmdirOthers(ctx context.Context, p semantic.Path) error {
	var errs []error
	for _, h := range d.hs {
		if h == d.primary {
			continue
		}
		if err := h.root.Rmdir(ctx, rel(p)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
