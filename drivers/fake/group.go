package fake

import (
	"context"
	"os/exec"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// group is a handle on a path. Like a cgroupfs path it names whatever
// group is there at each call: after the group is deleted calls fail with
// ErrNotExist, and a group created again at the path is the one addressed.
type group struct {
	d    *Driver
	path semantic.Path
}

var _ semantic.Group = (*group)(nil)

func (g *group) Path() semantic.Path { return g.path }

// notRoot refuses operations the driver's root does not take: its
// settings belong to whoever owns the root, and freezing or killing it
// would hit the caller.
func (g *group) notRoot(op string) error {
	if g.path.IsRoot() {
		return errorf(op, g.path, semantic.ErrInvalid, "not allowed on the driver's root")
	}
	return nil
}

// Apply validates res, refuses unsupported fields, then writes field by
// field; if a write fails, the fields written are restored and the error
// names the failing field.
func (g *group) Apply(ctx context.Context, res *semantic.Resources) error {
	const op = "apply"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	req, err := g.d.prepare(g.path, res)
	if err != nil {
		return err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return err
	}
	return g.d.applyLocked(ctx, n, req)
}

// Resources reads back every supported field: what was applied,
// normalized, or the kernel's default for a field never set.
func (g *group) Resources(ctx context.Context) (*semantic.Resources, error) {
	const op = "read resources"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return nil, err
	}
	return g.d.project(n.res), nil
}

// Plan lists one "write" per field Apply(res) would write, in order, with
// the value in the form a cgroup v2 file takes.
func (g *group) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	const op = "plan"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	req, err := g.d.prepare(g.path, res)
	if err != nil {
		return nil, err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if _, err := g.d.nodeLocked(op, g.path); err != nil {
		return nil, err
	}
	plan := &semantic.Plan{Steps: []semantic.PlanStep{}}
	for _, f := range req.Fields() {
		plan.Steps = append(plan.Steps, semantic.PlanStep{
			Action: "write", Target: string(f), Value: render(req, f), Feature: f,
		})
	}
	return plan, nil
}

func (g *group) AddProcess(ctx context.Context, pid int) error {
	return g.add(ctx, "add process", pid, false, false)
}

// AddThread records one thread in the group; the rest of its process stays
// where it is, as on cgroup v1 (the fake does not check v2's threaded mode).
func (g *group) AddThread(ctx context.Context, tid int) error {
	const op = "add thread"
	if !g.d.supports(semantic.Threads) {
		return g.d.notSupported(semantic.Threads, g.path)
	}
	return g.add(ctx, op, tid, true, false)
}

func (g *group) add(ctx context.Context, op string, id int, thread, allowExited bool) error {
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.exists(op); err != nil {
		return err
	}
	f, tgid, err := openTask(op, g.path, id, thread, allowExited)
	if err != nil {
		return err
	}
	if !thread {
		id = tgid
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		f.Close()
		return err
	}
	g.d.track(n, id, tgid, thread, f)
	return nil
}

func (g *group) exists(op string) error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	_, err := g.d.nodeLocked(op, g.path)
	return err
}

// Start starts cmd and records it in the group. The fake cannot place a
// process before its first instruction: it records the pid right after
// cmd.Start returns. If recording fails the process is killed and reaped.
func (g *group) Start(ctx context.Context, cmd *exec.Cmd) error {
	const op = "start"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.supports(semantic.StartInside) {
		return g.d.notSupported(semantic.StartInside, g.path)
	}
	if err := g.exists(op); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return semantic.Wrap(Name, op, g.path.Display(), err)
	}
	// The child stays a zombie until the caller waits, so even one that
	// exited at once can be recorded and then leaves the group.
	if err := g.add(context.WithoutCancel(ctx), op, cmd.Process.Pid, false, true); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	return nil
}

// Processes lists the processes with a task in the group itself, sorted.
func (g *group) Processes(ctx context.Context) ([]int, error) {
	const op = "list processes"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return nil, err
	}
	g.d.prune(n, false)
	pids := []int{}
	for _, t := range n.tasks {
		pids = append(pids, t.tgid)
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// Stats counts the tasks of the group and its descendants, sums their
// resident memory and CPU time from /proc, and reports the OOM counters
// InjectOOM raised. Every other figure is absent.
func (g *group) Stats(ctx context.Context) (*semantic.Stats, error) {
	const op = "read stats"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	g.d.mu.Lock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		g.d.mu.Unlock()
		return nil, err
	}
	g.d.prune(n, true)
	tasks := n.subtreeTasks()
	oom, oomKill := n.oom, n.oomKill
	var limit *semantic.Count
	if g.d.supports(semantic.PidsMax) && !g.path.IsRoot() {
		limit = new(*n.res.Pids.Max)
	}
	g.d.mu.Unlock()

	// A process counts once however many of its threads are tracked.
	var rss, user, system uint64
	seen := map[int]bool{}
	for _, t := range tasks {
		if seen[t.tgid] {
			continue
		}
		seen[t.tgid] = true
		u, err := readUsage(t.tgid)
		// A task that exited meanwhile may have handed its pid on; its
		// figures would belong to a stranger.
		if err != nil || exited(t.f) {
			continue
		}
		rss += u.rss
		user += u.user
		system += u.system
	}
	tick := time.Second / userHZ
	return &semantic.Stats{
		Memory: &semantic.MemoryStats{Usage: &rss, OOM: &oom, OOMKill: &oomKill},
		CPU: &semantic.CPUStats{
			Usage:  new(time.Duration(user+system) * tick),
			User:   new(time.Duration(user) * tick),
			System: new(time.Duration(system) * tick),
		},
		Pids: &semantic.PidsStats{Current: new(uint64(len(tasks))), Limit: limit},
	}, nil
}

// Freeze marks the group frozen; the fake stops no process. It fires
// EventFrozen when the state changes.
func (g *group) Freeze(ctx context.Context) error { return g.setFrozen(ctx, "freeze", true) }

// Thaw marks the group thawed and fires EventThawed when the state changes.
func (g *group) Thaw(ctx context.Context) error { return g.setFrozen(ctx, "thaw", false) }

func (g *group) setFrozen(ctx context.Context, op string, frozen bool) error {
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.supports(semantic.Freeze) {
		return g.d.notSupported(semantic.Freeze, g.path)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return err
	}
	if n.frozen == frozen {
		return nil
	}
	n.frozen = frozen
	g.d.log.Trace(op, "group", g.path.Display())
	kind := semantic.EventThawed
	if frozen {
		kind = semantic.EventFrozen
	}
	g.d.emit(n, kind, 0)
	return nil
}

// Kill SIGKILLs every task of the group and its descendants, again for any
// that joins meanwhile, and waits until none is left or ctx ends. It
// leaves the group and every descendant thawed, firing EventThawed for
// each that was frozen, as a real driver does: v1 must thaw to kill, and
// v2 thaws so the next process started into the group runs.
func (g *group) Kill(ctx context.Context) error {
	const op = "kill"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.supports(semantic.Kill) {
		return g.d.notSupported(semantic.Kill, g.path)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	if err := g.kill(ctx, op); err != nil {
		return err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return err
	}
	for _, m := range slices.Backward(n.subtree()) {
		if m.frozen {
			m.frozen = false
			g.d.log.Trace("thaw", "group", m.path.Display())
			g.d.emit(m, semantic.EventThawed, 0)
		}
	}
	return nil
}

func (g *group) kill(ctx context.Context, op string) error {
	for {
		g.d.mu.Lock()
		n, err := g.d.nodeLocked(op, g.path)
		if err != nil {
			g.d.mu.Unlock()
			return err
		}
		g.d.prune(n, true)
		tasks := n.subtreeTasks()
		if len(tasks) == 0 {
			g.d.mu.Unlock()
			return nil
		}
		for _, t := range tasks {
			err := control(t.f, func(fd int) error { return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) })
			g.d.log.Trace("signal", "id", t.id, "signal", "SIGKILL", "error", err)
		}
		changed := g.d.changed
		g.d.mu.Unlock()
		select {
		case <-ctx.Done():
			return semantic.Wrap(Name, op, g.path.Display(), ctx.Err())
		case <-changed:
		}
	}
}

// Delete removes the group, children before parents, one backend change
// per group removed. It checks before changing anything: children without
// opts.Recursive or tasks without opts.Kill are ErrBusy. A failure part way
// through a recursive delete leaves the groups not yet removed.
func (g *group) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	const op = "delete"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	if opts == nil {
		opts = &semantic.DeleteOptions{}
	}
	if opts.Kill && !g.d.supports(semantic.Kill) {
		return g.d.notSupported(semantic.Kill, g.path)
	}
	for {
		g.d.mu.Lock()
		n, err := g.d.nodeLocked(op, g.path)
		if err != nil {
			g.d.mu.Unlock()
			return err
		}
		if len(n.children) > 0 && !opts.Recursive {
			g.d.mu.Unlock()
			return errorf(op, g.path, semantic.ErrBusy, "group has %d child groups; delete them or ask for a recursive delete", len(n.children))
		}
		g.d.prune(n, true)
		if n.populated > 0 {
			g.d.mu.Unlock()
			if !opts.Kill {
				return errorf(op, g.path, semantic.ErrBusy, "group holds processes; kill them first or ask for a delete that kills")
			}
			if err := g.kill(ctx, op); err != nil {
				return err
			}
			continue // tasks may have joined since; look again
		}
		err = g.d.removeLocked(n)
		g.d.mu.Unlock()
		return err
	}
}

// removeLocked removes n's subtree, children first. Called with d.mu held.
func (d *Driver) removeLocked(n *node) error {
	for _, m := range n.subtree() {
		if err := d.change("rmdir", m.path, "group", m.path.Display()); err != nil {
			return err
		}
		m.detach()
	}
	return nil
}

// Events delivers the group's events until ctx ends, then closes the
// channel. The channel buffers 256 events; when the reader falls that far
// behind, the oldest undelivered event is dropped so the driver never
// blocks. Kinds whose feature is unsupported are never delivered.
func (g *group) Events(ctx context.Context) (<-chan semantic.Event, error) {
	const op = "events"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc([]semantic.Feature{semantic.EventsOOM, semantic.EventsPopulated, semantic.EventsFrozen}, g.d.supports) {
		return nil, g.d.notSupported(semantic.EventsPopulated, g.path)
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	n, err := g.d.nodeLocked(op, g.path)
	if err != nil {
		return nil, err
	}
	s := &subscription{ch: make(chan semantic.Event, eventBuffer)}
	n.subs = append(n.subs, s)
	g.d.wg.Add(1)
	go func() {
		defer g.d.wg.Done()
		select {
		case <-ctx.Done():
		case <-g.d.done:
		}
		g.d.mu.Lock()
		defer g.d.mu.Unlock()
		n.subs = slices.DeleteFunc(n.subs, func(x *subscription) bool { return x == s })
		close(s.ch)
	}()
	return s.ch, nil
}
