package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// Environment knobs of Differential.
const (
	// SeedEnv replays a run: the base seed of the sequences (each
	// sequence's own seed is the base plus its index, and is printed).
	SeedEnv = "CGSEM_SEED"
	// LongEnv, set to 1, runs many more and longer sequences.
	LongEnv = "CGSEM_LONG"
)

// seedFromEnv is CGSEM_SEED, or a fresh seed.
func seedFromEnv(t *testing.T) int64 {
	if s := os.Getenv(SeedEnv); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "%s=%q", SeedEnv, s)
		return v
	}
	return time.Now().UnixNano() % 1_000_000_000
}

// oracle returns the fake configured as tg's reference.
func (tg *Target) oracle(t *testing.T, real semantic.Driver) semantic.Driver {
	if tg.Oracle != nil {
		return tg.Oracle(t, real)
	}
	var unsupported []semantic.Feature
	caps := real.Capabilities()
	for _, f := range semantic.AllFeatures() {
		if !exact(caps, f) {
			unsupported = append(unsupported, f)
		}
	}
	d := fake.New(fake.Options{PageSize: tg.pageSize(), HostCPUs: tg.cpus(), HostMems: tg.mems(), Unsupported: unsupported})
	t.Cleanup(func() { d.Close() })
	return d
}

// Differential runs random operation sequences on tg's driver and on its
// oracle (the fake, configured with the same page size, host sets and
// unsupported features) in lockstep. After every operation both must have
// returned the same error kind, and both must agree on which groups exist,
// what each reads back, which children each has and which processes each
// holds (mapped through the pair of real processes the test made for each
// "slot": one for each driver, so neither driver's kill reaches the
// other's).
//
// The seed is printed; CGSEM_SEED replays a run and CGSEM_LONG=1 runs 200
// sequences of 100 operations instead of 20 of 30. Sequences avoid the
// differences the fake documents (it checks no setting against the
// parent's, and stops no process when it freezes): hierarchical settings
// (devices, CPU sets, CPU bandwidth) go only to leaves, and no command is
// started and no group thawed below a frozen group. A kill below a frozen
// group is the oracle's unless Target.FrozenKillBusy.
func Differential(t *testing.T, tg Target) {
	tg.require(t)
	seqs, ops := 20, 30
	if os.Getenv(LongEnv) == "1" {
		seqs, ops = 200, 100
	}
	seed := seedFromEnv(t)
	t.Logf("base seed %d: replay with %s=%d (a single sequence: %s=<its seed> -run '%s/^seq000-')", seed, SeedEnv, seed, SeedEnv, t.Name())
	for i := range seqs {
		s := seed + int64(i)
		t.Run(fmt.Sprintf("seq%03d-seed%d", i, s), func(t *testing.T) {
			w := newWorld(t, tg, s)
			w.run(ops)
		})
	}
}

// universe is every path a sequence touches: two levels, so leaves (which
// take hierarchical settings) never get children.
func universe() []semantic.Path {
	return []semantic.Path{
		semantic.MustPath("a"), semantic.MustPath("b"),
		semantic.MustPath("a/x"), semantic.MustPath("a/y"), semantic.MustPath("b/x"),
	}
}

type slot struct {
	id           int
	real, oracle *exec.Cmd
	realDone     chan struct{} // closed once Wait returned
	oracleDone   chan struct{}
}

func (s *slot) alive() bool {
	select {
	case <-s.realDone:
		return false
	case <-s.oracleDone:
		return false
	default:
		return true
	}
}

// world is one sequence: the two drivers, their handles, the process
// slots, and the little the generator must know to avoid documented
// differences.
type world struct {
	t      *testing.T
	tg     *Target
	ctx    context.Context
	rng    *rand.Rand
	real   semantic.Driver
	oracle semantic.Driver
	caps   semantic.Capabilities // features both honour exactly
	common []semantic.Feature    // resource features compared
	// differ are features whose defaults differ between the drivers: they
	// are compared on a group only once a request set them there.
	differ  map[semantic.Feature]string
	touched map[string]map[semantic.Feature]bool
	frozen  map[string]bool
	handles map[string][2]semantic.Group
	slots   []*slot
	history []string
}

func newWorld(t *testing.T, tg Target, seed int64) *world {
	w := &world{
		t:       t,
		tg:      &tg,
		ctx:     testContext(t),
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x636773656d)),
		differ:  map[semantic.Feature]string{},
		touched: map[string]map[semantic.Feature]bool{},
		frozen:  map[string]bool{},
		handles: map[string][2]semantic.Group{},
	}
	w.real = tg.newDriver(t)
	w.oracle = tg.oracle(t, w.real)
	rc, oc := w.real.Capabilities(), w.oracle.Capabilities()
	w.caps = semantic.Capabilities{}
	for _, f := range semantic.AllFeatures() {
		if exact(rc, f) && exact(oc, f) {
			w.caps[f] = rc[f]
			if slices.Contains(semantic.ResourceFeatures, f) {
				w.common = append(w.common, f)
			}
		}
	}
	// Killed before the harness's cleanups look for leaks.
	t.Cleanup(w.killSlots)
	w.probeDefaults()
	for range 3 {
		w.newSlot()
	}
	return w
}

// probeDefaults compares what a bare group reads back on each driver: a
// backend's defaults (v1's soft limit is max where v2's memory.low is 0)
// are not the semantics under test, so such features are compared only
// where a request has set them.
func (w *world) probeDefaults() {
	p := semantic.MustPath("probe")
	gr, err := w.real.Create(w.ctx, p, nil)
	require.NoError(w.t, err)
	go_, err := w.oracle.Create(w.ctx, p, nil)
	require.NoError(w.t, err)
	rr, err := gr.Resources(w.ctx)
	require.NoError(w.t, err)
	ro, err := go_.Resources(w.ctx)
	require.NoError(w.t, err)
	for _, f := range w.common {
		if d := diffResources(ro, rr, []semantic.Feature{f}); d != "" {
			w.differ[f] = d
			w.t.Logf("defaults differ, compared only once set: %s", d)
		}
	}
	require.NoError(w.t, gr.Delete(w.ctx, nil))
	require.NoError(w.t, go_.Delete(w.ctx, nil))
}

func (w *world) newSlot() *slot {
	s := &slot{id: len(w.slots)}
	s.real, s.realDone = w.sleeper(nil)
	s.oracle, s.oracleDone = w.sleeper(nil)
	w.slots = append(w.slots, s)
	return s
}

// sleeper starts a process that waits to be killed, directly or (with g)
// through Group.Start, and reaps it when it ends.
func (w *world) sleeper(start func(*exec.Cmd) error) (*exec.Cmd, chan struct{}) {
	cmd := sleeperCommand()
	var err error
	if start != nil {
		err = start(cmd)
	} else {
		err = cmd.Start()
	}
	done := make(chan struct{})
	if err != nil {
		close(done)
		return nil, done
	}
	go func() {
		cmd.Wait()
		close(done)
	}()
	return cmd, done
}

func (w *world) killSlots() {
	// A process in a frozen group cannot die: empty every group first
	// (Kill thaws what it empties).
	tidy(w.t, w.real)
	for _, s := range w.slots {
		for _, pair := range []struct {
			cmd  *exec.Cmd
			done chan struct{}
		}{{s.real, s.realDone}, {s.oracle, s.oracleDone}} {
			if pair.cmd == nil {
				continue
			}
			pair.cmd.Process.Kill()
			select {
			case <-pair.done:
			case <-time.After(10 * time.Second):
				w.t.Errorf("slot %d: pid %d not reaped 10s after SIGKILL", s.id, pair.cmd.Process.Pid)
			}
		}
	}
}

// reap waits for every slot process that has died (a kill of its group)
// to be reaped, so the model never offers its pid again: it could belong
// to someone else by then.
func (w *world) reap() {
	for _, s := range w.slots {
		for _, pair := range []struct {
			cmd  *exec.Cmd
			done chan struct{}
		}{{s.real, s.realDone}, {s.oracle, s.oracleDone}} {
			if pair.cmd == nil || !dead(pair.cmd.Process.Pid) {
				continue
			}
			select {
			case <-pair.done:
			case <-time.After(10 * time.Second):
				w.t.Fatalf("slot %d: pid %d died but was not reaped", s.id, pair.cmd.Process.Pid)
			}
		}
	}
}

// dead reports whether pid has exited (a zombie, or gone).
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func (w *world) fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("%s\noperations so far:\n  %s", fmt.Sprintf(format, args...), strings.Join(w.history, "\n  "))
}

func (w *world) pick(ps []semantic.Path) semantic.Path { return ps[w.rng.IntN(len(ps))] }

// effectivelyFrozen: p or an ancestor was frozen through the API.
func (w *world) effectivelyFrozen(p semantic.Path) bool {
	for i := 1; i <= p.Len(); i++ {
		if w.frozen[p.Prefix(i).String()] {
			return true
		}
	}
	return false
}

func (w *world) ancestorFrozen(p semantic.Path) bool {
	return p.Len() > 0 && w.effectivelyFrozen(p.Parent())
}

// forget drops what the model knows of p's subtree, which was deleted.
func (w *world) forget(p semantic.Path) {
	for k := range w.frozen {
		if q, err := semantic.ParsePath(k); err == nil && q.HasPrefix(p) {
			delete(w.frozen, k)
		}
	}
	for k := range w.touched {
		if q, err := semantic.ParsePath(k); err == nil && q.HasPrefix(p) {
			delete(w.touched, k)
		}
	}
}

func (w *world) run(ops int) {
	for i := range ops {
		w.step(i)
		w.reap()
		w.compare()
	}
}

// op is one operation, run on a driver (index 0 real, 1 oracle).
type op struct {
	name string
	run  func(i int, d semantic.Driver) error
	// after updates the model when both drivers succeeded.
	after func()
	// inexpressible: the request sets only features both drivers declare
	// exact, so an ErrNotSupported from the real driver can only mean a
	// value its backend cannot hold.
	inexpressible bool
	// frozenKill, when set, says before the run whether the real driver
	// must refuse with ErrBusy (Target.FrozenKillBusy): the oracle is not
	// run then, so the comparison after proves nothing changed.
	frozenKill func() bool
}

func (w *world) step(i int) {
	p := w.pick(universe())
	var o op
	switch n := w.rng.IntN(100); {
	case n < 15:
		o = w.opCreate(p)
	case n < 40:
		o = w.opApply(p)
	case n < 50:
		o = w.opAdd(p)
	case n < 55:
		o = w.opStart(p)
	case n < 62:
		o = w.opFreeze(p, true)
	case n < 68:
		o = w.opFreeze(p, false)
	case n < 72:
		o = w.opKill(p)
	case n < 85:
		o = w.opDelete(p)
	case n < 92:
		o = w.opOpen(p)
	case n < 97:
		o = w.opChildren(p)
	default:
		o = w.opOnRoot()
	}
	if o.run == nil {
		return // the generator stepped around a documented difference
	}
	var errs [2]error
	mustRefuse := o.frozenKill != nil && o.frozenKill()
	errs[0] = o.run(0, w.real)
	if mustRefuse {
		if !errors.Is(errs[0], semantic.ErrBusy) {
			w.fatalf("%s below a frozen group: %s says %v (%s), want ErrBusy", o.name, w.real.Name(), errs[0], kindOf(errs[0]))
		}
		w.history = append(w.history, fmt.Sprintf("%02d %s -> %s (refused by %s only: %v)", i, o.name, kindOf(errs[0]), w.real.Name(), errs[0]))
		w.t.Logf("%s: refused below a frozen group: %v", o.name, errs[0])
		return
	}
	if o.inexpressible && errors.Is(errs[0], semantic.ErrNotSupported) {
		// The real backend cannot hold this value of a feature it
		// supports (v1: a swap limit without a memory limit) and said so
		// before changing anything; the oracle would take it. Not run on
		// the oracle, so the comparison below proves nothing changed.
		w.history = append(w.history, fmt.Sprintf("%02d %s -> %s (refused by %s only: %v)", i, o.name, kindOf(errs[0]), w.real.Name(), errs[0]))
		w.t.Logf("%s: refused as inexpressible: %v", o.name, errs[0])
		return
	}
	errs[1] = o.run(1, w.oracle)
	w.history = append(w.history, fmt.Sprintf("%02d %s -> %s / %s", i, o.name, kindOf(errs[0]), kindOf(errs[1])))
	if kindOf(errs[0]) != kindOf(errs[1]) {
		w.fatalf("%s: %s says %v (%s), the oracle %v (%s)", o.name, w.real.Name(), errs[0], kindOf(errs[0]), errs[1], kindOf(errs[1]))
	}
	if errs[0] == nil && o.after != nil {
		o.after()
	}
}

// handle returns a group handle for p on driver k: the one an earlier
// Create or Open gave (a handle names a path, whatever is there now), or
// a fresh Open.
func (w *world) handle(k int, d semantic.Driver, p semantic.Path) (semantic.Group, error) {
	if g := w.handles[p.String()][k]; g != nil {
		return g, nil
	}
	g, err := d.Open(w.ctx, p)
	if err == nil {
		h := w.handles[p.String()]
		h[k] = g
		w.handles[p.String()] = h
	}
	return g, err
}

func (w *world) onGroup(k int, d semantic.Driver, p semantic.Path, fn func(g semantic.Group) error) error {
	g, err := w.handle(k, d, p)
	if err != nil {
		return err
	}
	return fn(g)
}

func (w *world) touch(p semantic.Path, res *semantic.Resources) {
	if res == nil {
		return
	}
	m := w.touched[p.String()]
	if m == nil {
		m = map[semantic.Feature]bool{}
		w.touched[p.String()] = m
	}
	for _, f := range res.Fields() {
		m[f] = true
	}
}

func (w *world) opCreate(p semantic.Path) op {
	var res *semantic.Resources
	valid := true
	if w.rng.IntN(4) > 0 {
		valid = w.rng.IntN(5) > 0
		res = w.genRes(p, valid)
	}
	return op{
		name: fmt.Sprintf("create %s %v", p, res),
		run: func(k int, d semantic.Driver) error {
			g, err := d.Create(w.ctx, p, res)
			if err == nil {
				h := w.handles[p.String()]
				h[k] = g
				w.handles[p.String()] = h
			}
			return err
		},
		after:         func() { w.touch(p, res) },
		inexpressible: res != nil && valid,
	}
}

func (w *world) opApply(p semantic.Path) op {
	valid := w.rng.IntN(4) > 0
	res := w.genRes(p, valid)
	return op{
		name: fmt.Sprintf("apply %s %v", p, res),
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, p, func(g semantic.Group) error { return g.Apply(w.ctx, res) })
		},
		after:         func() { w.touch(p, res) },
		inexpressible: valid,
	}
}

// bogusPid is above the kernel's PID_MAX_LIMIT: no process has it.
const bogusPid = 1<<22 + 4242

func (w *world) opAdd(p semantic.Path) op {
	if w.rng.IntN(3) == 0 && !w.tg.BusyRoot {
		p = semantic.Root
	}
	var live []*slot
	for _, s := range w.slots {
		if s.real != nil && s.oracle != nil && s.alive() {
			live = append(live, s)
		}
	}
	if len(live) == 0 || w.rng.IntN(8) == 0 {
		pid := bogusPid
		if _, err := w.oracle.Open(w.ctx, p); w.rng.IntN(2) == 0 && err == nil {
			// Only on a group that exists: with two faults, v1 reports the
			// invalid pid and the fake the missing group, and neither
			// order is specified.
			pid = 0
		}
		return op{
			name: fmt.Sprintf("add process %d to %s", pid, p.Display()),
			run: func(k int, d semantic.Driver) error {
				return w.onGroup(k, d, p, func(g semantic.Group) error { return g.AddProcess(w.ctx, pid) })
			},
		}
	}
	s := live[w.rng.IntN(len(live))]
	return op{
		name: fmt.Sprintf("add slot %d to %s", s.id, p.Display()),
		run: func(k int, d semantic.Driver) error {
			cmd := s.real
			if k == 1 {
				cmd = s.oracle
			}
			return w.onGroup(k, d, p, func(g semantic.Group) error { return g.AddProcess(w.ctx, cmd.Process.Pid) })
		},
	}
}

func (w *world) opStart(p semantic.Path) op {
	if !exact(w.caps, semantic.StartInside) || w.effectivelyFrozen(p) {
		// v1 refuses to start into a frozen group (its starting thread
		// would freeze); the fake starts anyway.
		return op{}
	}
	s := &slot{id: len(w.slots)}
	return op{
		name: fmt.Sprintf("start slot %d in %s", s.id, p),
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, p, func(g semantic.Group) error {
				var err error
				cmd, done := w.sleeper(func(c *exec.Cmd) error {
					err = g.Start(w.ctx, c)
					return err
				})
				if k == 0 {
					s.real, s.realDone = cmd, done
				} else {
					s.oracle, s.oracleDone = cmd, done
				}
				return err
			})
		},
		after: func() { w.slots = append(w.slots, s) },
	}
}

func (w *world) opFreeze(p semantic.Path, freeze bool) op {
	if !exact(w.caps, semantic.Freeze) {
		return op{}
	}
	if !freeze && w.ancestorFrozen(p) {
		// v1 cannot thaw below a frozen group (ErrBusy); the fake can.
		return op{}
	}
	name := "thaw"
	if freeze {
		name = "freeze"
	}
	return op{
		name: name + " " + p.String(),
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, p, func(g semantic.Group) error {
				if freeze {
					return g.Freeze(w.ctx)
				}
				return g.Thaw(w.ctx)
			})
		},
		after: func() { w.frozen[p.String()] = freeze },
	}
}

func (w *world) opKill(p semantic.Path) op {
	return op{
		name:       "kill " + p.String(),
		frozenKill: w.frozenKill(p),
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, p, func(g semantic.Group) error { return g.Kill(w.ctx) })
		},
		after: func() {
			for k := range w.frozen {
				if q, err := semantic.ParsePath(k); err == nil && q.HasPrefix(p) {
					w.frozen[k] = false // Kill thaws the subtree it emptied
				}
			}
		},
	}
}

// frozenKill is the frozenKill of a kill of p's subtree: on a
// Target.FrozenKillBusy driver (v1, where a task below a frozen group
// cannot die until that group thaws, and Kill does not thaw what is above
// the group it was given) such a kill must be refused while the subtree
// holds a process; the fake, like cgroup2, kills at once.
func (w *world) frozenKill(p semantic.Path) func() bool {
	if !w.tg.FrozenKillBusy || !w.ancestorFrozen(p) {
		return nil
	}
	return func() bool {
		for _, q := range universe() {
			if !q.HasPrefix(p) {
				continue
			}
			g, err := w.oracle.Open(w.ctx, q)
			if err != nil {
				continue // not there: nothing to kill
			}
			if pids, err := g.Processes(w.ctx); err == nil && len(pids) > 0 {
				return true
			}
		}
		return false
	}
}

func (w *world) opDelete(p semantic.Path) op {
	opts := &semantic.DeleteOptions{Kill: w.rng.IntN(2) == 0, Recursive: w.rng.IntN(2) == 0}
	if w.rng.IntN(6) == 0 {
		opts = nil
	}
	var frozenKill func() bool
	if opts != nil && opts.Kill {
		frozenKill = w.frozenKill(p)
	}
	return op{
		name:       fmt.Sprintf("delete %s %+v", p, opts),
		frozenKill: frozenKill,
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, p, func(g semantic.Group) error { return g.Delete(w.ctx, opts) })
		},
		after: func() { w.forget(p) },
	}
}

func (w *world) opOpen(p semantic.Path) op {
	return op{
		name: "open " + p.String(),
		run: func(k int, d semantic.Driver) error {
			g, err := d.Open(w.ctx, p)
			if err == nil {
				h := w.handles[p.String()]
				h[k] = g
				w.handles[p.String()] = h
			}
			return err
		},
	}
}

func (w *world) opChildren(p semantic.Path) op {
	var got [2][]semantic.Path
	return op{
		name: "children " + p.String(),
		run: func(k int, d semantic.Driver) error {
			var err error
			got[k], err = d.Children(w.ctx, p)
			return err
		},
		after: func() {
			if !slices.EqualFunc(got[0], got[1], semantic.Path.Equal) {
				w.fatalf("children of %s: %v, the oracle %v", p, got[0], got[1])
			}
		},
	}
}

// opOnRoot tries what the root refuses.
func (w *world) opOnRoot() op {
	calls := []struct {
		name string
		fn   func(g semantic.Group) error
	}{
		{"apply", func(g semantic.Group) error {
			return g.Apply(w.ctx, &semantic.Resources{Pids: &semantic.Pids{Max: ptr[semantic.Count](10)}})
		}},
		{"freeze", func(g semantic.Group) error { return g.Freeze(w.ctx) }},
		{"kill", func(g semantic.Group) error { return g.Kill(w.ctx) }},
		{"delete", func(g semantic.Group) error { return g.Delete(w.ctx, nil) }},
		{"read back", func(g semantic.Group) error { _, err := g.Resources(w.ctx); return err }},
	}
	c := calls[w.rng.IntN(len(calls))]
	return op{
		name: c.name + " on the root",
		run: func(k int, d semantic.Driver) error {
			return w.onGroup(k, d, semantic.Root, c.fn)
		},
	}
}

// compare checks that both drivers agree on every path of the universe
// and on the root.
func (w *world) compare() {
	w.t.Helper()
	for _, p := range append([]semantic.Path{semantic.Root}, universe()...) {
		gr, er := w.real.Open(w.ctx, p)
		go_, eo := w.oracle.Open(w.ctx, p)
		if kindOf(er) != kindOf(eo) {
			w.fatalf("open %s: %v, the oracle %v", p.Display(), er, eo)
		}
		if er != nil {
			if !errors.Is(er, semantic.ErrNotExist) {
				w.fatalf("open %s: %v", p.Display(), er)
			}
			continue
		}
		w.compareProcs(p, gr, go_)
		kr, err1 := w.real.Children(w.ctx, p)
		ko, err2 := w.oracle.Children(w.ctx, p)
		if err1 != nil || err2 != nil || !slices.EqualFunc(kr, ko, semantic.Path.Equal) {
			w.fatalf("children of %s: %v (%v), the oracle %v (%v)", p.Display(), kr, err1, ko, err2)
		}
		if p.IsRoot() {
			continue
		}
		rr, err1 := gr.Resources(w.ctx)
		ro, err2 := go_.Resources(w.ctx)
		if err1 != nil || err2 != nil {
			w.fatalf("read back %s: %v, the oracle %v", p, err1, err2)
		}
		var fs []semantic.Feature
		for _, f := range w.common {
			if w.differ[f] == "" || w.touched[p.String()][f] {
				fs = append(fs, f)
			}
		}
		if d := diffResources(ro, rr, fs); d != "" {
			w.fatalf("read back %s: %s (%s vs the oracle)", p, d, w.real.Name())
		}
	}
}

func (w *world) compareProcs(p semantic.Path, gr, go_ semantic.Group) {
	pr, err1 := gr.Processes(w.ctx)
	po, err2 := go_.Processes(w.ctx)
	if err1 != nil || err2 != nil {
		w.fatalf("processes of %s: %v, the oracle %v", p.Display(), err1, err2)
	}
	slotsOf := func(pids []int, k int) []int {
		var out []int
		for _, pid := range pids {
			id := -1
			for _, s := range w.slots {
				cmd := s.real
				if k == 1 {
					cmd = s.oracle
				}
				if cmd != nil && cmd.Process.Pid == pid {
					id = s.id
				}
			}
			if id < 0 {
				w.fatalf("processes of %s on driver %d: pid %d is no process the test made", p.Display(), k, pid)
			}
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	if a, b := slotsOf(pr, 0), slotsOf(po, 1); !slices.Equal(a, b) {
		w.fatalf("processes of %s: slots %v, the oracle's %v", p.Display(), a, b)
	}
}

// genRes makes a request for p: valid ones only set features both drivers
// honour exactly, in ranges both take; hierarchical settings only on
// leaves. Invalid ones break one rule that both must refuse.
func (w *world) genRes(p semantic.Path, valid bool) *semantic.Resources {
	if !valid {
		return w.genInvalid()
	}
	leaf := p.Len() == 2
	var pool []semantic.Feature
	for _, f := range w.common {
		switch f {
		case semantic.DevicesFeature, semantic.CPUSetCPUs, semantic.CPUSetMems, semantic.CPUMaxFeature:
			if !leaf {
				continue
			}
		case semantic.IOLimits:
			if w.tg.Harness.IODevice == nil {
				continue
			}
		case semantic.HugeTLB:
			continue
		}
		pool = append(pool, f)
	}
	r := &semantic.Resources{}
	if len(pool) == 0 {
		return r
	}
	n := 1 + w.rng.IntN(min(3, len(pool)))
	for _, i := range w.rng.Perm(len(pool))[:n] {
		w.setField(r, pool[i])
	}
	return r
}

func (w *world) setField(r *semantic.Resources, f semantic.Feature) {
	const MiB = semantic.MiB
	rng := w.rng
	oneOf := func(vs ...semantic.Bytes) *semantic.Bytes { return ptr(vs[rng.IntN(len(vs))]) }
	mem := func() *semantic.Memory {
		if r.Memory == nil {
			r.Memory = &semantic.Memory{}
		}
		return r.Memory
	}
	cpu := func() *semantic.CPU {
		if r.CPU == nil {
			r.CPU = &semantic.CPU{}
		}
		return r.CPU
	}
	io := func() *semantic.IO {
		if r.IO == nil {
			r.IO = &semantic.IO{}
		}
		return r.IO
	}
	subset := func(all semantic.CPUSet) semantic.CPUSet {
		var out semantic.CPUSet
		for _, c := range all {
			if rng.IntN(2) == 0 {
				out = append(out, c)
			}
		}
		if len(out) == 0 {
			out = semantic.CPUSet{all[rng.IntN(len(all))]}
		}
		return out
	}
	switch f {
	case semantic.MemoryMax:
		mem().Max = oneOf(64*MiB+semantic.Bytes(rng.IntN(int(MiB))), 128*MiB, semantic.GiB+7, semantic.Unlimited)
	case semantic.MemoryLow:
		mem().Low = oneOf(0, 16*MiB+3, 64*MiB, semantic.Unlimited)
	case semantic.MemorySwap:
		mem().Swap = oneOf(0, 32*MiB+9, 128*MiB, semantic.Unlimited)
		if mem().Max == nil && rng.IntN(4) > 0 {
			// Mostly with a memory limit: v1 has no swap limit without one.
			mem().Max = oneOf(64*MiB+semantic.Bytes(rng.IntN(int(MiB))), 128*MiB, semantic.GiB+7)
		}
	case semantic.CPUWeight:
		cpu().Weight = ptr(uint64(1 + rng.IntN(semantic.MaxWeight)))
	case semantic.CPUMaxFeature:
		cpus := []float64{0, 0.25, 0.5 + 1.0/3, 1, 2}[rng.IntN(5)]
		period := []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond, time.Second}[rng.IntN(4)]
		cpu().Max = &semantic.CPUMax{CPUs: cpus, Period: period}
	case semantic.CPUSetCPUs:
		cpu().Cpus = subset(w.tg.cpus())
	case semantic.CPUSetMems:
		cpu().Mems = subset(w.tg.mems())
	case semantic.IOWeight:
		io().Weight = ptr(uint64(1 + rng.IntN(1000)))
	case semantic.IOLimits:
		dev := w.tg.Harness.IODevice
		fig := func() uint64 { return []uint64{0, 0, 1 << 20, 100, 5 << 20}[rng.IntN(5)] }
		io().Limits = []semantic.IOLimit{{Major: dev[0], Minor: dev[1], ReadBPS: fig(), WriteBPS: fig(), ReadIOPS: fig(), WriteIOPS: fig()}}
	case semantic.PidsMax:
		// Far above the few tasks a sequence makes: a real fork must not hit
		// a limit the fake does not enforce.
		r.Pids = &semantic.Pids{Max: ptr([]semantic.Count{64, 1000, semantic.Unlimited}[rng.IntN(3)])}
	case semantic.DevicesFeature:
		if rng.IntN(4) == 0 {
			r.Devices = &semantic.Devices{Default: semantic.AllowByDefault}
			return
		}
		devs := []semantic.DeviceRule{
			{Type: semantic.CharDevice, Major: 1, Minor: 3}, {Type: semantic.CharDevice, Major: 1, Minor: 5},
			{Type: semantic.CharDevice, Major: 1, Minor: 8}, {Type: semantic.CharDevice, Major: 136, Minor: semantic.Wildcard},
			{Type: semantic.BlockDevice, Major: 7, Minor: semantic.Wildcard}, {Type: semantic.CharDevice, Major: 5, Minor: 0},
		}
		d := &semantic.Devices{Default: semantic.DenyByDefault}
		for _, i := range rng.Perm(len(devs))[:rng.IntN(4)] {
			rule := devs[i]
			rule.Allow = true
			rule.Access = semantic.Access(1 + rng.IntN(int(semantic.AllAccess)))
			d.Rules = append(d.Rules, rule)
		}
		r.Devices = d
	}
}

// genInvalid makes a request both drivers must refuse, each for one
// reason: out of range, unsupported, or refused by the host when written.
func (w *world) genInvalid() *semantic.Resources {
	type bad struct {
		need semantic.Feature
		res  *semantic.Resources
	}
	host := w.tg.cpus()
	cands := []bad{
		{semantic.CPUWeight, &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](0)}}},
		{semantic.CPUWeight, &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](semantic.MaxWeight + 1)}}},
		{semantic.CPUMaxFeature, &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1, Period: 100 * time.Microsecond}}}},
		{semantic.CPUSetCPUs, &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{host[len(host)-1] + 1 + w.rng.IntN(8)}}}},
		{semantic.IOWeight, &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](0)}}},
		{semantic.DevicesFeature, &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault,
			Rules: []semantic.DeviceRule{{Allow: true, Type: semantic.CharDevice, Major: semantic.MaxMajor + 1, Minor: 0, Access: semantic.Read}}}}},
		{"", &semantic.Resources{Devices: &semantic.Devices{Default: "maybe"}}},
	}
	// A feature neither honours: both refuse it as unsupported.
	for _, f := range semantic.ResourceFeatures {
		if !exact(w.caps, f) {
			r := &semantic.Resources{}
			switch f {
			case semantic.MemoryHigh:
				r.Memory = &semantic.Memory{High: ptr(64 * semantic.MiB)}
			case semantic.MemoryMin:
				r.Memory = &semantic.Memory{Min: ptr(8 * semantic.MiB)}
			case semantic.HugeTLB:
				r.HugeTLB = []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: 4 * semantic.MiB}}
			default:
				continue
			}
			cands = append(cands, bad{"", r})
		}
	}
	for {
		c := cands[w.rng.IntN(len(cands))]
		if c.need == "" || exact(w.caps, c.need) {
			return c.res
		}
	}
}
