package conformance

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// hostilePaths is the set every driver refuses the same way: no way to
// escape the root, shadow an attribute file, or smuggle a separator.
var hostilePaths = []struct{ name, path string }{
	{"Empty", ""},
	{"Dot", "."},
	{"DotDot", ".."},
	{"DotDotInside", "a/../b"},
	{"DotInside", "a/./b"},
	{"Absolute", "/abs"},
	{"TrailingSlash", "a/"},
	{"EmptySegment", "a//b"},
	{"NUL", "a\x00b"},
	{"Newline", "a\nb"},
	{"Tab", "a\tb"},
	{"LeadingSpace", " a"},
	{"TrailingSpace", "a "},
	{"InvalidUTF8", "a\xffb"},
	{"MemoryPrefix", "memory.x"},
	{"CPUPrefix", "a/cpu.max"},
	{"CgroupProcs", "cgroup.procs"},
	{"Tasks", "tasks"},
	{"NotifyOnRelease", "a/notify_on_release"},
	{"ReleaseAgent", "release_agent"},
	{"FreezerPrefix", "freezer.state"},
	{"LongSegment", strings.Repeat("x", semantic.MaxSegmentLen+1)},
	{"TooDeep", strings.Repeat("l/", semantic.MaxDepth) + "l"},
}

func testPath(t *testing.T, s *suite) {
	for _, c := range hostilePaths {
		t.Run("Rejects"+c.name, func(t *testing.T) {
			t.Parallel()
			f := s.fixture(t)
			segs := strings.Split(c.path, "/")
			for _, try := range []struct {
				how string
				fn  func() (semantic.Path, error)
			}{
				{"ParsePath", func() (semantic.Path, error) { return semantic.ParsePath(c.path) }},
				{"NewPath", func() (semantic.Path, error) { return semantic.NewPath(segs...) }},
				{"Root.Join", func() (semantic.Path, error) { return semantic.Root.Join(segs...) }},
				{"Join below a valid path", func() (semantic.Path, error) { return f.path("ok").Join(segs...) }},
			} {
				_, err := try.fn()
				require.ErrorIs(t, err, semantic.ErrInvalid, "%s(%q)", try.how, c.path)
			}
			if c.path != "" { // the empty text is the root, by design
				var p semantic.Path
				require.ErrorIs(t, p.UnmarshalText([]byte(c.path)), semantic.ErrInvalid, "UnmarshalText(%q)", c.path)
			}
			var se *semantic.Error
			_, err := semantic.ParsePath(c.path)
			require.ErrorAs(t, err, &se, "a refused path is a *semantic.Error")
			require.Contains(t, err.Error(), strconv.Quote(c.path), "the error names the input")
			// Nothing reached the backend.
			f.requireChildren(semantic.Root)
		})
	}
	t.Run("AcceptsOrdinaryNames", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		names := []string{
			"web1", "a b", "x.y", "memory", "tasksx", "cgroupx", "ünïcödé", "-", "_x_",
			"..x", "x..", ".hidden",
			strings.Repeat("n", semantic.MaxSegmentLen),
		}
		for _, n := range names {
			g := f.create(n, nil)
			require.Equal(t, n, g.Path().Base())
		}
		f.requireChildren(semantic.Root, names...)
		deep := strings.TrimSuffix(strings.Repeat("d/", semantic.MaxDepth), "/")
		g := f.create(deep, nil)
		require.Equal(t, semantic.MaxDepth, g.Path().Len())
		require.NoError(t, f.open(f.path("d")).Delete(f.ctx, &semantic.DeleteOptions{Recursive: true}))
		f.requireExists(f.path("d"), false)
	})
	t.Run("RootNotCreatable", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		_, err := f.d.Create(f.ctx, semantic.Root, nil)
		require.Error(t, err, "creating the root")
		if !errorIsAny(err, semantic.ErrExist, semantic.ErrInvalid) {
			t.Fatalf("creating the root: %v, want ErrExist or ErrInvalid", err)
		}
		f.requireChildren(semantic.Root)
	})
}

func testLifecycle(t *testing.T, s *suite) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"CreateOpenDelete", lifeCreateOpenDelete},
		{"CreateExisting", lifeCreateExisting},
		{"OpenMissing", lifeOpenMissing},
		{"DeletedHandle", lifeDeletedHandle},
		{"Nested", lifeNested},
		{"ChildrenSorted", lifeChildrenSorted},
		{"DeleteBusyChildren", lifeDeleteBusyChildren},
		{"DeleteBusyProcesses", lifeDeleteBusyProcesses},
		{"DeleteBusyDescendants", lifeDeleteBusyDescendants},
		{"ReadBackComplete", lifeReadBackComplete},
		{"RecreateIsFresh", lifeRecreateIsFresh},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, s.fixture(t))
		})
	}
}

func lifeCreateOpenDelete(t *testing.T, f *fixture) {
	p := f.path("web1")
	g := f.create("web1", nil)
	f.requireChildren(semantic.Root, "web1")
	o := f.open(p)
	f.requireChildren(p)
	require.NoError(t, o.Delete(f.ctx, nil))
	f.requireExists(p, false)
	f.requireChildren(semantic.Root)
	_, err := f.d.Children(f.ctx, p)
	require.ErrorIs(t, err, semantic.ErrNotExist, "children of a deleted group")
	require.ErrorIs(t, g.Delete(f.ctx, nil), semantic.ErrNotExist, "deleting through the other handle")
}

func lifeCreateExisting(t *testing.T, f *fixture) {
	req := f.fullRequest(0)
	g := f.create("dup", req)
	before, obsBefore := f.read(g), f.observe(g)
	_, err := f.d.Create(f.ctx, f.path("dup"), f.fullRequest(1))
	require.ErrorIs(t, err, semantic.ErrExist, "creating an existing group")
	f.requireUnchanged(g, before, obsBefore, "a refused Create of the same path")
	_, err = f.d.Create(f.ctx, f.path("dup"), nil)
	require.ErrorIs(t, err, semantic.ErrExist, "creating an existing group without resources")
	f.requireChildren(semantic.Root, "dup")
}

func lifeOpenMissing(t *testing.T, f *fixture) {
	for _, p := range []string{"missing", "missing/below"} {
		_, err := f.d.Open(f.ctx, f.path(p))
		require.ErrorIs(t, err, semantic.ErrNotExist, "open %s", p)
		_, err = f.d.Children(f.ctx, f.path(p))
		require.ErrorIs(t, err, semantic.ErrNotExist, "children of %s", p)
	}
	f.requireChildren(semantic.Root)
}

// lifeDeletedHandle checks that a handle on a deleted group fails every
// call with ErrNotExist rather than acting on nothing or recreating it.
func lifeDeletedHandle(t *testing.T, f *fixture) {
	g := f.create("gone", nil)
	require.NoError(t, g.Delete(f.ctx, nil))
	_, err := g.Resources(f.ctx)
	require.ErrorIs(t, err, semantic.ErrNotExist, "Resources")
	if req := f.fullRequest(1); len(req.Fields()) > 0 {
		require.ErrorIs(t, g.Apply(f.ctx, req), semantic.ErrNotExist, "Apply")
	}
	_, err = g.Processes(f.ctx)
	require.ErrorIs(t, err, semantic.ErrNotExist, "Processes")
	_, err = g.Stats(f.ctx)
	require.ErrorIs(t, err, semantic.ErrNotExist, "Stats")
	p := f.sleeper()
	require.ErrorIs(t, g.AddProcess(f.ctx, p.pid()), semantic.ErrNotExist, "AddProcess")
	require.ErrorIs(t, g.Delete(f.ctx, nil), semantic.ErrNotExist, "Delete")
	f.requireExists(g.Path(), false)
}

func lifeNested(t *testing.T, f *fixture) {
	ref := f.create("ref", nil)
	leaf := f.create("a/b/c", nil)
	require.Equal(t, "a/b/c", leaf.Path().String())
	f.requireChildren(semantic.Root, "a", "ref")
	f.requireChildren(f.path("a"), "b")
	f.requireChildren(f.path("a/b"), "c")
	f.requireChildren(f.path("a/b/c"))
	// Intermediate levels carry no settings of their own: they read back
	// as a group created bare at the same depth.
	if d := sameResources(f.read(ref), f.read(f.open(f.path("a")))); d != "" {
		t.Fatalf("intermediate a differs from a bare group: %s", d)
	}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		_, err := f.d.Create(f.ctx, f.path(p), nil)
		require.ErrorIs(t, err, semantic.ErrExist, "create existing %s", p)
	}
	f.create("a/b/d", nil)
	f.requireChildren(f.path("a/b"), "c", "d")
	f.create("a/e", nil)
	f.requireChildren(f.path("a"), "b", "e")
	for _, p := range []string{"a/b/d", "a/b/c", "a/b", "a/e", "a"} {
		require.NoError(t, f.open(f.path(p)).Delete(f.ctx, nil), "delete %s", p)
		f.requireExists(f.path(p), false)
	}
	f.requireChildren(semantic.Root, "ref")
}

func lifeChildrenSorted(t *testing.T, f *fixture) {
	names := []string{"b", "a", "c10", "c2", "B", "é", "z"}
	for _, n := range names {
		f.create(n, nil)
		f.create("p/"+n, nil)
	}
	f.requireChildren(semantic.Root, append(names, "p")...)
	f.requireChildren(f.path("p"), names...)
}

func lifeDeleteBusyChildren(t *testing.T, f *fixture) {
	f.create("p/c/gc", nil)
	f.create("p/d", nil)
	p := f.open(f.path("p"))
	require.ErrorIs(t, p.Delete(f.ctx, nil), semantic.ErrBusy, "delete a group with children")
	f.requireChildren(f.path("p"), "c", "d")
	f.requireExists(f.path("p/c/gc"), true)
	require.NoError(t, p.Delete(f.ctx, &semantic.DeleteOptions{Recursive: true}), "delete recursively")
	for _, q := range []string{"p", "p/c", "p/c/gc", "p/d"} {
		f.requireExists(f.path(q), false)
	}
	f.requireChildren(semantic.Root)
}

func lifeDeleteBusyProcesses(t *testing.T, f *fixture) {
	g := f.create("busy", nil)
	a, b := f.sleeperIn(g), f.sleeperIn(g)
	require.ErrorIs(t, g.Delete(f.ctx, nil), semantic.ErrBusy, "delete a group with processes")
	require.ErrorIs(t, g.Delete(f.ctx, &semantic.DeleteOptions{Recursive: true}), semantic.ErrBusy,
		"recursion does not kill: delete a group with processes, recursively")
	f.requireExists(g.Path(), true)
	f.requireProcesses(g, a.pid(), b.pid())
	err := g.Delete(f.ctx, &semantic.DeleteOptions{Kill: true})
	if !f.supports(semantic.Kill) {
		if !errorIsAny(err, semantic.ErrNotSupported, semantic.ErrBusy) {
			t.Fatalf("delete with Kill on a driver without kill: %v, want ErrNotSupported or ErrBusy", err)
		}
		f.requireProcesses(g, a.pid(), b.pid())
		t.Skipf("kill unsupported (%s); checked that Delete with Kill is refused", f.caps.Get(semantic.Kill).Reason)
	}
	require.NoError(t, err, "delete with Kill")
	f.requireExists(g.Path(), false)
}

func lifeDeleteBusyDescendants(t *testing.T, f *fixture) {
	p := f.create("top", nil)
	leaf := f.create("top/mid/leaf", nil)
	a := f.sleeperIn(leaf)
	require.ErrorIs(t, p.Delete(f.ctx, &semantic.DeleteOptions{Recursive: true}), semantic.ErrBusy,
		"delete recursively a group whose descendant has processes")
	f.requireExists(leaf.Path(), true)
	f.requireProcesses(leaf, a.pid())
	if !f.supports(semantic.Kill) {
		t.Skipf("kill unsupported (%s)", f.caps.Get(semantic.Kill).Reason)
	}
	require.NoError(t, p.Delete(f.ctx, &semantic.DeleteOptions{Recursive: true, Kill: true}))
	for _, q := range []string{"top", "top/mid", "top/mid/leaf"} {
		f.requireExists(f.path(q), false)
	}
}

// lifeReadBackComplete checks read-back reports every supported scalar
// feature of a bare group, and none that is unsupported.
func lifeReadBackComplete(t *testing.T, f *fixture) {
	r := f.read(f.create("bare", nil))
	for _, feat := range semantic.ResourceFeatures {
		switch {
		case !f.supports(feat):
			require.False(t, present(feat, r), "read-back has unsupported %s", feat)
		case feat == semantic.IOLimits || feat == semantic.HugeTLB:
			// Having none is a fine answer for lists.
		default:
			require.True(t, present(feat, r), "read-back lacks supported %s", feat)
		}
	}
}

// lifeRecreateIsFresh checks a group deleted and created again does not
// inherit the old group's settings.
func lifeRecreateIsFresh(t *testing.T, f *fixture) {
	bare := f.read(f.create("bare", nil))
	g := f.create("again", f.fullRequest(1))
	require.NoError(t, g.Delete(f.ctx, nil))
	if d := sameResources(bare, f.read(f.create("again", nil))); d != "" {
		t.Fatalf("a group created again at the same path kept settings: %s", d)
	}
}

func errorIsAny(err error, kinds ...error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
