package v2

import (
	"context"
	"errors"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/reap"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// watcher waits for the kernel to modify a group's event files
// (cgroup.events, memory.events): they are kernfs files that notify
// inotify on every change of a key. The descriptor sits in the runtime's
// poller, so a wait costs no thread and ends when its ctx does.
type watcher struct {
	f   *os.File
	buf []byte
}

// newWatcher watches files (absolute paths); one that does not exist is
// an error wrapping ENOENT.
func newWatcher(files ...string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	for _, f := range files {
		if _, err := unix.InotifyAddWatch(fd, f, unix.IN_MODIFY); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "inotify_add_watch", Path: f, Err: err}
		}
	}
	return &watcher{f: os.NewFile(uintptr(fd), "inotify"), buf: make([]byte, 4096)}, nil
}

// add watches one more file.
func (w *watcher) add(file string) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		_, werr = unix.InotifyAddWatch(int(fd), file, unix.IN_MODIFY)
	}); err != nil {
		return err
	}
	if werr != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: file, Err: werr}
	}
	return nil
}

// wait returns once a watched file changed (the change is consumed), or
// at deadline (zero: none) with os.ErrDeadlineExceeded, or when ctx ends
// with ctx's error.
func (w *watcher) wait(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Unix(1, 0)) })
	_, err := w.f.Read(w.buf)
	if !stop() && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (w *watcher) close() error { return w.f.Close() }

// eventsFile is the group's cgroup.events as an absolute path, for inotify.
func (g *group) eventsFile(name string) string { return path.Join(g.d.loc.dir, g.rel, name) }

// cgroupEvents reads cgroup.events: populated (processes in the group or
// below) and frozen.
func (g *group) cgroupEvents() (populated, frozen bool, err error) {
	b, err := g.d.root.Read(join(g.rel, "cgroup.events"))
	if err != nil {
		return false, false, err
	}
	err = statfile.ScanFlat(b, func(key []byte, v uint64) {
		switch string(key) {
		case "populated":
			populated = v == 1
		case "frozen":
			frozen = v == 1
		}
	})
	return populated, frozen, err
}

// Freeze writes 1 to cgroup.freeze and waits until cgroup.events says
// "frozen 1". If ctx ends first, the group is thawed again when this call
// froze it, and ctx's error returned.
func (g *group) Freeze(ctx context.Context) error { return g.setFrozen(ctx, "freeze", true) }

// Thaw writes 0 to cgroup.freeze and waits until cgroup.events says
// "frozen 0". A group whose ancestor (below the root) is frozen stays
// frozen with it: Thaw then returns once its own freeze is lifted.
func (g *group) Thaw(ctx context.Context) error { return g.setFrozen(ctx, "thaw", false) }

func (g *group) setFrozen(ctx context.Context, op string, frozen bool) error {
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.caps.Supports(semantic.Freeze) {
		return g.notSupported(semantic.Freeze)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	w, err := newWatcher(g.eventsFile("cgroup.events"))
	if err != nil {
		return wrap(op, g.path, err)
	}
	defer w.close()
	want := "0"
	if frozen {
		want = "1"
	}
	prev, err := g.d.root.ReadString(join(g.rel, "cgroup.freeze"))
	if err != nil {
		return wrap(op, g.path, err)
	}
	if err := g.d.root.Write(join(g.rel, "cgroup.freeze"), want); err != nil {
		return wrap(op, g.path, err)
	}
	for {
		_, state, err := g.cgroupEvents()
		if err != nil {
			return wrap(op, g.path, err)
		}
		if state == frozen {
			return nil
		}
		if !frozen && g.ancestorFrozen() {
			return nil
		}
		if err := w.wait(ctx, time.Time{}); err != nil {
			if prev != want {
				if rerr := g.d.root.Write(join(g.rel, "cgroup.freeze"), prev); rerr != nil {
					g.d.log.Warn("undo "+op, "group", g.path.Display(), "error", rerr)
				}
			}
			return wrap(op, g.path, err)
		}
	}
}

// ancestorFrozen reports whether a group between the root and this one
// has cgroup.freeze set.
func (g *group) ancestorFrozen() bool {
	for i := g.path.Len() - 1; i > 0; i-- {
		if v, err := g.d.root.ReadString(join(g.path.Prefix(i).String(), "cgroup.freeze")); err == nil && v == "1" {
			return true
		}
	}
	return false
}

// killRetry is how long Kill waits for the group to empty before it
// writes cgroup.kill again, for processes moved in after the first write.
const killRetry = 200 * time.Millisecond

// Kill SIGKILLs every process of the group and its descendants and waits
// until cgroup.events says "populated 0". It freezes the group first (so
// nothing in the subtree forks or runs meanwhile; a fatal signal still
// ends a frozen process), signals every process cgroup.procs lists in the
// subtree, and signals again every 200ms what was moved in since.
//
// Kill leaves the group and every descendant thawed: once the subtree is
// empty it writes 0 to each cgroup.freeze that holds 1. A group left
// frozen would freeze the next process started or added into it (a Start
// into it would not return before a thaw), and v1's Kill (which must thaw
// to kill) and the fake leave the subtree thawed too, so a program sees
// the same state on every driver. A freeze of an ancestor is not the
// group's to lift and is kept; EventThawed reports each group thawed. If
// ctx ends first, the group's own cgroup.freeze is put back as it was.
//
// Kill does not write cgroup.kill, which Delete uses: since Linux 6.14
// ("cgroup: fix race between fork and cgroup.kill", backported to stable
// kernels) cgroup.kill raises the group's kill sequence for good, and
// clone3 with CLONE_INTO_CGROUP compares the destination's sequence with
// that of the caller's own group, so every later Start into a group once
// killed that way gets a child the kernel SIGKILLs before its first
// instruction. A group that outlives its Kill must stay startable.
func (g *group) Kill(ctx context.Context) error {
	const op = "kill"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if !g.d.caps.Supports(semantic.Kill) {
		return g.notSupported(semantic.Kill)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	freeze := join(g.rel, "cgroup.freeze")
	prev, err := g.d.root.ReadString(freeze)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if prev != "1" {
		if err := g.d.root.Write(freeze, "1"); err != nil {
			return wrap(op, g.path, err)
		}
	}
	signal := func() error {
		err := g.signalTree(g.rel)
		if errors.Is(err, unix.EPERM) {
			// A delegated caller may not signal a process that changed
			// its uid; cgroup.kill asks only for write access to the
			// file. It costs later Starts into this group (see above),
			// which is better than a Kill that cannot kill.
			g.d.log.Debug("kill: signal refused, writing cgroup.kill", "group", g.path.Display(), "error", err)
			return g.d.root.Write(join(g.rel, "cgroup.kill"), "1")
		}
		return err
	}
	if err := g.untilEmpty(ctx, op, signal); err != nil {
		if prev != "1" {
			if rerr := g.d.root.Write(freeze, prev); rerr != nil {
				g.d.log.Warn("undo freeze of kill", "group", g.path.Display(), "error", rerr)
			}
		}
		return err
	}
	return g.thawTree(op)
}

// untilEmpty runs act, Kill's signalling or Delete's cgroup.kill write,
// until cgroup.events says "populated 0", running it again every 200ms
// for processes moved in since.
func (g *group) untilEmpty(ctx context.Context, op string, act func() error) error {
	w, err := newWatcher(g.eventsFile("cgroup.events"))
	if err != nil {
		return wrap(op, g.path, err)
	}
	defer w.close()
	for {
		populated, _, err := g.cgroupEvents()
		if err != nil {
			return wrap(op, g.path, err)
		}
		if !populated {
			return nil
		}
		if err := act(); err != nil {
			return wrap(op, g.path, err)
		}
		for deadline := time.Now().Add(killRetry); ; {
			err := w.wait(ctx, deadline)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return wrap(op, g.path, err)
			}
			if populated, _, err = g.cgroupEvents(); err != nil {
				return wrap(op, g.path, err)
			}
			if !populated {
				return nil
			}
		}
	}
}

// walkTree calls visit for rel and then for each group below it, parents
// before children. A group removed meanwhile (ENOENT from visit or from
// listing its children) is skipped with what is below it.
func (g *group) walkTree(rel string, visit func(rel string) error) error {
	if err := visit(rel); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	kids, err := g.d.subdirs(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := g.walkTree(rel+"/"+k, visit); err != nil {
			return err
		}
	}
	return nil
}

// signalTree SIGKILLs the processes cgroup.procs lists in rel and below
// (in a threaded subtree, whose cgroup.procs cannot be read, the
// processes of the threads cgroup.threads lists), through pidfds, so a
// pid reused meanwhile by a process outside the group is never hit
// (internal/reap). A group removed meanwhile is skipped. A process the
// caller may not signal does not stop the others: the first such EPERM
// is returned once every other process was signalled.
func (g *group) signalTree(rel string) error {
	var denied error
	err := g.walkTree(rel, func(rel string) error {
		list := func() ([]int, error) {
			b, err := g.d.root.Read(join(rel, "cgroup.procs"))
			threads := errors.Is(err, unix.EOPNOTSUPP)
			if threads {
				b, err = g.d.root.Read(join(rel, "cgroup.threads"))
			}
			if err != nil {
				return nil, err
			}
			ids, err := parseIDs(b)
			if err != nil || !threads {
				return ids, err
			}
			return tgids(ids), nil
		}
		_, err := reap.KillListed(list)
		if errors.Is(err, unix.EPERM) {
			if denied == nil {
				denied = err
			}
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return denied
}

// kill, Delete's, writes 1 to cgroup.kill, which SIGKILLs every process of
// the group and its descendants (frozen ones too) and fails their forks
// meanwhile, then waits until cgroup.events says "populated 0", writing
// again every 200ms for processes moved in since. The group is removed
// next, so the kill sequence cgroup.kill leaves (see Kill) does not
// matter.
func (g *group) kill(ctx context.Context, op string) error {
	return g.untilEmpty(ctx, op, func() error { return g.d.root.Write(join(g.rel, "cgroup.kill"), "1") })
}

// thawTree writes 0 to cgroup.freeze of the group and of every descendant
// frozen on its own, parents before children. A group removed meanwhile
// is skipped.
func (g *group) thawTree(op string) error {
	return wrap(op, g.path, g.walkTree(g.rel, func(rel string) error {
		file := join(rel, "cgroup.freeze")
		v, err := g.d.root.ReadString(file)
		if err != nil || v != "1" {
			return err
		}
		return g.d.root.Write(file, "0")
	}))
}
