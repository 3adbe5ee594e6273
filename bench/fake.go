package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// fakeWorkloads measures the in-memory driver: what a program's tests pay
// per operation when they run against it.
func fakeWorkloads(ctx context.Context, b *bench) []section {
	s := section{
		Title: "fake driver",
		Desc:  "Operations per second of the in-memory driver (drivers/fake), one goroutine.",
	}
	d, skip := openDriver("fake", semantic.Options{})
	if d == nil {
		s.Notes = append(s.Notes, skip)
		return []section{s}
	}
	defer d.Close()
	res := v1Resources()
	var g semantic.Group
	setupGroup := func(ctx context.Context) (err error) {
		g, err = d.Create(ctx, semantic.MustPath("bench/held"), res)
		return err
	}
	teardownGroup := func() error {
		if g == nil {
			return nil
		}
		return g.Delete(context.Background(), nil)
	}
	ops := []impl{
		{name: "create + delete (the v1 lifecycle's resources)", op: func(ctx context.Context, i int) error {
			g, err := d.Create(ctx, semantic.MustPath(fmt.Sprintf("bench/g%d", i)), res)
			if err != nil {
				return err
			}
			return g.Delete(ctx, nil)
		}},
		{name: "apply memory max", setup: setupGroup, teardown: teardownGroup, op: func(ctx context.Context, i int) error {
			return g.Apply(ctx, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(128+i%64) * semantic.MiB)}})
		}},
		{name: "resources (read back)", setup: setupGroup, teardown: teardownGroup, op: func(ctx context.Context, _ int) error {
			_, err := g.Resources(ctx)
			return err
		}},
		{name: "stats", setup: setupGroup, teardown: teardownGroup, op: func(ctx context.Context, _ int) error {
			_, err := g.Stats(ctx)
			return err
		}},
	}
	s.Table = [][]string{{"operation", "n", "median", "p90", "ops/s (1 / mean)"}}
	// One at a time: the group the later ones share is made per operation.
	for _, op := range ops {
		if ctx.Err() != nil {
			break
		}
		n := max(200, int(20000*b.factor))
		r := run(ctx, plan{warm: n / 10, rounds: 5, per: n / 5}, []impl{op})[0]
		if r.err != nil {
			s.Table = append(s.Table, []string{op.name, "-", "-", "-", "error: " + r.err.Error()})
			continue
		}
		sum := summarize(r.times)
		s.Table = append(s.Table, []string{op.name, fmt.Sprint(sum.N), fmtDur(sum.Median), fmtDur(sum.P90),
			fmt.Sprintf("%.0f", float64(time.Second)/float64(mean(r.times)))})
	}
	b.progress(s)
	return []section{s}
}
