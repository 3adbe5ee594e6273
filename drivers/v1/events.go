package v1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// pollInterval is how often a watcher looks at cgroup.procs and
// freezer.state: v1 has no notification for either.
const pollInterval = 50 * time.Millisecond

// eventBuffer is each Events channel's buffer; a reader that falls
// further behind loses the oldest events, so a watcher never blocks.
const eventBuffer = 256

// Events delivers the group's events until ctx ends or the driver
// closes, then closes the channel. OOM comes from an eventfd registered
// on memory.oom_control through cgroup.event_control, and OOM kills from
// the oom_kill counter of memory.oom_control; populated and empty from
// cgroup.procs of the group and its descendants, frozen and thawed from
// freezer.state, both polled every 50ms, so a change undone within one
// poll is not seen. Events of a group that is deleted stop; the channel
// stays open, quiet, until ctx ends.
func (g *group) Events(ctx context.Context) (<-chan semantic.Event, error) {
	const op = "events"
	release, err := g.d.enter(ctx, op, g.p)
	if err != nil {
		return nil, err
	}
	defer release()
	w := &watcher{d: g.d, p: g.p, ch: make(chan semantic.Event, eventBuffer)}
	if !g.p.IsRoot() {
		if ok, err := g.d.primary.root.Exists(rel(g.p)); err != nil || !ok {
			return nil, errorf(op, g.p, semantic.ErrNotExist, "no such group")
		}
	}
	if err := w.sample(); err != nil {
		return nil, wrap(op, g.p, err)
	}
	var oom <-chan struct{}
	if g.d.caps.Supports(semantic.EventsOOM) {
		if oom, err = w.watchOOM(); err != nil {
			return nil, wrap(op, g.p, err)
		}
	}
	g.d.wg.Add(1)
	go w.run(ctx, oom)
	return w.ch, nil
}

type watcher struct {
	d  *Driver
	p  semantic.Path
	ch chan semantic.Event

	populated, frozen bool
	oomKills          uint64
	efd               *os.File // the OOM eventfd, nil without
	gone              bool

	// A group at its limit signals OOM thousands of times a second; one
	// EventOOM per poll interval carries the count of notifications so far,
	// so the flood cannot push the OOM-kill event out of the buffer.
	ooms, oomsSent  uint64
	oomSentThisTick bool
}

// sample reads the state events are edges of.
func (w *watcher) sample() error {
	var err error
	if w.populated, err = w.isPopulated(); err != nil {
		return err
	}
	if h := w.d.byCtrl["freezer"]; h != nil && !w.p.IsRoot() {
		st, err := h.root.ReadString(file(w.p, "freezer.state"))
		if err != nil {
			return err
		}
		w.frozen = st == frozen
	}
	if h := w.d.byCtrl["memory"]; h != nil {
		b, err := h.root.Read(file(w.p, "memory.oom_control"))
		if err != nil {
			return err
		}
		if err := statfile.ScanFlat(b, func(k []byte, v uint64) {
			if string(k) == "oom_kill" {
				w.oomKills = v
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

func (w *watcher) isPopulated() (bool, error) {
	tree, err := w.d.subtree(w.p)
	if err != nil {
		return false, err
	}
	for _, q := range tree {
		pids, err := w.d.procs(q)
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
	return false, nil
}

// watchOOM registers an eventfd for OOM notifications of the group and
// returns a channel that receives one value per notification.
func (w *watcher) watchOOM() (<-chan struct{}, error) {
	h := w.d.byCtrl["memory"]
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ctl, err := h.root.OpenFile(file(w.p, "memory.oom_control"), unix.O_RDONLY)
	if err != nil {
		unix.Close(efd)
		return nil, err
	}
	// The kernel keeps its own references to the eventfd and the group,
	// so memory.oom_control need not stay open. The registration is not
	// a change to the group: it skips the fault hook.
	err = h.undo.Write(file(w.p, "cgroup.event_control"), fmt.Sprintf("%d %d", efd, ctl.Fd()))
	ctl.Close()
	if err != nil {
		unix.Close(efd)
		return nil, err
	}
	// Non-blocking, so reads park in the runtime's poller and Close
	// wakes them.
	w.efd = os.NewFile(uintptr(efd), "oom eventfd")
	out := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := w.efd.Read(buf); err != nil {
				return
			}
			select {
			case out <- struct{}{}:
			default: // one pending notification stands for several
			}
		}
	}()
	return out, nil
}

func (w *watcher) run(ctx context.Context, oom <-chan struct{}) {
	defer w.d.wg.Done()
	defer close(w.ch)
	if w.efd != nil {
		defer w.efd.Close()
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.d.done:
			return
		case <-oom:
			// The kernel also signals when the group is removed.
			if w.gone || !w.exists() {
				w.gone = true
				continue
			}
			w.ooms++
			if !w.oomSentThisTick {
				w.sendOOM()
			}
			w.poll()
		case <-tick.C:
			if w.ooms > w.oomsSent {
				w.sendOOM()
			}
			w.oomSentThisTick = false
			w.poll()
		}
	}
}

func (w *watcher) sendOOM() {
	w.emit(semantic.EventOOM, w.ooms)
	w.oomsSent, w.oomSentThisTick = w.ooms, true
}

func (w *watcher) exists() bool {
	if w.p.IsRoot() {
		return true
	}
	release, err := w.d.enter(context.Background(), "events", w.p)
	if err != nil {
		return false
	}
	defer release()
	ok, err := w.d.primary.root.Exists(rel(w.p))
	return err == nil && ok
}

// poll compares the state with the last sample and emits the edges.
func (w *watcher) poll() {
	if w.gone {
		return
	}
	release, err := w.d.enter(context.Background(), "events", w.p)
	if err != nil {
		return
	}
	defer release()
	before := *w
	if err := w.sample(); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			w.gone = true
			if before.populated {
				w.emit(semantic.EventEmpty, 0)
			}
			return
		}
		w.d.log.Debug("event poll failed", "group", w.p.Display(), "error", err)
		*w = before
		return
	}
	if w.oomKills > before.oomKills {
		w.emit(semantic.EventOOMKill, w.oomKills)
	}
	switch {
	case w.populated && !before.populated:
		w.emit(semantic.EventPopulated, 0)
	case !w.populated && before.populated:
		w.emit(semantic.EventEmpty, 0)
	}
	switch {
	case w.frozen && !before.frozen:
		w.emit(semantic.EventFrozen, 0)
	case !w.frozen && before.frozen:
		w.emit(semantic.EventThawed, 0)
	}
}

// emit sends without blocking, dropping the oldest event when full.
func (w *watcher) emit(kind semantic.EventKind, count uint64) {
	e := semantic.Event{Kind: kind, Group: w.p, Time: time.Now(), Count: count}
	w.d.log.Trace("event", "group", w.p.Display(), "kind", kind.String(), "count", count)
	for {
		select {
		case w.ch <- e:
			return
		default:
		}
		select {
		case <-w.ch:
		default:
		}
	}
}
