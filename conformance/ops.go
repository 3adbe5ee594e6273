package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func testFreeze(t *testing.T, s *suite) {
	t.Run("FreezeThaw", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("frz", nil)
		a := f.sleeperIn(g)
		f.needOp(semantic.Freeze, func() error { return g.Freeze(f.ctx) }, func() {
			require.ErrorIs(t, g.Thaw(f.ctx), semantic.ErrNotSupported, "Thaw with freeze unsupported")
			f.requireProcesses(g, a.pid())
		})
		var ev <-chan semantic.Event
		if f.supports(semantic.EventsFrozen) {
			ev = f.events(g)
		}
		require.NoError(t, g.Freeze(f.ctx))
		f.thawOnCleanup(g)
		if ev != nil {
			f.expectEvent(ev, g.Path(), semantic.EventFrozen)
		}
		require.NoError(t, g.Freeze(f.ctx), "freezing a frozen group")
		f.requireProcesses(g, a.pid())
		require.NoError(t, g.Thaw(f.ctx))
		if ev != nil {
			f.expectEvent(ev, g.Path(), semantic.EventThawed)
		}
		require.NoError(t, g.Thaw(f.ctx), "thawing a thawed group")
		f.requireProcesses(g, a.pid())
	})
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("frz-empty", nil)
		f.needOp(semantic.Freeze, func() error { return g.Freeze(f.ctx) }, nil)
		require.NoError(t, g.Freeze(f.ctx))
		f.thawOnCleanup(g)
		require.NoError(t, g.Thaw(f.ctx))
	})
	t.Run("JoinFrozen", func(t *testing.T) {
		// A process added to a frozen group stays listed and the group
		// still thaws and deletes.
		t.Parallel()
		f := s.fixture(t)
		g := f.create("frz-join", nil)
		f.needOp(semantic.Freeze, func() error { return g.Freeze(f.ctx) }, nil)
		require.NoError(t, g.Freeze(f.ctx))
		f.thawOnCleanup(g)
		a := f.sleeperIn(g)
		f.requireProcesses(g, a.pid())
		require.NoError(t, g.Thaw(f.ctx))
		f.requireProcesses(g, a.pid())
	})
}

// thawOnCleanup thaws g before the subtest's processes are killed (a
// frozen process on cgroup v1 dies only once thawed).
func (f *fixture) thawOnCleanup(g semantic.Group) {
	f.t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := g.Thaw(ctx); err != nil && !errors.Is(err, semantic.ErrNotExist) {
			f.t.Errorf("thaw %s in cleanup: %v", g.Path(), err)
		}
	})
}

func testKill(t *testing.T, s *suite) {
	t.Run("EmptiesGroup", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		top := f.create("k", nil)
		c, d := f.create("k/c", nil), f.create("k/d/e", nil)
		a, b, x := f.sleeperIn(c), f.sleeperIn(c), f.sleeperIn(d)
		f.needOp(semantic.Kill, func() error { return top.Kill(f.ctx) }, func() {
			f.requireProcesses(c, a.pid(), b.pid())
			f.requireProcesses(d, x.pid())
		})
		require.NoError(t, top.Kill(f.ctx), "kill a group whose descendants hold processes")
		f.requireProcesses(c)
		f.requireProcesses(d)
		f.requireProcesses(top)
		require.NoError(t, top.Kill(f.ctx), "kill an empty group")
		// Only the processes are gone: the groups stay.
		f.requireExists(d.Path(), true)
		require.NoError(t, top.Delete(f.ctx, &semantic.DeleteOptions{Recursive: true}))
	})
	t.Run("Frozen", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("kf", nil)
		a := f.sleeperIn(g)
		f.needOp(semantic.Kill, func() error { return g.Kill(f.ctx) }, func() { f.requireProcesses(g, a.pid()) })
		if !f.supports(semantic.Freeze) {
			t.Skipf("freeze unsupported (%s)", f.caps.Get(semantic.Freeze).Reason)
		}
		require.NoError(t, g.Freeze(f.ctx))
		f.thawOnCleanup(g)
		require.NoError(t, g.Kill(f.ctx), "kill a frozen group")
		f.requireProcesses(g)
		require.NoError(t, g.Delete(f.ctx, nil), "delete the killed group")
	})
}

// events subscribes to g's events until the subtest ends.
func (f *fixture) events(g semantic.Group) <-chan semantic.Event {
	f.t.Helper()
	ch, err := g.Events(f.ctx)
	require.NoError(f.t, err, "events of %s", g.Path())
	require.NotNil(f.t, ch)
	return ch
}

// expectEvent reads ev until an event of one of the kinds for group p
// arrives, and returns it.
func (f *fixture) expectEvent(ev <-chan semantic.Event, p semantic.Path, kinds ...semantic.EventKind) semantic.Event {
	f.t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	var seen []semantic.Event
	for {
		select {
		case e, ok := <-ev:
			if !ok {
				f.t.Fatalf("events of %s closed before %v arrived (saw %v)", p.Display(), kinds, seen)
			}
			seen = append(seen, e)
			for _, k := range kinds {
				if e.Kind == k && e.Group.Equal(p) {
					require.False(f.t, e.Time.IsZero(), "event %v has no time", e)
					return e
				}
			}
		case <-timer.C:
			f.t.Fatalf("no %v event of %s within %v (saw %v)", kinds, p.Display(), patience, seen)
		}
	}
}

func testEvents(t *testing.T, s *suite) {
	anyEvents := func(f *fixture) bool {
		return f.supports(semantic.EventsOOM) || f.supports(semantic.EventsPopulated) || f.supports(semantic.EventsFrozen)
	}
	needPopulated := func(f *fixture, g semantic.Group) {
		if f.supports(semantic.EventsPopulated) {
			return
		}
		if !anyEvents(f) {
			f.needOp(semantic.EventsPopulated, func() error { _, err := g.Events(f.ctx); return err }, nil)
		}
		f.t.Skipf("events.populated unsupported (%s)", f.caps.Get(semantic.EventsPopulated).Reason)
	}
	t.Run("PopulatedEmpty", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g, other := f.create("ev", nil), f.create("ev-other", nil)
		needPopulated(f, g)
		ev := f.events(g)
		a := f.sleeperIn(g)
		f.expectEvent(ev, g.Path(), semantic.EventPopulated)
		// Moving the last process out empties the group; no kill needed.
		require.NoError(t, other.AddProcess(f.ctx, a.pid()))
		f.expectEvent(ev, g.Path(), semantic.EventEmpty)
	})
	t.Run("PopulatedByDescendant", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		top := f.create("evp", nil)
		leaf := f.create("evp/leaf", nil)
		needPopulated(f, top)
		ev := f.events(top)
		a := f.sleeperIn(leaf)
		f.expectEvent(ev, top.Path(), semantic.EventPopulated)
		a.closeInput()
		a.wait()
		f.expectEvent(ev, top.Path(), semantic.EventEmpty)
	})
	t.Run("ClosedOnCancel", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("evc", nil)
		if !anyEvents(f) {
			f.needOp(semantic.EventsPopulated, func() error { _, err := g.Events(f.ctx); return err }, nil)
		}
		ctx, cancel := context.WithCancel(f.ctx)
		ch, err := g.Events(ctx)
		require.NoError(t, err)
		cancel()
		f.drainClosed(ch, "events channel after its context was cancelled")
	})
}

// drainClosed reads ch until it is closed, failing after patience.
func (f *fixture) drainClosed(ch <-chan semantic.Event, what string) {
	f.t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			f.t.Fatalf("%s not closed within %v", what, patience)
		}
	}
}

func testStats(t *testing.T, s *suite) {
	t.Run("Shape", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("st", nil)
		st := f.stats(g)
		if !f.supports(semantic.StatsPressure) {
			require.Nil(t, st.Pressure, "pressure is unsupported, so it must be absent, not zero")
		}
		if st.Pids == nil || st.Pids.Current == nil {
			t.Skip("the driver reports no current pids count")
		}
		require.Zero(t, *st.Pids.Current, "tasks in an empty group")
		f.sleeperIn(g)
		f.sleeperIn(g)
		st = f.stats(g)
		require.NotNil(t, st.Pids, "pids stats came and went")
		require.NotNil(t, st.Pids.Current, "pids current came and went")
		// A process is at least one task (a Go sleeper has several threads).
		require.GreaterOrEqual(t, *st.Pids.Current, uint64(2), "tasks after adding two processes")
		if f.caps.Get(semantic.PidsMax).Support == semantic.Exact {
			require.NoError(t, g.Apply(f.ctx, pidsRes(50)))
			if st = f.stats(g); st.Pids != nil && st.Pids.Limit != nil {
				require.Equal(t, semantic.Count(50), *st.Pids.Limit, "pids limit in stats")
			}
		}
	})
	t.Run("Descendants", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		top := f.create("std", nil)
		leaf := f.create("std/leaf", nil)
		f.sleeperIn(leaf)
		st := f.stats(top)
		if st.Pids == nil || st.Pids.Current == nil {
			t.Skip("the driver reports no current pids count")
		}
		require.GreaterOrEqual(t, *st.Pids.Current, uint64(1), "a group's task count includes its descendants'")
	})
}

func (f *fixture) stats(g semantic.Group) *semantic.Stats {
	f.t.Helper()
	st, err := g.Stats(f.ctx)
	require.NoError(f.t, err, "stats of %s", g.Path())
	require.NotNil(f.t, st, "stats of %s", g.Path())
	return st
}

// testContext checks calls made with a context already ended: blocking
// calls (freeze, thaw, kill, delete, start) return promptly with an error
// matching the context's; quick ones may succeed, but an error may not
// hide a change.
func testContext(t *testing.T, s *suite) {
	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("ctx", f.fullRequest(0))
		a := f.sleeperIn(g)
		ctx, cancel := context.WithCancel(f.ctx)
		cancel()

		p := f.path("ctx-new")
		if err := callCtx(f, "Create", func() error { _, err := f.d.Create(ctx, p, nil); return err }); err != nil {
			f.requireExists(p, false)
		}
		callCtx(f, "Open", func() error { _, err := f.d.Open(ctx, g.Path()); return err })
		callCtx(f, "Children", func() error { _, err := f.d.Children(ctx, semantic.Root); return err })
		before, obsBefore := f.read(g), f.observe(g)
		if err := callCtx(f, "Apply", func() error { return g.Apply(ctx, f.fullRequest(1)) }); err != nil {
			f.requireUnchanged(g, before, obsBefore, "an Apply that reported cancellation")
		}
		callCtx(f, "Resources", func() error { _, err := g.Resources(ctx); return err })
		callCtx(f, "Processes", func() error { _, err := g.Processes(ctx); return err })
		callCtx(f, "Stats", func() error { _, err := g.Stats(ctx); return err })

		h := f.helper("sleep", false)
		defer h.discard()
		blocking := []struct {
			name    string
			feature semantic.Feature
			fn      func() error
		}{
			{"Freeze", semantic.Freeze, func() error { return g.Freeze(ctx) }},
			{"Thaw", semantic.Freeze, func() error { return g.Thaw(ctx) }},
			{"Kill", semantic.Kill, func() error { return g.Kill(ctx) }},
			{"Delete", "", func() error {
				return g.Delete(ctx, &semantic.DeleteOptions{Kill: f.supports(semantic.Kill)})
			}},
			{"Start", semantic.StartInside, func() error {
				err := g.Start(ctx, h.cmd)
				if h.cmd.Process != nil {
					h.cmd.Process.Kill()
					h.cmd.Wait()
					if err != nil {
						t.Errorf("Start reported %v but started the process", err)
					}
				}
				return err
			}},
		}
		for _, b := range blocking {
			if b.feature != "" && !f.supports(b.feature) {
				continue
			}
			require.Error(t, callCtx(f, b.name, b.fn), "%s with a cancelled context must fail with the context's error", b.name)
		}
		// Delete reported failure, so the group and its process are there.
		f.requireExists(g.Path(), true)
		if f.supports(semantic.Freeze) {
			f.thawOnCleanup(g)
			require.NoError(t, g.Thaw(f.ctx))
		}
		if !f.supports(semantic.Kill) {
			f.requireProcesses(g, a.pid())
		}

		if ev, err := g.Events(ctx); err != nil {
			require.True(t, errors.Is(err, context.Canceled) || errors.Is(err, semantic.ErrNotSupported),
				"Events with a cancelled context: %v", err)
		} else {
			f.drainClosed(ev, "events channel of an already cancelled context")
		}
	})
	t.Run("DeadlineExceeded", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("ctx-deadline", nil)
		f.sleeperIn(g)
		ctx, cancel := context.WithDeadline(f.ctx, time.Now().Add(-time.Second))
		defer cancel()
		err := f.within("Delete with an expired deadline", func() error {
			return g.Delete(ctx, &semantic.DeleteOptions{Kill: f.supports(semantic.Kill)})
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		f.requireExists(g.Path(), true)
	})
}

// callCtx runs a call made with a cancelled context. It must return within
// patience, and an error must match context.Canceled.
func callCtx(f *fixture, name string, fn func() error) error {
	f.t.Helper()
	err := f.within(name+" with a cancelled context", fn)
	if err != nil {
		require.ErrorIs(f.t, err, context.Canceled, "%s with a cancelled context failed, but not with the context's error", name)
	}
	return err
}

func testPlan(t *testing.T, s *suite) {
	t.Run("ChangesNothing", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("plan", f.fullRequest(0))
		req := f.fullRequest(1)
		if len(req.Fields()) == 0 {
			t.Skip("the driver honours no resource field exactly")
		}
		before, obsBefore := f.read(g), f.observe(g)
		plan, err := g.Plan(f.ctx, req)
		require.NoError(t, err, "plan %v", req)
		require.NotNil(t, plan)
		require.NotEmpty(t, plan.Steps, "a plan for %v, which changes the group, has no steps", req)
		want := map[semantic.Feature]bool{}
		for _, feat := range req.Fields() {
			want[feat] = true
		}
		for _, st := range plan.Steps {
			require.NotEmpty(t, st.Action, "plan step %+v has no action", st)
			if st.Feature != "" {
				require.True(t, want[st.Feature], "plan step %+v serves %s, which the request does not set", st, st.Feature)
			}
		}
		f.requireUnchanged(g, before, obsBefore, "Plan")
		// And Apply still does what was planned.
		require.NoError(t, g.Apply(f.ctx, req))
		f.requireApplied(g, req)
	})
	t.Run("EmptyRequest", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("plan-empty", nil)
		plan, err := g.Plan(f.ctx, &semantic.Resources{})
		require.NoError(t, err)
		require.NotNil(t, plan)
		require.Empty(t, plan.Steps, "a plan for an empty request")
	})
}
