package systemd

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/semantic"
)

// watcher is an inotify descriptor on cgroup files (cgroup.events,
// memory.events), read through the runtime's poller so a wait ends with
// its context.
type watcher struct{ f *os.File }

func newWatcher(paths ...string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &watcher{os.NewFile(uintptr(fd), "inotify")}
	for _, p := range paths {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err != nil {
			w.close()
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
	}
	return w, nil
}

func (w *watcher) close() { w.f.Close() }

// wait blocks until a watched file changed or ctx ends.
func (w *watcher) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Now()) })
	defer stop()
	var buf [4096]byte
	_, err := w.f.Read(buf[:])
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// path is the absolute path (through the view) of a file of a group in a
// hierarchy.
func dirPath(d *cgroupfs.Dir, cgroup, name string) string {
	return d.Path() + "/" + file(rel(cgroup), name)
}

// waitEmpty returns once no process is in the group or below it. cgroup2
// says so in cgroup.events; name=systemd alone (legacy mode) has no
// notification and is looked at again every few milliseconds.
func (d *Driver) waitEmpty(ctx context.Context, cgroup string) error {
	if d.cg.unified == nil {
		for {
			busy, err := d.cg.populated(cgroup)
			if err != nil || !busy {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	w, err := newWatcher(dirPath(d.cg.unified, cgroup, "cgroup.events"))
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer w.close()
	for {
		busy, err := d.cg.populated(cgroup)
		if err != nil || !busy {
			return err
		}
		if err := w.wait(ctx); err != nil {
			return err
		}
	}
}

// eventBuffer is how many events a channel holds before the oldest go.
const eventBuffer = 256

// Events delivers the slice's populated, empty, frozen and thawed events
// from its cgroup.events, and OOM events from memory.events (cgroup2) or
// an eventfd on memory.oom_control (v1). Events are transitions seen
// after the call; the channel closes when ctx ends.
func (g *group) Events(ctx context.Context) (<-chan semantic.Event, error) {
	const op = "events"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return nil, err
	}
	if !d.caps.Supports(semantic.EventsPopulated) && !d.caps.Supports(semantic.EventsOOM) {
		return nil, withGroup(semantic.NotSupported(Name, semantic.EventsPopulated, d.caps.Get(semantic.EventsPopulated).Reason), g.path)
	}
	slice, err := d.sliceOf(op, g.path)
	if err != nil {
		return nil, err
	}
	cg := d.sliceCgroupOf(slice)
	if err := g.exists(op, cg); err != nil {
		return nil, err
	}
	s := &eventSource{g: g, cg: cg, out: make(chan semantic.Event, eventBuffer)}
	if err := s.open(); err != nil {
		s.close()
		return nil, wrap(op, g.path, err)
	}
	// The source ends with ctx or with the driver, whichever first.
	ctx, cancel := context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		go func() {
			select {
			case <-d.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.run(ctx)
	}()
	return s.out, nil
}

// eventSource turns changes of a group's files into events.
type eventSource struct {
	g   *group
	cg  string
	out chan semantic.Event

	w *watcher
	// v1 OOM notification: an eventfd the kernel signals at each OOM of
	// the group (and when the group goes).
	oomFD   *os.File
	oomFile *cgroupfs.File

	populated, frozen int64
	oom, oomKill      uint64
	// pendingOOM counts v1 OOM notifications not yet turned into events.
	pendingOOM atomic.Uint64
}

func (s *eventSource) open() error {
	d := s.g.d
	var paths []string
	if u := d.cg.unified; u != nil {
		paths = append(paths, dirPath(u, s.cg, "cgroup.events"))
		if d.host.layout == layoutUnified && d.caps.Supports(semantic.EventsOOM) {
			if ok, _ := u.Exists(file(rel(s.cg), "memory.events")); ok {
				paths = append(paths, dirPath(u, s.cg, "memory.events"))
			}
		}
	}
	var err error
	if len(paths) > 0 {
		if s.w, err = newWatcher(paths...); err != nil {
			return err
		}
	}
	if d.host.layout != layoutUnified && d.caps.Supports(semantic.EventsOOM) {
		if err := s.openOOMv1(); err != nil {
			return err
		}
	}
	s.populated, s.frozen, s.oom, s.oomKill = s.read()
	return nil
}

// openOOMv1 registers an eventfd for the group's memory.oom_control.
func (s *eventSource) openOOMv1() error {
	mem := s.g.d.cg.v1["memory"]
	r := rel(s.cg)
	f, err := mem.OpenFile(file(r, "memory.oom_control"), unix.O_RDONLY)
	if isNotExist(err) {
		return nil // no memory group: nothing can run out of it
	}
	if err != nil {
		return err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		f.Close()
		return err
	}
	s.oomFile, s.oomFD = f, os.NewFile(uintptr(efd), "eventfd")
	// Registering a listener is not a change of the group: it goes past
	// the fault hook.
	return mem.Unhooked().Write(file(r, "cgroup.event_control"), strconv.Itoa(efd)+" "+strconv.Itoa(f.Fd()))
}

func (s *eventSource) close() {
	if s.w != nil {
		s.w.close()
	}
	if s.oomFD != nil {
		s.oomFD.Close()
	}
	if s.oomFile != nil {
		s.oomFile.Close()
	}
}

// read returns the current populated and frozen flags (-1 when unknown)
// and OOM counters.
func (s *eventSource) read() (populated, frozen int64, oom, oomKill uint64) {
	d := s.g.d
	populated, frozen = -1, -1
	if u := d.cg.unified; u != nil {
		if b, err := u.Read(file(rel(s.cg), "cgroup.events")); err == nil {
			populated, frozen = eventsField(b, "populated"), eventsField(b, "frozen")
		}
		if d.host.layout == layoutUnified {
			if b, err := u.Read(file(rel(s.cg), "memory.events")); err == nil {
				if v := eventsField(b, "oom"); v >= 0 {
					oom = uint64(v)
				}
				if v := eventsField(b, "oom_kill"); v >= 0 {
					oomKill = uint64(v)
				}
			}
		}
	}
	if s.oomFile != nil {
		oom = s.oom
	}
	return
}

func (s *eventSource) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.close()
		close(s.out)
	}()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if s.w != nil {
		wg.Go(func() {
			for s.w.wait(ctx) == nil {
				poke()
			}
		})
	}
	if s.oomFD != nil {
		wg.Go(func() { s.runOOMv1(ctx, poke) })
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		s.emitChanges()
	}
}

// runOOMv1 counts the OOM notifications of the eventfd. (v1 counts the
// kill itself only in the victim's group, a scope that ends with it: there
// is no OOM-kill event to give.)
func (s *eventSource) runOOMv1(ctx context.Context, poke func()) {
	stop := context.AfterFunc(ctx, func() { s.oomFD.SetReadDeadline(time.Now()) })
	defer stop()
	var buf [8]byte
	for {
		if _, err := s.oomFD.Read(buf[:]); err != nil {
			return
		}
		if _, err := s.oomFile.ReadInto(nil); err != nil {
			return // the group is gone: the kernel signals that too
		}
		s.pendingOOM.Add(binary.NativeEndian.Uint64(buf[:]))
		poke()
	}
}

func (s *eventSource) emitChanges() {
	populated, frozen, oom, oomKill := s.read()
	if s.oomFD != nil {
		oom = s.oom + s.pendingOOM.Swap(0)
	}
	now := time.Now()
	p := s.g.path
	if populated >= 0 && s.populated >= 0 && populated != s.populated {
		k := semantic.EventEmpty
		if populated == 1 {
			k = semantic.EventPopulated
		}
		s.send(semantic.Event{Kind: k, Group: p, Time: now})
	}
	if frozen >= 0 && s.frozen >= 0 && frozen != s.frozen && s.g.d.caps.Supports(semantic.EventsFrozen) {
		k := semantic.EventThawed
		if frozen == 1 {
			k = semantic.EventFrozen
		}
		s.send(semantic.Event{Kind: k, Group: p, Time: now})
	}
	if oom > s.oom {
		s.send(semantic.Event{Kind: semantic.EventOOM, Group: p, Time: now, Count: oom})
	}
	if oomKill > s.oomKill {
		s.send(semantic.Event{Kind: semantic.EventOOMKill, Group: p, Time: now, Count: oomKill})
	}
	if populated >= 0 {
		s.populated = populated
	}
	if frozen >= 0 {
		s.frozen = frozen
	}
	s.oom, s.oomKill = max(s.oom, oom), max(s.oomKill, oomKill)
}

// send delivers an event, dropping the oldest when the reader is behind:
// the driver never blocks on a slow reader.
func (s *eventSource) send(e semantic.Event) {
	for {
		select {
		case s.out <- e:
			return
		default:
		}
		select {
		case <-s.out:
		default:
		}
	}
}
