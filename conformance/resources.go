package conformance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// requireApplied checks that g reads back what want sets, normalized, for
// every field want sets; and that the observer, where it sees a field,
// agrees.
func (f *fixture) requireApplied(g semantic.Group, want *semantic.Resources) {
	f.t.Helper()
	wantN := want.Normalize(f.s.pageSize)
	if want.IO != nil && want.IO.Limits != nil {
		// Normalize drops a device listed with no figure; the request
		// means "remove its limits", which the read-back must show.
		wantN.IO.Limits = slices.Clone(want.IO.Limits)
	}
	got := f.read(g)
	for _, feat := range want.Fields() {
		if d := diff(feat, wantN, got, true); d != "" {
			f.t.Fatalf("%s: after applying %v, read-back %s", g.Path(), want, d)
		}
	}
	if o := f.s.h.Observer; o != nil {
		obs := o.Resources(f.t, f.d, g.Path(), want.Fields())
		for _, feat := range want.Fields() {
			if !present(feat, obs) {
				continue
			}
			if d := diff(feat, wantN, obs, true); d != "" {
				f.t.Fatalf("%s: after applying %v, the observer sees %s", g.Path(), want, d)
			}
		}
	}
}

// sameResources says how two read-backs differ, over every resource
// feature, or "" when they agree.
func sameResources(before, after *semantic.Resources) string {
	var ds []string
	for _, feat := range semantic.ResourceFeatures {
		if d := diff(feat, before, after, false); d != "" {
			ds = append(ds, d)
		}
	}
	return strings.Join(ds, "; ")
}

// requireUnchanged checks g reads back as before (and, through the
// observer, as it did before), and returns the read-back.
func (f *fixture) requireUnchanged(g semantic.Group, before *semantic.Resources, obsBefore *semantic.Resources, why string) *semantic.Resources {
	f.t.Helper()
	after := f.read(g)
	if d := sameResources(before, after); d != "" {
		f.t.Fatalf("%s: %s changed the group: now %s", g.Path(), why, d)
	}
	if obsBefore != nil {
		if d := sameResources(obsBefore, f.observe(g)); d != "" {
			f.t.Fatalf("%s: %s changed the group as the observer sees it: now %s", g.Path(), why, d)
		}
	}
	return after
}

// observe reads every resource feature through the observer; nil without one.
func (f *fixture) observe(g semantic.Group) *semantic.Resources {
	if o := f.s.h.Observer; o != nil {
		return o.Resources(f.t, f.d, g.Path(), semantic.ResourceFeatures)
	}
	return nil
}

// unique returns a fresh group name within the fixture.
func (f *fixture) unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, f.seq.Add(1))
}

// refused checks that a request touching the unsupported feature feat is
// refused by Apply, Create and Plan with ErrNotSupported naming feat, and
// that nothing changed.
func (f *fixture) refused(g semantic.Group, req *semantic.Resources, feat semantic.Feature) {
	f.t.Helper()
	before, obsBefore := f.read(g), f.observe(g)
	err := g.Apply(f.ctx, req)
	requireNotSupported(f.t, err, feat, "Apply")
	f.requireUnchanged(g, before, obsBefore, "a refused Apply")

	p := g.Path().Parent().Child(f.unique("refused"))
	_, err = f.d.Create(f.ctx, p, req)
	requireNotSupported(f.t, err, feat, "Create")
	f.requireExists(p, false)

	_, err = g.Plan(f.ctx, req)
	requireNotSupported(f.t, err, feat, "Plan")
}

func requireNotSupported(t *testing.T, err error, feat semantic.Feature, op string) {
	t.Helper()
	require.ErrorIs(t, err, semantic.ErrNotSupported, "%s of a request touching unsupported %s", op, feat)
	require.ErrorIs(t, err, errors.ErrUnsupported, "ErrNotSupported must match errors.ErrUnsupported")
	require.Contains(t, err.Error(), string(feat), "the error must name the unsupported feature")
}

// needResources makes sure every feature req touches is exact. An
// unsupported one is checked to be refused and the subtest skipped; an
// approximate one may be refused (without Options.AllowApproximate) or
// applied, and its read-back is not compared.
func (f *fixture) needResources(g semantic.Group, req *semantic.Resources) {
	f.t.Helper()
	for _, feat := range req.Fields() {
		c := f.caps.Get(feat)
		switch c.Support {
		case semantic.Exact:
			continue
		case semantic.Unsupported:
			f.refused(g, req, feat)
			f.t.Skipf("%s unsupported by the driver (%s); checked that it is refused and changes nothing", feat, c.Reason)
		default:
			before, obsBefore := f.read(g), f.observe(g)
			if err := g.Apply(f.ctx, req); err != nil {
				require.ErrorIs(f.t, err, semantic.ErrNotSupported, "an approximate %s may only be refused as not supported", feat)
				f.requireUnchanged(g, before, obsBefore, "a refused approximate Apply")
				f.t.Skipf("%s is approximate (%s) and refused without AllowApproximate; checked nothing changed", feat, c.Conversion)
			}
			f.t.Skipf("%s is approximate (%s): applied, read-back not compared", feat, c.Conversion)
		}
	}
}

// exact reports whether every feature of req is exact.
func (f *fixture) exact(req *semantic.Resources) bool {
	for _, feat := range req.Fields() {
		if f.caps.Get(feat).Support != semantic.Exact {
			return false
		}
	}
	return true
}

// fullRequest merges, over every field whose features are all exact and
// that has values, its base and values[i]: a request touching as much as
// the driver honours exactly.
func (f *fixture) fullRequest(i int) *semantic.Resources {
	out := &semantic.Resources{}
	for _, fl := range f.s.fields {
		if len(fl.values) > i && f.exact(semantic.Merge(fl.base, fl.values[i])) {
			out = semantic.Merge(out, fl.base)
		}
	}
	for _, fl := range f.s.fields {
		if len(fl.values) > i && f.exact(semantic.Merge(fl.base, fl.values[i])) {
			out = semantic.Merge(out, fl.values[i])
		}
	}
	return out
}

// areaTest runs the per-field subtests of one area: Area/Field/Behaviour.
func areaTest(area string) func(*testing.T, *suite) {
	return func(t *testing.T, s *suite) {
		for _, fl := range s.fields {
			if fl.area != area {
				continue
			}
			t.Run(fl.name, func(t *testing.T) {
				t.Parallel()
				t.Run("RoundTrip", func(t *testing.T) { t.Parallel(); testRoundTrip(t, s, fl) })
				t.Run("CreateWith", func(t *testing.T) { t.Parallel(); testCreateWith(t, s, fl) })
				for _, c := range fl.invalid {
					t.Run("RejectsInvalid/"+c.name, func(t *testing.T) { t.Parallel(); testInvalid(t, s, fl, c) })
				}
			})
		}
	}
}

// testRoundTrip applies each value in turn: each reads back normalized,
// the observer agrees, and no other field moves.
func testRoundTrip(t *testing.T, s *suite, fl field) {
	f := s.fixture(t)
	g := f.create("rt", nil)
	if fl.sample != nil {
		f.needResources(g, fl.sample)
	}
	if len(fl.values) == 0 {
		t.Skip(fl.missing)
	}
	if fl.base != nil {
		require.NoError(t, g.Apply(f.ctx, fl.base), "apply %v", fl.base)
		f.requireApplied(g, fl.base)
	}
	for i, v := range fl.values {
		before, obsBefore := f.read(g), f.observe(g)
		err := g.Apply(f.ctx, v)
		if fl.mustTake > 0 && i >= fl.mustTake && errors.Is(err, semantic.ErrNotSupported) {
			f.requireUnchanged(g, before, obsBefore, "a refused Apply")
			t.Logf("the driver cannot express %v: %v", v, err)
			continue
		}
		require.NoError(t, err, "apply %v", v)
		f.requireApplied(g, v)
		after := f.read(g)
		for _, other := range semantic.ResourceFeatures {
			if other == fl.feature {
				continue
			}
			if d := diff(other, before, after, false); d != "" {
				t.Fatalf("applying %v changed another field: %s", v, d)
			}
		}
		// Applying what is already there changes nothing and succeeds.
		require.NoError(t, g.Apply(f.ctx, v), "apply %v again", v)
		f.requireUnchanged(g, after, nil, "applying the same value again")
	}
}

// testCreateWith creates groups with the field set, at the top and nested.
func testCreateWith(t *testing.T, s *suite, fl field) {
	f := s.fixture(t)
	if fl.sample != nil {
		f.needResources(f.create("probe", nil), fl.sample)
	}
	if len(fl.values) == 0 {
		t.Skip(fl.missing)
	}
	for i, path := range []string{"cw", "cw-outer/cw-inner"} {
		req := semantic.Merge(fl.base, fl.values[i])
		g := f.create(path, req)
		f.requireApplied(g, req)
	}
}

// testInvalid checks an invalid value is refused with ErrInvalid by Apply,
// Create and Plan, and changes nothing. For an unsupported feature
// ErrNotSupported is as good an answer.
func testInvalid(t *testing.T, s *suite, fl field, c namedRes) {
	bad := c.res
	f := s.fixture(t)
	var start *semantic.Resources
	if len(fl.values) > 0 && f.exact(semantic.Merge(fl.base, fl.values[0])) {
		start = semantic.Merge(fl.base, fl.values[0])
	}
	g := f.create("inv", start)
	check := func(err error, op string) {
		t.Helper()
		require.Error(t, err, "%s of invalid %v", op, bad)
		if f.supports(fl.feature) {
			require.ErrorIs(t, err, semantic.ErrInvalid, "%s of invalid %v", op, bad)
		} else if !errors.Is(err, semantic.ErrNotSupported) {
			require.ErrorIs(t, err, semantic.ErrInvalid, "%s of invalid %v for unsupported %s", op, bad, fl.feature)
		}
	}
	before, obsBefore := f.read(g), f.observe(g)
	check(g.Apply(f.ctx, bad), "Apply")
	f.requireUnchanged(g, before, obsBefore, "a refused Apply")
	_, err := f.d.Create(f.ctx, f.path("inv-new"), bad)
	check(err, "Create")
	f.requireExists(f.path("inv-new"), false)
	if !c.host {
		_, err = g.Plan(f.ctx, bad)
		check(err, "Plan")
	}
}

func testApply(t *testing.T, s *suite) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"LeavesOtherFieldsAlone", testLeavesOthersAlone},
		{"EmptyRequestChangesNothing", testEmptyApply},
		{"AllOrNothing", testAllOrNothing},
		{"CreateAllOrNothing", testCreateAllOrNothing},
	} {
		t.Run(c.name, func(t *testing.T) { t.Parallel(); c.fn(t, s) })
	}
}

// testLeavesOthersAlone starts from every exact field set, changes one
// field at a time, and checks only that field moved.
func testLeavesOthersAlone(t *testing.T, s *suite) {
	f := s.fixture(t)
	base := f.fullRequest(0)
	if len(base.Fields()) < 2 {
		t.Skip("the driver honours fewer than two resource fields exactly")
	}
	g := f.create("partial", base)
	f.requireApplied(g, base)
	for _, fl := range s.fields {
		if len(fl.values) < 2 || !f.exact(semantic.Merge(fl.base, fl.values[1])) {
			continue
		}
		before := f.read(g)
		require.NoError(t, g.Apply(f.ctx, fl.values[1]), "apply %v", fl.values[1])
		f.requireApplied(g, fl.values[1])
		after := f.read(g)
		for _, other := range semantic.ResourceFeatures {
			if other == fl.feature {
				continue
			}
			if d := diff(other, before, after, false); d != "" {
				t.Fatalf("applying only %v changed another field: %s", fl.values[1], d)
			}
		}
	}
}

func testEmptyApply(t *testing.T, s *suite) {
	f := s.fixture(t)
	g := f.create("empty", f.fullRequest(0))
	before, obsBefore := f.read(g), f.observe(g)
	for _, req := range []*semantic.Resources{
		nil,
		{},
		{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}, IO: &semantic.IO{}, Pids: &semantic.Pids{}},
	} {
		require.NoError(t, g.Apply(f.ctx, req), "apply %v, which sets nothing", req)
		f.requireUnchanged(g, before, obsBefore, fmt.Sprintf("applying %v, which sets nothing,", req))
	}
}

// injected are the errors faults are injected with, in turn: each kind a
// real backend returns when a write fails midway.
var injected = []error{syscall.EBUSY, syscall.EACCES, syscall.EINVAL}

// testAllOrNothing fails the 1st, 2nd, ... backend change of an Apply
// touching every exact field, until the Apply makes fewer changes than
// that and succeeds; after each failure the group must read back as
// before.
func testAllOrNothing(t *testing.T, s *suite) {
	f := s.fixture(t)
	if s.h.InjectFault == nil {
		t.Skip("the harness cannot inject faults (Harness.InjectFault is nil)")
	}
	base, req := f.fullRequest(0), f.fullRequest(1)
	if len(req.Fields()) == 0 {
		t.Skip("the driver honours no resource field exactly")
	}
	g := f.create("aon", base)
	before, obsBefore := f.read(g), f.observe(g)
	for n := 1; ; n++ {
		require.LessOrEqual(t, n, 1000, "Apply still fails after %d injected faults", n)
		inj := injected[n%len(injected)]
		if !s.h.InjectFault(f.d, n, inj) {
			t.Skip("the harness cannot inject faults into this driver")
		}
		err := g.Apply(f.ctx, req)
		if err == nil {
			require.Greater(t, n, 1, "Apply of %v made no backend change", req)
			f.requireApplied(g, req)
			// The fault is still armed for the very next change: an Apply
			// back to base fails on its first change and leaves req.
			applied, obsApplied := f.read(g), f.observe(g)
			next := injected[n%len(injected)]
			err := g.Apply(f.ctx, base)
			s.h.InjectFault(f.d, 0, nil)
			require.ErrorIs(t, err, next, "the fault armed for change %d should fail the next Apply's first change", n)
			f.requireUnchanged(g, applied, obsApplied, "an Apply whose first change failed")
			t.Logf("Apply of %v makes %d backend changes; each failure left the group as it was", req, n-1)
			return
		}
		require.ErrorIs(t, err, inj, "Apply with change %d failing must return that failure", n)
		require.ErrorIs(t, err, semantic.Classify(inj), "the failure must be classified")
		f.requireUnchanged(g, before, obsBefore, fmt.Sprintf("an Apply whose change %d failed (%v)", n, inj))
	}
}

// testCreateAllOrNothing fails each backend change of a nested Create in
// turn: the levels it made must be gone, the level that existed before
// must stay as it was.
func testCreateAllOrNothing(t *testing.T, s *suite) {
	f := s.fixture(t)
	if s.h.InjectFault == nil {
		t.Skip("the harness cannot inject faults (Harness.InjectFault is nil)")
	}
	outer := f.create("outer", nil)
	outerBefore := f.read(outer)
	p, mid := f.path("outer/mid/leaf"), f.path("outer/mid")
	req := f.fullRequest(1)
	for n := 1; ; n++ {
		require.LessOrEqual(t, n, 1000, "Create still fails after %d injected faults", n)
		inj := injected[n%len(injected)]
		if !s.h.InjectFault(f.d, n, inj) {
			t.Skip("the harness cannot inject faults into this driver")
		}
		g, err := f.d.Create(f.ctx, p, req)
		if err == nil {
			require.Greater(t, n, 2, "Create of two levels made fewer than two backend changes")
			f.requireApplied(g, req)
			// The fault is armed for the next change: deleting the leaf
			// fails and leaves it.
			err := g.Delete(f.ctx, nil)
			s.h.InjectFault(f.d, 0, nil)
			require.ErrorIs(t, err, injected[n%len(injected)], "the fault armed for change %d should fail the next Delete", n)
			f.requireExists(p, true)
			require.NoError(t, g.Delete(f.ctx, nil))
			f.requireExists(p, false)
			return
		}
		require.ErrorIs(t, err, inj, "Create with change %d failing must return that failure", n)
		f.requireExists(p, false)
		f.requireExists(mid, false)
		f.requireChildren(outer.Path())
		f.requireUnchanged(outer, outerBefore, nil, "a failed Create below it")
	}
}

// testUnsupported checks, for every resource feature the driver declares
// unsupported, that a request mixing it with supported fields is refused
// as a whole, and that read-back omits it.
func testUnsupported(t *testing.T, s *suite) {
	t.Run("RejectedUnchanged", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		var unsupported []field
		for _, fl := range s.fields {
			if !f.supports(fl.feature) {
				unsupported = append(unsupported, fl)
			}
		}
		if len(unsupported) == 0 {
			t.Skip("the driver declares every resource feature supported")
		}
		g := f.create("unsup", f.fullRequest(0))
		before := f.read(g)
		for _, fl := range unsupported {
			require.False(t, present(fl.feature, before), "read-back has unsupported %s", fl.feature)
			req := semantic.Merge(f.fullRequest(1), fl.sample)
			f.refused(g, req, fl.feature)
		}
	})
}
