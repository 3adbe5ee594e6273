package v2

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// eventBuffer is how many undelivered events a channel holds before the
// oldest is dropped, so a slow reader never stalls the driver.
const eventBuffer = 256

// eventState is what the event files said last.
type eventState struct {
	populated, frozen bool
	oom, oomKill      uint64
	memory            bool // memory.events was read
}

// Events watches cgroup.events (populated, frozen) and, where the group
// has the memory controller, memory.events (oom, oom_kill), with inotify,
// and delivers a change of each as an event: EventPopulated and
// EventEmpty, EventFrozen and EventThawed, EventOOM and EventOOMKill with
// the kernel's counters (memory.events counts the group and its
// descendants). Changes the kernel makes and undoes between two reads are
// not seen. The channel closes when ctx ends or the driver is closed; it
// stays open, quiet, after the group is deleted.
func (g *group) Events(ctx context.Context) (<-chan semantic.Event, error) {
	const op = "events"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	w, err := newWatcher(g.eventsFile("cgroup.events"))
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	memWatched := g.watchMemory(w)
	st, err := g.eventState(memWatched)
	if err != nil {
		w.close()
		return nil, wrap(op, g.path, err)
	}
	ch := make(chan semantic.Event, eventBuffer)
	ctx, cancel := context.WithCancel(ctx)
	g.d.mu.Lock()
	if g.d.closed {
		g.d.mu.Unlock()
		cancel()
		w.close()
		return nil, errorf(op, g.path, semantic.ErrInvalid, "driver closed")
	}
	stop := context.AfterFunc(g.d.ctx, cancel)
	g.d.wg.Add(1)
	g.d.mu.Unlock()
	go func() {
		defer g.d.wg.Done()
		defer func() {
			stop()
			cancel()
			w.close()
			close(ch)
		}()
		for {
			if err := w.wait(ctx, time.Time{}); err != nil {
				if ctx.Err() == nil {
					g.d.log.Warn("events: wait", "group", g.path.Display(), "error", err)
				}
				return
			}
			if !memWatched {
				memWatched = g.watchMemory(w)
			}
			next, err := g.eventState(memWatched)
			if err != nil {
				// The group went away: nothing more will happen to it.
				continue
			}
			for _, ev := range diffEvents(st, next) {
				ev.Group, ev.Time = g.path, time.Now()
				g.d.log.Trace("event", "group", g.path.Display(), "kind", ev.Kind, "count", ev.Count)
				send(ch, ev)
			}
			st = next
		}
	}()
	return ch, nil
}

// watchMemory adds memory.events to w when the group has it (its memory
// controller may be enabled after the watch began), and reports whether
// it is watched.
func (g *group) watchMemory(w *watcher) bool {
	if !g.d.caps.Supports(semantic.EventsOOM) {
		return false
	}
	err := w.add(g.eventsFile("memory.events"))
	if err != nil && !errors.Is(err, unix.ENOENT) {
		g.d.log.Debug("events: watch memory.events", "group", g.path.Display(), "error", err)
	}
	return err == nil
}

// eventState reads the event files.
func (g *group) eventState(memory bool) (eventState, error) {
	var st eventState
	var err error
	if st.populated, st.frozen, err = g.cgroupEvents(); err != nil {
		return st, err
	}
	if !memory {
		return st, nil
	}
	b, err := g.d.root.Read(join(g.rel, "memory.events"))
	if err != nil {
		return st, err
	}
	st.memory = true
	err = statfile.ScanFlat(b, func(key []byte, v uint64) {
		switch string(key) {
		case "oom":
			st.oom = v
		case "oom_kill":
			st.oomKill = v
		}
	})
	return st, err
}

// diffEvents lists the events between two states, in a fixed order.
func diffEvents(prev, next eventState) []semantic.Event {
	var out []semantic.Event
	if next.memory {
		if !prev.memory {
			// The watch on memory.events began just now; counts before
			// it are not news.
			prev.oom, prev.oomKill = next.oom, next.oomKill
		}
		if next.oom > prev.oom {
			out = append(out, semantic.Event{Kind: semantic.EventOOM, Count: next.oom})
		}
		if next.oomKill > prev.oomKill {
			out = append(out, semantic.Event{Kind: semantic.EventOOMKill, Count: next.oomKill})
		}
	}
	switch {
	case next.populated && !prev.populated:
		out = append(out, semantic.Event{Kind: semantic.EventPopulated})
	case !next.populated && prev.populated:
		out = append(out, semantic.Event{Kind: semantic.EventEmpty})
	}
	switch {
	case next.frozen && !prev.frozen:
		out = append(out, semantic.Event{Kind: semantic.EventFrozen})
	case !next.frozen && prev.frozen:
		out = append(out, semantic.Event{Kind: semantic.EventThawed})
	}
	return out
}

// send delivers ev without blocking; with the buffer full, the oldest
// undelivered event is dropped. Only the watching goroutine sends.
func send(ch chan semantic.Event, ev semantic.Event) {
	for {
		select {
		case ch <- ev:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
