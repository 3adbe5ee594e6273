package fake_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func subscribe(t *testing.T, g semantic.Group) <-chan semantic.Event {
	t.Helper()
	ch, err := g.Events(ctxFor(t))
	require.NoError(t, err)
	return ch
}

// requireEvents reads the next events on ch and compares their kinds.
func requireEvents(t *testing.T, ch <-chan semantic.Event, g semantic.Group, want ...semantic.EventKind) {
	t.Helper()
	for i, k := range want {
		ev := nextEvent(t, ch)
		require.Equal(t, k, ev.Kind, "event %d on %s", i, g.Path())
		require.True(t, ev.Group.Equal(g.Path()), "event %d names %s", i, ev.Group)
		require.False(t, ev.Time.IsZero())
	}
}

func TestPopulatedEvents(t *testing.T) {
	d := newDriver(t, fake.Options{})
	ctx := ctxFor(t)
	a, b, c := create(t, d, "a", nil), create(t, d, "a/b", nil), create(t, d, "a/c", nil)
	root, err := d.Open(ctx, semantic.Root)
	require.NoError(t, err)
	evRoot, evA, evB, evC := subscribe(t, root), subscribe(t, a), subscribe(t, b), subscribe(t, c)
	cmd := sleeper(t)

	require.NoError(t, b.AddProcess(ctx, cmd.Process.Pid))
	requireEvents(t, evB, b, semantic.EventPopulated)
	requireEvents(t, evA, a, semantic.EventPopulated)
	requireEvents(t, evRoot, root, semantic.EventPopulated)

	// A move between siblings changes a/b and a/c, not their parent: the
	// next event a sees is the marker.
	require.NoError(t, c.AddProcess(ctx, cmd.Process.Pid))
	requireEvents(t, evB, b, semantic.EventEmpty)
	requireEvents(t, evC, c, semantic.EventPopulated)
	require.NoError(t, d.InjectOOM(a.Path()))
	requireEvents(t, evA, a, semantic.EventOOM, semantic.EventOOMKill)

	require.NoError(t, a.Kill(ctx))
	requireEvents(t, evC, c, semantic.EventEmpty)
	requireEvents(t, evA, a, semantic.EventEmpty)
	requireEvents(t, evRoot, root, semantic.EventEmpty)
}

func TestFreezeEvents(t *testing.T) {
	d := newDriver(t, fake.Options{})
	ctx := ctxFor(t)
	g := create(t, d, "a", nil)
	ev := subscribe(t, g)
	// Repeating a state changes nothing and fires nothing; the OOM marker
	// shows what came before it.
	require.NoError(t, g.Thaw(ctx))
	require.NoError(t, g.Freeze(ctx))
	require.NoError(t, g.Freeze(ctx))
	require.NoError(t, g.Thaw(ctx))
	require.NoError(t, g.Thaw(ctx))
	require.NoError(t, d.InjectOOM(g.Path()))
	requireEvents(t, ev, g, semantic.EventFrozen, semantic.EventThawed, semantic.EventOOM, semantic.EventOOMKill)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, g.Freeze(cancelled), context.Canceled)
	require.NoError(t, d.InjectOOM(g.Path()))
	requireEvents(t, ev, g, semantic.EventOOM, semantic.EventOOMKill)
}

func TestOOMEventCounts(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a", nil)
	ev := subscribe(t, g)
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, d.InjectOOM(g.Path()))
		oom, kill := nextEvent(t, ev), nextEvent(t, ev)
		require.Equal(t, semantic.Event{Kind: semantic.EventOOM, Group: g.Path(), Time: oom.Time, Count: i}, oom)
		require.Equal(t, semantic.Event{Kind: semantic.EventOOMKill, Group: g.Path(), Time: kill.Time, Count: i}, kill)
	}
}

func TestEventsEveryListener(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a", nil)
	first, second := subscribe(t, g), subscribe(t, g)
	require.NoError(t, g.Freeze(t.Context()))
	requireEvents(t, first, g, semantic.EventFrozen)
	requireEvents(t, second, g, semantic.EventFrozen)
}

func TestEventsClosedWhenContextEnds(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a", nil)
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := g.Events(ctx)
	require.NoError(t, err)
	require.NoError(t, g.Delete(t.Context(), nil))
	require.NoError(t, d.InjectOOM(create(t, d, "a", nil).Path()), "a new group at the path is another group")
	cancel()
	_, open := <-ch
	require.False(t, open, "closed, and nothing was delivered after the group was deleted")
}

func TestEventsDropOldest(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a", nil)
	ch := subscribe(t, g)
	const ooms = 300 // two events each: far more than the buffer
	for range ooms {
		require.NoError(t, d.InjectOOM(g.Path()), "the driver does not block on a reader that does not read")
	}
	n := len(ch)
	require.Positive(t, n)
	require.Less(t, n, 2*ooms, "the buffer is bounded")
	var got []semantic.Event
	for range n {
		got = append(got, <-ch)
	}
	// What is kept is the newest, in order.
	last := got[len(got)-1]
	require.Equal(t, semantic.EventOOMKill, last.Kind)
	require.Equal(t, uint64(ooms), last.Count)
	for i := 1; i < len(got); i++ {
		require.False(t, got[i].Time.Before(got[i-1].Time))
		require.GreaterOrEqual(t, got[i].Count, got[i-1].Count)
	}
	require.Greater(t, got[0].Count, uint64(1), "the oldest were dropped")
}

func TestEventsUnsupported(t *testing.T) {
	t.Run("one kind", func(t *testing.T) {
		d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.EventsFrozen}})
		g := create(t, d, "a", nil)
		ev := subscribe(t, g)
		require.NoError(t, g.Freeze(t.Context()), "freezing works; its event is not delivered")
		require.NoError(t, d.InjectOOM(g.Path()))
		requireEvents(t, ev, g, semantic.EventOOM, semantic.EventOOMKill)
	})
	t.Run("every kind", func(t *testing.T) {
		d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.EventsFrozen, semantic.EventsOOM, semantic.EventsPopulated}})
		g := create(t, d, "a", nil)
		_, err := g.Events(t.Context())
		requireKind(t, err, semantic.ErrNotSupported)
	})
	t.Run("freeze", func(t *testing.T) {
		d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.Freeze}})
		g := create(t, d, "a", nil)
		ev := subscribe(t, g)
		requireKind(t, g.Freeze(t.Context()), semantic.ErrNotSupported)
		requireKind(t, g.Thaw(t.Context()), semantic.ErrNotSupported)
		require.NoError(t, d.InjectOOM(g.Path()))
		requireEvents(t, ev, g, semantic.EventOOM)
	})
}

// Kill leaves the subtree thawed, as v1 and v2 do: each group frozen
// before fires EventThawed, and a later Freeze is a change again.
func TestKillThaws(t *testing.T) {
	d := newDriver(t, fake.Options{})
	ctx := ctxFor(t)
	a := create(t, d, "a", nil)
	b := create(t, d, "a/b", nil)
	c := create(t, d, "a/c", nil)
	evA, evB, evC := subscribe(t, a), subscribe(t, b), subscribe(t, c)
	require.NoError(t, b.Freeze(ctx))
	require.NoError(t, a.Freeze(ctx))
	require.NoError(t, a.Kill(ctx))
	require.NoError(t, b.Freeze(ctx))
	for _, g := range []semantic.Group{a, b, c} {
		require.NoError(t, d.InjectOOM(g.Path()))
	}
	requireEvents(t, evA, a, semantic.EventFrozen, semantic.EventThawed, semantic.EventOOM, semantic.EventOOMKill)
	requireEvents(t, evB, b, semantic.EventFrozen, semantic.EventThawed, semantic.EventFrozen, semantic.EventOOM, semantic.EventOOMKill)
	requireEvents(t, evC, c, semantic.EventOOM, semantic.EventOOMKill)
}
