package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// Concurrency runs many goroutines against one driver at once and checks:
//
//   - OverlappingGroups: workers create, apply to, read, add processes to,
//     list and delete groups of one small tree (parents and children in
//     flight together). The test serializes the operations that touch the
//     same groups with its own locks, ordered by path so the test itself
//     cannot deadlock, and keeps a model: every call must return what the
//     model predicts, every read-back must equal the merge of the
//     successful applies, and at the end every group reads back its last
//     successful apply and holds exactly its processes. The settings are
//     the controller fields without a parent-child rule, or the device
//     list where the driver has none of those; with Target.LeafRule the
//     model predicts cgroup v2's refusals of processes in inner groups.
//   - SameGroupMemoryAndSwap: one worker moves memory.max, another
//     memory.swap of the same group, unserialized. Both are read-modify-
//     writes of memory.memsw.limit_in_bytes on v1; at the end each holds
//     its worker's last value, or an update was lost.
//
// Every call has a deadline; workers not done by then are a deadlock.
// Afterwards nothing is left: no group (the harness's leak check), no
// process, and the process has no more descriptors and goroutines than
// before the driver was opened.
func Concurrency(t *testing.T, tg Target) {
	tg.require(t)
	t.Run("OverlappingGroups", func(t *testing.T) { overlapping(t, tg) })
	t.Run("SameGroupMemoryAndSwap", func(t *testing.T) { memoryAndSwap(t, tg) })
}

// resources baseline: descriptors and goroutines before the driver.
type baseline struct {
	fds, goroutines int
}

func takeBaseline() baseline {
	return baseline{fds: countFds(), goroutines: runtime.NumGoroutine()}
}

func countFds() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// checkAtEnd registers, before the driver is made, the cleanup that runs
// after every other (the harness's close and root removal included) and
// waits a little for descriptors and goroutines to come back to the
// baseline: closing and exiting are not instant, but they end.
func (b baseline) checkAtEnd(t *testing.T) {
	t.Cleanup(func() { b.requireNoLeaks(t) })
}

func (b baseline) requireNoLeaks(t *testing.T) {
	t.Helper()
	var fds, gs int
	for range 100 {
		fds, gs = countFds(), runtime.NumGoroutine()
		if fds <= b.fds && gs <= b.goroutines {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Errorf("leak: %d descriptors (was %d), %d goroutines (was %d)\n%s", fds, b.fds, gs, b.goroutines, buf[:n])
}

// runWorkers runs fn(i) for n workers at once and fails the test if they
// have not all returned within the deadline.
func runWorkers(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	close(start)
	select {
	case <-done:
	case <-time.After(deadline + 30*time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("%d workers not done after %v: deadlock\n%s", n, deadline, buf[:runtime.Stack(buf, true)])
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// tree is the overlapping groups the workers share, sorted: the test locks
// groups in this order.
func tree() []semantic.Path {
	return []semantic.Path{
		semantic.MustPath("a"), semantic.MustPath("a/b"), semantic.MustPath("a/b/c"),
		semantic.MustPath("a/d"), semantic.MustPath("e"),
	}
}

// model is what the test knows of each group, guarded by the group's lock.
type modelGroup struct {
	mu     sync.Mutex
	exists bool
	want   *semantic.Resources // merge of the successful requests
	fields map[semantic.Feature]bool
	procs  []*exec.Cmd
}

type overlap struct {
	t      *testing.T
	tg     *Target
	d      semantic.Driver
	ctx    context.Context
	groups map[string]*modelGroup
	fields []semantic.Feature

	pmu   sync.Mutex
	procs []*exec.Cmd // every process started, for the final kill
	waits sync.WaitGroup
}

// lock takes the locks of ps in tree order and returns the unlock.
func (o *overlap) lock(ps ...semantic.Path) func() {
	slices.SortFunc(ps, func(a, b semantic.Path) int { return cmpStr(a.String(), b.String()) })
	ps = slices.CompactFunc(ps, semantic.Path.Equal)
	for _, p := range ps {
		o.groups[p.String()].mu.Lock()
	}
	return func() {
		for _, p := range slices.Backward(ps) {
			o.groups[p.String()].mu.Unlock()
		}
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// subtree lists p and its descendants in tree.
func subtree(p semantic.Path) []semantic.Path {
	var out []semantic.Path
	for _, q := range tree() {
		if q.HasPrefix(p) {
			out = append(out, q)
		}
	}
	return out
}

func prefixes(p semantic.Path) []semantic.Path {
	var out []semantic.Path
	for i := 1; i <= p.Len(); i++ {
		out = append(out, p.Prefix(i))
	}
	return out
}

// concurrencyFields are the exact features without a parent-child rule
// on any backend (a child's memory limit may exceed its parent's), so the
// groups of the tree can be set independently. Where none is (cgroup2
// with no controllers handed down), the device list is the witness: a
// driver that can only filter devices there keeps each group's list on
// its own (v2's eBPF programs, one per group); v1, whose device lists
// must narrow down the tree, always has a controller field.
func concurrencyFields(caps semantic.Capabilities) []semantic.Feature {
	var out []semantic.Feature
	for _, f := range []semantic.Feature{semantic.PidsMax, semantic.CPUWeight, semantic.MemoryMax, semantic.MemoryLow, semantic.IOWeight} {
		if exact(caps, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 && exact(caps, semantic.DevicesFeature) {
		out = append(out, semantic.DevicesFeature)
	}
	return out
}

// deviceChoices are the rules a random device list picks from.
func deviceChoices() []string {
	return []string{"c 1:3 rwm", "c 1:5 rw", "c 1:8 r", "c 136:* rw", "b 7:* r", "c 5:0 m"}
}

func randomRequest(rng *rand.Rand, fields []semantic.Feature) *semantic.Resources {
	r := &semantic.Resources{}
	for _, i := range rng.Perm(len(fields))[:1+rng.IntN(len(fields))] {
		switch fields[i] {
		case semantic.PidsMax:
			r.Pids = &semantic.Pids{Max: ptr(semantic.Count(64 + rng.IntN(1000)))}
		case semantic.CPUWeight:
			r.CPU = &semantic.CPU{Weight: ptr(uint64(1 + rng.IntN(semantic.MaxWeight)))}
		case semantic.MemoryMax:
			if r.Memory == nil {
				r.Memory = &semantic.Memory{}
			}
			r.Memory.Max = ptr(semantic.Bytes(64+rng.IntN(1024))*semantic.MiB + semantic.Bytes(rng.IntN(4096)))
		case semantic.MemoryLow:
			if r.Memory == nil {
				r.Memory = &semantic.Memory{}
			}
			r.Memory.Low = ptr(semantic.Bytes(rng.IntN(64)) * semantic.MiB)
		case semantic.IOWeight:
			r.IO = &semantic.IO{Weight: ptr(uint64(1 + rng.IntN(1000)))}
		case semantic.DevicesFeature:
			r.Devices = randomDevices(rng)
		}
	}
	return r
}

// randomDevices is a default-deny list of up to three distinct rules, or
// (one time in five) allow-everything.
func randomDevices(rng *rand.Rand) *semantic.Devices {
	if rng.IntN(5) == 0 {
		return &semantic.Devices{Default: semantic.AllowByDefault}
	}
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	choices := deviceChoices()
	for _, i := range rng.Perm(len(choices))[:rng.IntN(4)] {
		rule, err := semantic.ParseDeviceRule(choices[i], true)
		if err != nil {
			panic(err) // deviceChoices are constants
		}
		d.Rules = append(d.Rules, rule)
	}
	return d
}

func overlapping(t *testing.T, tg Target) {
	const workers, rounds = 8, 40
	takeBaseline().checkAtEnd(t)
	d := tg.newDriver(t)
	o := &overlap{t: t, tg: &tg, d: d, ctx: testContext(t), groups: map[string]*modelGroup{},
		fields: concurrencyFields(d.Capabilities())}
	require.NotEmpty(t, o.fields, "no field without a parent-child rule is exact here")
	for _, p := range tree() {
		o.groups[p.String()] = &modelGroup{}
	}
	seed := seedFromEnv(t)
	t.Logf("seed %d (the operations each worker picks; %s replays them, not their interleaving)", seed, SeedEnv)
	runWorkers(t, workers, func(w int) error {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		for r := range rounds {
			p := tree()[rng.IntN(len(tree()))]
			var err error
			switch n := rng.IntN(100); {
			case n < 25:
				err = o.create(p, randomRequest(rng, o.fields))
			case n < 55:
				err = o.apply(p, randomRequest(rng, o.fields))
			case n < 65:
				err = o.add(p)
			case n < 75:
				err = o.children(p)
			case n < 85:
				err = o.readBack(p)
			default:
				err = o.delete(p, rng.IntN(2) == 0)
			}
			if err != nil {
				return fmt.Errorf("worker %d round %d: %w", w, r, err)
			}
		}
		return nil
	})
	// Quiet now: everything must read as the model says.
	for _, p := range tree() {
		if err := o.readBack(p); err != nil {
			t.Fatal(err)
		}
		if err := o.children(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"a", "e"} {
		if err := o.delete(semantic.MustPath(p), true); err != nil {
			t.Fatal(err)
		}
	}
	o.killAll()
}

// expect checks a call's error against the model's prediction.
func expect(what string, err, want error) error {
	switch {
	case want == nil && err != nil:
		return fmt.Errorf("%s: %w (the model expects success)", what, err)
	case want != nil && !errors.Is(err, want):
		return fmt.Errorf("%s: got %v, the model expects %v", what, err, want)
	}
	return nil
}

func (o *overlap) create(p semantic.Path, res *semantic.Resources) error {
	unlock := o.lock(prefixes(p)...)
	defer unlock()
	m := o.groups[p.String()]
	var want error
	if m.exists {
		want = semantic.ErrExist
	} else if o.tg.LeafRule {
		for _, q := range prefixes(p)[:p.Len()-1] {
			if len(o.groups[q.String()].procs) > 0 {
				want = semantic.ErrBusy // a child below a group holding processes
			}
		}
	}
	_, err := o.d.Create(o.ctx, p, res)
	if err := expect("create "+p.String(), err, want); err != nil || want != nil {
		return err
	}
	for _, q := range prefixes(p) {
		if g := o.groups[q.String()]; !g.exists {
			g.exists, g.want, g.fields = true, &semantic.Resources{}, map[semantic.Feature]bool{}
		}
	}
	o.merge(m, res)
	return nil
}

func (o *overlap) merge(m *modelGroup, res *semantic.Resources) {
	m.want = semantic.Merge(m.want, res)
	for _, f := range res.Fields() {
		m.fields[f] = true
	}
}

func (o *overlap) apply(p semantic.Path, res *semantic.Resources) error {
	unlock := o.lock(p)
	defer unlock()
	m, g, err := o.open(p)
	if g == nil {
		return err
	}
	if err := expect("apply "+p.String(), g.Apply(o.ctx, res), nil); err != nil {
		return err
	}
	o.merge(m, res)
	return o.check(p, g, m)
}

// check compares a read-back with the model, under the group's lock.
func (o *overlap) check(p semantic.Path, g semantic.Group, m *modelGroup) error {
	got, err := g.Resources(o.ctx)
	if err != nil {
		return fmt.Errorf("read back %s: %w", p, err)
	}
	var fs []semantic.Feature
	for f := range m.fields {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	if d := diffResources(m.want.Normalize(o.tg.pageSize()), got, fs); d != "" {
		return fmt.Errorf("read back %s: lost update: %s", p, d)
	}
	pids, err := g.Processes(o.ctx)
	if err != nil {
		return fmt.Errorf("processes of %s: %w", p, err)
	}
	var want []int
	for _, c := range m.procs {
		want = append(want, c.Process.Pid)
	}
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		return fmt.Errorf("processes of %s: %v, the model %v", p, pids, want)
	}
	return nil
}

func (o *overlap) readBack(p semantic.Path) error {
	unlock := o.lock(p)
	defer unlock()
	m, g, err := o.open(p)
	if g == nil {
		return err
	}
	return o.check(p, g, m)
}

func (o *overlap) children(p semantic.Path) error {
	unlock := o.lock(subtree(p)...)
	defer unlock()
	got, err := o.d.Children(o.ctx, p)
	if !o.groups[p.String()].exists {
		return expect("children of "+p.String(), err, semantic.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("children of %s: %w", p, err)
	}
	var want []semantic.Path
	for _, q := range tree() {
		if q.Len() == p.Len()+1 && q.HasPrefix(p) && o.groups[q.String()].exists {
			want = append(want, q)
		}
	}
	if !slices.EqualFunc(got, want, semantic.Path.Equal) {
		return fmt.Errorf("children of %s: %v, the model %v", p, got, want)
	}
	return nil
}

// open opens p, which the caller holds locked, and checks that the
// driver agrees with the model on whether it exists. g is nil when there
// is nothing more to do: p is absent (err says whether the driver agreed)
// or the open failed.
func (o *overlap) open(p semantic.Path) (m *modelGroup, g semantic.Group, err error) {
	m = o.groups[p.String()]
	g, err = o.d.Open(o.ctx, p)
	if !m.exists {
		return m, nil, expect("open "+p.String(), err, semantic.ErrNotExist)
	}
	if err != nil {
		return m, nil, fmt.Errorf("open %s: %w (the model says it exists)", p, err)
	}
	return m, g, nil
}

func (o *overlap) add(p semantic.Path) error {
	// The whole subtree: under the leaf rule the children decide.
	unlock := o.lock(subtree(p)...)
	defer unlock()
	m, g, err := o.open(p)
	if g == nil {
		return err
	}
	var want error
	if o.tg.LeafRule {
		for _, q := range subtree(p)[1:] {
			if o.groups[q.String()].exists {
				want = semantic.ErrBusy // a process into a group with children
			}
		}
	}
	cmd := sleeperCommand()
	if err := cmd.Start(); err != nil {
		return err
	}
	o.pmu.Lock()
	o.procs = append(o.procs, cmd)
	o.pmu.Unlock()
	o.waits.Go(func() { cmd.Wait() })
	if err := expect(fmt.Sprintf("add %d to %s", cmd.Process.Pid, p), g.AddProcess(o.ctx, cmd.Process.Pid), want); err != nil || want != nil {
		return err
	}
	m.procs = append(m.procs, cmd)
	return nil
}

func (o *overlap) delete(p semantic.Path, force bool) error {
	sub := subtree(p)
	unlock := o.lock(sub...)
	defer unlock()
	_, g, err := o.open(p)
	if g == nil {
		return err
	}
	var want error
	if !force {
		for _, q := range sub {
			if q2 := o.groups[q.String()]; q2.exists && (!q.Equal(p) || len(q2.procs) > 0) {
				want = semantic.ErrBusy
			}
		}
	}
	opts := &semantic.DeleteOptions{Kill: force, Recursive: force}
	if err := expect(fmt.Sprintf("delete %s %+v", p, opts), g.Delete(o.ctx, opts), want); err != nil || want != nil {
		return err
	}
	for _, q := range sub {
		q2 := o.groups[q.String()]
		q2.exists, q2.want, q2.fields, q2.procs = false, nil, nil, nil
	}
	return nil
}

func (o *overlap) killAll() {
	o.pmu.Lock()
	for _, c := range o.procs {
		c.Process.Kill()
	}
	o.pmu.Unlock()
	o.waits.Wait()
}

func memoryAndSwap(t *testing.T, tg Target) {
	takeBaseline().checkAtEnd(t)
	d := tg.newDriver(t)
	caps := d.Capabilities()
	if !exact(caps, semantic.MemoryMax) || !exact(caps, semantic.MemorySwap) {
		t.Skip("needs memory.max and memory.swap, both exact")
	}
	ctx := testContext(t)
	p := semantic.MustPath("swap")
	g, err := d.Create(ctx, p, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.GiB), Swap: ptr(semantic.GiB)}})
	require.NoError(t, err)
	const rounds = 200
	maxOf := func(i int) semantic.Bytes { return semantic.Bytes(256+i) * semantic.MiB }
	swapOf := func(i int) semantic.Bytes { return semantic.Bytes(64+i) * semantic.MiB }
	runWorkers(t, 3, func(w int) error {
		for i := range rounds {
			var err error
			switch w {
			case 0:
				err = g.Apply(ctx, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(maxOf(i))}})
			case 1:
				err = g.Apply(ctx, &semantic.Resources{Memory: &semantic.Memory{Swap: ptr(swapOf(i))}})
			default:
				_, err = g.Resources(ctx)
			}
			if err != nil {
				return fmt.Errorf("worker %d round %d: %w", w, i, err)
			}
		}
		return nil
	})
	got, err := g.Resources(ctx)
	require.NoError(t, err)
	want := &semantic.Resources{Memory: &semantic.Memory{Max: ptr(maxOf(rounds - 1)), Swap: ptr(swapOf(rounds - 1))}}
	if d := diffResources(want, got, []semantic.Feature{semantic.MemoryMax, semantic.MemorySwap}); d != "" {
		t.Fatalf("lost update: %s", d)
	}
	require.NoError(t, g.Delete(ctx, nil))
}
