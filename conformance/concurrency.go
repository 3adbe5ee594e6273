package conformance

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// workers is how many goroutines each concurrency subtest runs at once.
const workers = 8

// parallel runs fn(i) for i in 0..n-1 at once and returns every error they
// report. It fails the test if they have not all finished after the
// harness's ConcurrencyDeadline (twice patience by default): that is a
// deadlock, not slowness.
func (f *fixture) parallel(n int, fn func(i int) error) []error {
	f.t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("worker %d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	close(start)
	deadline := f.s.h.ConcurrencyDeadline
	if deadline <= 0 {
		deadline = 2 * patience
	}
	select {
	case <-done:
	case <-time.After(deadline):
		f.t.Fatalf("%d concurrent workers did not finish within %v: deadlock?", n, deadline)
	}
	return errs
}

func requireNoErrors(t *testing.T, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Fatalf("%d concurrent operations failed; first: %v", len(errs), errors.Join(errs...))
	}
}

// concurrencyFields picks the exact scalar fields the concurrency subtests
// write, with a value per (worker, round).
func (f *fixture) concurrencyFields() []func(worker, round int) *semantic.Resources {
	all := []struct {
		feature semantic.Feature
		make    func(worker, round int) *semantic.Resources
	}{
		{semantic.PidsMax, func(w, r int) *semantic.Resources { return pidsRes(semantic.Count(100 + 100*w + r)) }},
		{semantic.CPUWeight, func(w, r int) *semantic.Resources {
			return cpuRes(func(c *semantic.CPU) { c.Weight = ptr(uint64(100 + 100*w + r)) })
		}},
		{semantic.MemoryMax, func(w, r int) *semantic.Resources {
			return memRes(func(m *semantic.Memory) {
				m.Max = ptr(semantic.Bytes(w+1)*semantic.GiB + semantic.Bytes(r)*semantic.MiB)
			})
		}},
		{semantic.MemoryLow, func(w, r int) *semantic.Resources {
			return memRes(func(m *semantic.Memory) {
				m.Low = ptr(semantic.Bytes(w+1)*semantic.MiB + semantic.Bytes(r)*64*semantic.KiB)
			})
		}},
		{semantic.IOWeight, func(w, r int) *semantic.Resources {
			return ioRes(func(io *semantic.IO) { io.Weight = ptr(uint64(10 + 10*w + r)) })
		}},
	}
	var out []func(int, int) *semantic.Resources
	for _, a := range all {
		if f.caps.Get(a.feature).Support == semantic.Exact {
			out = append(out, a.make)
		}
	}
	return out
}

func testConcurrency(t *testing.T, s *suite) {
	const rounds = 10
	t.Run("DistinctGroups", func(t *testing.T) {
		// Each worker creates, updates, reads back and deletes its own
		// groups: every read-back is its own last write.
		t.Parallel()
		f := s.fixture(t)
		fields := f.concurrencyFields()
		requireNoErrors(t, f.parallel(workers, func(w int) error {
			for r := range rounds {
				p := semantic.MustPath(fmt.Sprintf("shared/w%d/r%d", w, r))
				g, err := f.d.Create(f.ctx, p, nil)
				if err != nil {
					return err
				}
				for _, mk := range fields {
					req := mk(w, r)
					if err := g.Apply(f.ctx, req); err != nil {
						return err
					}
					got, err := g.Resources(f.ctx)
					if err != nil {
						return err
					}
					for _, feat := range req.Fields() {
						if d := diff(feat, req.Normalize(f.s.pageSize), got, true); d != "" {
							return fmt.Errorf("%s: lost update: %s", p, d)
						}
					}
				}
				if _, err := f.d.Children(f.ctx, p.Parent()); err != nil {
					return err
				}
				if err := g.Delete(f.ctx, nil); err != nil {
					return err
				}
			}
			return nil
		}))
		f.requireChildren(f.path("shared"), func() []string {
			var ws []string
			for w := range workers {
				ws = append(ws, fmt.Sprintf("w%d", w))
			}
			return ws
		}()...)
	})
	t.Run("SharedIntermediates", func(t *testing.T) {
		// Workers race to create leaves below the same missing levels:
		// every Create succeeds, none loses a sibling.
		t.Parallel()
		f := s.fixture(t)
		requireNoErrors(t, f.parallel(workers*2, func(i int) error {
			_, err := f.d.Create(f.ctx, semantic.MustPath(fmt.Sprintf("o/p/q/leaf%02d", i)), nil)
			return err
		}))
		var want []string
		for i := range workers * 2 {
			want = append(want, fmt.Sprintf("leaf%02d", i))
		}
		f.requireChildren(f.path("o/p/q"), want...)
	})
	t.Run("SamePath", func(t *testing.T) {
		// Exactly one of many Creates of one path wins; the rest see ErrExist.
		t.Parallel()
		f := s.fixture(t)
		var mu sync.Mutex
		won := 0
		requireNoErrors(t, f.parallel(workers*2, func(i int) error {
			_, err := f.d.Create(f.ctx, semantic.MustPath("same/leaf"), nil)
			switch {
			case err == nil:
				mu.Lock()
				won++
				mu.Unlock()
				return nil
			case errors.Is(err, semantic.ErrExist):
				return nil
			}
			return err
		}))
		require.Equal(t, 1, won, "Creates of one path that succeeded")
		f.requireChildren(f.path("same"), "leaf")
	})
	t.Run("SameGroupFields", func(t *testing.T) {
		// Workers update different fields of one group at once; at the end
		// each field holds its worker's last write.
		t.Parallel()
		f := s.fixture(t)
		fields := f.concurrencyFields()
		if len(fields) < 2 {
			t.Skip("the driver honours fewer than two of the fields this subtest writes exactly")
		}
		g := f.create("one", nil)
		requireNoErrors(t, f.parallel(len(fields), func(w int) error {
			for r := range rounds {
				if err := g.Apply(f.ctx, fields[w](w, r)); err != nil {
					return err
				}
				if _, err := g.Resources(f.ctx); err != nil {
					return err
				}
			}
			return nil
		}))
		for w, mk := range fields {
			f.requireApplied(g, mk(w, rounds-1))
		}
	})
	t.Run("Churn", func(t *testing.T) {
		// Workers create, open, list and delete the same paths at once.
		// Each call either succeeds or fails with the kind the race
		// explains; afterwards Open and Children agree.
		t.Parallel()
		f := s.fixture(t)
		paths := []semantic.Path{f.path("churn/a"), f.path("churn/b")}
		f.create("churn", nil)
		requireNoErrors(t, f.parallel(workers, func(w int) error {
			for r := range rounds * 2 {
				p := paths[(w+r)%len(paths)]
				if _, err := f.d.Create(f.ctx, p, f.fullRequest(r%2)); err != nil && !errors.Is(err, semantic.ErrExist) {
					return fmt.Errorf("create %s: %w", p, err)
				}
				g, err := f.d.Open(f.ctx, p)
				if err != nil {
					if errors.Is(err, semantic.ErrNotExist) {
						continue
					}
					return fmt.Errorf("open %s: %w", p, err)
				}
				if _, err := f.d.Children(f.ctx, p.Parent()); err != nil {
					return fmt.Errorf("children of %s: %w", p.Parent(), err)
				}
				if _, err := g.Resources(f.ctx); err != nil && !errors.Is(err, semantic.ErrNotExist) {
					return fmt.Errorf("read back %s: %w", p, err)
				}
				if err := g.Delete(f.ctx, nil); err != nil && !errors.Is(err, semantic.ErrNotExist) {
					return fmt.Errorf("delete %s: %w", p, err)
				}
			}
			return nil
		}))
		listed := map[string]bool{}
		for _, k := range f.children(f.path("churn")) {
			listed[k.String()] = true
		}
		for _, p := range paths {
			_, err := f.d.Open(f.ctx, p)
			require.Equal(t, listed[p.String()], err == nil, "%s listed %v, but Open says %v", p, listed[p.String()], err)
		}
	})
}
