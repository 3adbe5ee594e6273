package fake_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// TestConcurrentUse drives one driver from many goroutines at once; run
// with -race. Groups are shared between workers so that calls really
// collide, and the processes move between them.
func TestConcurrentUse(t *testing.T) {
	d := newDriver(t, hostOpts())
	ctx := ctxFor(t)
	const workers, rounds = 8, 30
	var pids []int
	for range 3 {
		pids = append(pids, sleeper(t).Process.Pid)
	}
	// Every error must be one a concurrent caller can expect.
	expected := func(err error) bool {
		return err == nil || errors.Is(err, semantic.ErrExist) || errors.Is(err, semantic.ErrNotExist) ||
			errors.Is(err, semantic.ErrBusy)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*16)
	for w := range workers {
		wg.Go(func() {
			evCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			for r := range rounds {
				p := semantic.MustPath(fmt.Sprintf("shared/g%d", (w+r)%4))
				check := func(err error) {
					if !expected(err) {
						errs <- err
					}
				}
				g, err := d.Create(ctx, p, &semantic.Resources{Pids: &semantic.Pids{Max: new(semantic.Count(r + 1))}})
				check(err)
				if g == nil {
					g, err = d.Open(ctx, p)
					check(err)
					if err != nil {
						continue
					}
				}
				if _, err := g.Events(evCtx); err != nil {
					check(err)
				}
				check(g.Apply(ctx, fullRequest()))
				_, err = g.Resources(ctx)
				check(err)
				_, err = g.Plan(ctx, otherRequest())
				check(err)
				check(g.AddProcess(ctx, pids[r%len(pids)]))
				_, err = g.Processes(ctx)
				check(err)
				_, err = g.Stats(ctx)
				check(err)
				check(g.Freeze(ctx))
				check(g.Thaw(ctx))
				check(d.InjectOOM(p))
				_, err = d.Children(ctx, p.Parent())
				check(err)
				if r%5 == 4 {
					check(g.Delete(ctx, nil))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Each process ended up in exactly one group.
	seen := map[int]string{}
	var walk func(p semantic.Path)
	walk = func(p semantic.Path) {
		g, err := d.Open(ctx, p)
		require.NoError(t, err)
		for _, pid := range processes(t, g) {
			require.NotContains(t, seen, pid, "pid %d in %s and %s", pid, seen[pid], p)
			seen[pid] = p.Display()
		}
		kids, err := d.Children(ctx, p)
		require.NoError(t, err)
		for _, k := range kids {
			walk(k)
		}
	}
	walk(semantic.Root)
	require.Len(t, seen, len(pids))
}
