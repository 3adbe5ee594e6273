package conformance

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// patience bounds every wait for something the suite expects to happen (an
// event, a process exit, a blocking call returning). It is a liveness
// bound, not a timing assertion: hitting it means "never happened".
const patience = 30 * time.Second

// Run runs the conformance suite against the driver h makes. Every property
// is one subtest named Feature/Behaviour, on a fresh driver and root; the
// subtests of one feature run in parallel, and Run returns once all are
// done.
//
// The suite's helper processes are the test binary re-executed, narrowed
// to the test that called Run: Run recognises such a child by its
// environment and turns into the helper before anything else. Whatever
// the calling test does before it calls Run therefore runs in every
// helper too, and should be cheap and invisible.
func Run(t *testing.T, h Harness) {
	if spec, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(runHelper(spec))
	}
	if h.NewDriver == nil {
		t.Fatal("conformance: Harness.NewDriver is nil")
	}
	s := &suite{h: h, runPattern: runPattern(t.Name())}
	s.pageSize = h.PageSize
	if s.pageSize == 0 {
		s.pageSize = uint64(os.Getpagesize())
	}
	s.cpus, s.mems = h.CPUs, h.Mems
	if s.cpus == nil {
		s.cpus = semantic.CPUSet{0}
	}
	if s.mems == nil {
		s.mems = semantic.CPUSet{0}
	}
	s.fields = resourceFields(s)
	for _, g := range []struct {
		name string
		run  func(*testing.T, *suite)
	}{
		{"Path", testPath},
		{"Lifecycle", testLifecycle},
		{"Memory", areaTest("Memory")},
		{"CPU", areaTest("CPU")},
		{"IO", areaTest("IO")},
		{"Pids", areaTest("Pids")},
		{"Devices", areaTest("Devices")},
		{"HugeTLB", areaTest("HugeTLB")},
		{"Apply", testApply},
		{"Unsupported", testUnsupported},
		{"Process", testProcess},
		{"Thread", testThread},
		{"Start", testStart},
		{"Freeze", testFreeze},
		{"Kill", testKill},
		{"Events", testEvents},
		{"Stats", testStats},
		{"Context", testContext},
		{"Concurrency", testConcurrency},
		{"Plan", testPlan},
		{"Enforce", testEnforce},
	} {
		t.Run(g.name, func(t *testing.T) { g.run(t, s) })
	}
}

// suite is what every subtest shares: the harness and its defaults.
type suite struct {
	h          Harness
	pageSize   uint64
	cpus, mems semantic.CPUSet
	fields     []field
	// runPattern narrows a re-executed test binary to the test that called
	// Run, so a helper child reaches Run and nothing else.
	runPattern string
}

// runPattern builds a -test.run pattern matching exactly the test named
// name (a top-level test or a subtest path).
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// fixture is one subtest's driver and the helpers that use it.
type fixture struct {
	t    *testing.T
	s    *suite
	d    semantic.Driver
	caps semantic.Capabilities
	ctx  context.Context
	seq  atomic.Int64 // for unique names
}

// fixture makes a fresh driver for t. Cleanup order matters and follows
// from registration order (last registered runs first): the harness's own
// cleanup (removing the root, closing the driver) was registered inside
// NewDriver and runs last; then the leak check; before it, tidy deletes
// whatever groups the subtest left; before that, every helper process the
// subtest started is killed and reaped (registered when started, so later).
func (s *suite) fixture(t *testing.T) *fixture {
	t.Helper()
	d := s.h.NewDriver(t)
	require.NotNil(t, d, "Harness.NewDriver returned nil")
	f := &fixture{t: t, s: s, d: d, caps: d.Capabilities(), ctx: t.Context()}
	if s.h.Leaks != nil {
		t.Cleanup(func() {
			if leaks := s.h.Leaks(d); len(leaks) > 0 {
				t.Errorf("left below the root after cleanup: %q", leaks)
			}
		})
	}
	t.Cleanup(f.tidy)
	return f
}

// tidy deletes every group below the root through the driver. A subtest that
// passed usually deleted what it made; this is the net for one that failed
// half way. A delete that fails here is a driver failure.
func (f *fixture) tidy() {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	kids, err := f.d.Children(ctx, semantic.Root)
	if err != nil {
		f.t.Errorf("tidy: list children of the root: %v", err)
		return
	}
	for _, p := range kids {
		g, err := f.d.Open(ctx, p)
		if err != nil {
			f.t.Errorf("tidy: open %s listed by Children: %v", p, err)
			continue
		}
		if f.caps.Supports(semantic.Freeze) {
			f.thawTree(ctx, p)
		}
		opts := &semantic.DeleteOptions{Recursive: true, Kill: f.caps.Supports(semantic.Kill)}
		// Without kill, the processes the subtest started were killed just
		// before; a backend may take a moment to see them go.
		err = g.Delete(ctx, opts)
		for errors.Is(err, semantic.ErrBusy) && !opts.Kill && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			err = g.Delete(ctx, opts)
		}
		if err != nil {
			f.t.Errorf("tidy: delete %s (recursive, kill %v): %v", p, opts.Kill, err)
		}
	}
}

// thawTree thaws p and its descendants, so processes left frozen by a failed
// subtest can die and their groups go.
func (f *fixture) thawTree(ctx context.Context, p semantic.Path) {
	if g, err := f.d.Open(ctx, p); err == nil {
		_ = g.Thaw(ctx)
	}
	kids, _ := f.d.Children(ctx, p)
	for _, k := range kids {
		f.thawTree(ctx, k)
	}
}

// path parses a constant path of the suite.
func (f *fixture) path(s string) semantic.Path {
	f.t.Helper()
	p, err := semantic.ParsePath(s)
	require.NoError(f.t, err)
	return p
}

// create makes a group that must be created, and checks it exists.
func (f *fixture) create(path string, res *semantic.Resources) semantic.Group {
	f.t.Helper()
	p := f.path(path)
	g, err := f.d.Create(f.ctx, p, res)
	require.NoError(f.t, err, "create %s with %v", path, res)
	require.NotNil(f.t, g)
	require.True(f.t, g.Path().Equal(p), "created group's Path() is %q, want %q", g.Path(), p)
	f.requireExists(p, true)
	return g
}

// open opens a group that must exist.
func (f *fixture) open(p semantic.Path) semantic.Group {
	f.t.Helper()
	g, err := f.d.Open(f.ctx, p)
	require.NoError(f.t, err, "open %s", p)
	require.True(f.t, g.Path().Equal(p), "opened group's Path() is %q, want %q", g.Path(), p)
	return g
}

// requireExists checks existence through Open and, when there is one, the
// observer.
func (f *fixture) requireExists(p semantic.Path, want bool) {
	f.t.Helper()
	_, err := f.d.Open(f.ctx, p)
	if want {
		require.NoError(f.t, err, "open %s, which should exist", p)
	} else {
		require.ErrorIs(f.t, err, semantic.ErrNotExist, "open %s, which should not exist", p)
	}
	if o := f.s.h.Observer; o != nil {
		require.Equal(f.t, want, o.Exists(f.t, f.d, p), "observer: %s exists", p)
	}
}

// children lists the children of p, which must succeed.
func (f *fixture) children(p semantic.Path) []semantic.Path {
	f.t.Helper()
	kids, err := f.d.Children(f.ctx, p)
	require.NoError(f.t, err, "children of %s", p.Display())
	return kids
}

// requireChildren checks Children(p) lists exactly names, sorted.
func (f *fixture) requireChildren(p semantic.Path, names ...string) {
	f.t.Helper()
	var got []string
	for _, k := range f.children(p) {
		require.True(f.t, k.Parent().Equal(p), "child %q of %s is not directly below it", k, p.Display())
		got = append(got, k.Base())
	}
	want := slices.Sorted(slices.Values(names))
	if len(want) == 0 {
		want = nil
	}
	require.Equal(f.t, want, got, "children of %s (sorted)", p.Display())
}

// read reads a group's resources back.
func (f *fixture) read(g semantic.Group) *semantic.Resources {
	f.t.Helper()
	r, err := g.Resources(f.ctx)
	require.NoError(f.t, err, "read back %s", g.Path())
	require.NotNil(f.t, r, "read back %s", g.Path())
	return r
}

// processes lists a group's pids, checking them against the observer.
func (f *fixture) processes(g semantic.Group) []int {
	f.t.Helper()
	pids, err := g.Processes(f.ctx)
	require.NoError(f.t, err, "processes of %s", g.Path())
	require.True(f.t, slices.IsSorted(pids), "processes of %s not sorted: %v", g.Path(), pids)
	if o := f.s.h.Observer; o != nil {
		obs := o.Processes(f.t, f.d, g.Path())
		require.Equal(f.t, norm(pids), norm(obs), "processes of %s: driver vs observer", g.Path())
	}
	return pids
}

// requireProcesses checks a group holds exactly pids.
func (f *fixture) requireProcesses(g semantic.Group, pids ...int) {
	f.t.Helper()
	require.Equal(f.t, norm(slices.Sorted(slices.Values(pids))), norm(f.processes(g)), "processes of %s", g.Path())
}

func norm(pids []int) []int {
	if len(pids) == 0 {
		return nil
	}
	return pids
}

// supports reports whether the driver declares f exact or approximate.
func (f *fixture) supports(feat semantic.Feature) bool { return f.caps.Supports(feat) }

// needOp checks that an operation feature the subtest relies on is
// declared. If it is not, probe (a call that uses it) must fail with
// ErrNotSupported, unchanged (run after the probe) must confirm nothing
// happened, and the subtest is skipped.
func (f *fixture) needOp(feat semantic.Feature, probe func() error, unchanged func()) {
	f.t.Helper()
	if f.supports(feat) {
		return
	}
	if probe != nil {
		err := probe()
		require.ErrorIs(f.t, err, semantic.ErrNotSupported, "%s is declared unsupported, so using it must fail with ErrNotSupported", feat)
		require.ErrorIs(f.t, err, errors.ErrUnsupported, "ErrNotSupported must match errors.ErrUnsupported")
	}
	if unchanged != nil {
		unchanged()
	}
	f.t.Skipf("%s unsupported by the driver (%s); checked that it is refused", feat, f.caps.Get(feat).Reason)
}

// within runs fn and fails if it has not returned after patience; it
// returns fn's error. It is how the suite tells "blocked" from "slow".
func (f *fixture) within(what string, fn func() error) error {
	f.t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(patience):
		f.t.Fatalf("%s did not return within %v", what, patience)
		return nil
	}
}

// cleanupCtx is for work done in t.Cleanup, after t.Context is cancelled.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), patience)
}
