package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// summary is what the table shows of a set of timings.
type summary struct {
	N      int
	Median time.Duration
	P90    time.Duration
	Min    time.Duration
}

// summarize computes the median (the mean of the two middle values for an
// even count), the 90th percentile (nearest rank) and the minimum. It
// sorts a copy, so the caller's order is kept.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{N: n, Median: med, P90: s[nearestRank(n, 90)], Min: s[0]}
}

// mean is the total over the count: the average cost, slow outliers
// included.
func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t / time.Duration(len(ds))
}

// nearestRank is the index of the p-th percentile of n sorted values:
// the smallest value with at least p% of the values at or below it.
func nearestRank(n, p int) int {
	r := (p*n + 99) / 100 // ceil(p*n/100)
	return min(max(r, 1), n) - 1
}

// impl is one contender in a workload: the raw floor, cgsem or a peer.
// setup and teardown are not timed; op is, once per iteration.
type impl struct {
	name string
	// skip, when not "", says why this contender has no figure here (a
	// driver not built yet, a peer that cannot do the job on this host);
	// the row shows it instead of a number.
	skip  string
	setup func(ctx context.Context) error
	// prep, when set, runs before each op, untimed: per-iteration
	// material such as a fresh process to put in the group.
	prep     func(ctx context.Context, i int) error
	op       func(ctx context.Context, i int) error
	teardown func() error
	// note is shown beside the figures: how the contender does the job.
	note string
}

// result is an impl's outcome in one workload.
type result struct {
	name  string
	skip  string
	err   error
	times []time.Duration
	note  string
}

// plan says how many times to run each contender: warm iterations first
// (not recorded), then rounds of per iterations. Contenders take turns
// round by round, so a disturbance on the machine (another process, page
// cache writeback) spreads over all of them instead of landing on one.
type plan struct {
	warm, rounds, per int
}

func (p plan) scaled(f float64) plan {
	s := func(n int) int { return max(1, int(float64(n)*f)) }
	return plan{warm: s(p.warm), rounds: max(1, p.rounds), per: s(p.per)}
}

// run measures every contender and returns a result per contender, in the
// given order. A contender that fails stops being measured and keeps its
// error; the others go on. teardown runs for every contender that was not
// skipped, also when ctx ends.
func run(ctx context.Context, p plan, impls []impl) []result {
	res := make([]result, len(impls))
	live := make([]bool, len(impls))
	next := make([]int, len(impls)) // iteration index, unique per contender
	for i, im := range impls {
		res[i] = result{name: im.name, skip: im.skip, note: im.note}
		if im.skip != "" {
			continue
		}
		if im.setup != nil {
			if err := im.setup(ctx); err != nil {
				res[i].err = fmt.Errorf("setup: %w", err)
				continue
			}
		}
		live[i] = true
	}
	defer func() {
		for i, im := range impls {
			// Setup may have failed half way: teardown copes with a
			// partial state, so it runs for every contender measured.
			if im.skip != "" || im.teardown == nil {
				continue
			}
			if err := im.teardown(); err != nil && res[i].err == nil {
				res[i].err = fmt.Errorf("teardown: %w", err)
			}
		}
	}()
	step := func(i int, record bool) {
		if p := impls[i].prep; p != nil {
			if err := call(ctx, p, next[i]); err != nil {
				res[i].err = fmt.Errorf("prepare iteration %d: %w", next[i], err)
				live[i] = false
				return
			}
		}
		t0 := time.Now()
		err := call(ctx, impls[i].op, next[i])
		d := time.Since(t0)
		next[i]++
		if err != nil {
			res[i].err = err
			live[i] = false
			return
		}
		if record {
			res[i].times = append(res[i].times, d)
		}
	}
	for i := range impls {
		for range p.warm {
			if !live[i] || ctx.Err() != nil {
				break
			}
			step(i, false)
		}
	}
	for range p.rounds {
		for i := range impls {
			for range p.per {
				if !live[i] || ctx.Err() != nil {
					break
				}
				step(i, true)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		for i := range res {
			if live[i] && res[i].err == nil {
				res[i].err = err
			}
		}
	}
	return res
}

// call runs op and turns a panic (a peer's nil dereference) into an error,
// so one contender's crash neither ends the run nor skips the cleanup.
func call(ctx context.Context, op func(context.Context, int) error, i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return op(ctx, i)
}
