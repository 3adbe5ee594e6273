package semantic_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// deep builds a path string of n segments.
func deep(n int) string {
	segs := make([]string, n)
	for i := range segs {
		segs[i] = "l"
	}
	return strings.Join(segs, "/")
}

func TestValidateSegment(t *testing.T) {
	tests := []struct {
		name string
		seg  string
		why  string // "" when the segment is valid
	}{
		{"plain", "web1", ""},
		{"dots inside", "a.b..c", ""},
		{"dot prefix", ".hidden", ""},
		{"dash and underscore", "my-app_2", ""},
		{"space inside", "my app", ""},
		{"unicode", "grüße", ""},
		{"prefix without dot", "memoryhog", ""},
		{"controller name alone", "memory", ""},
		{"prefix not at start", "x.memory.max", ""},
		{"255 bytes", strings.Repeat("a", 255), ""},
		{"255 bytes multibyte", strings.Repeat("é", 127) + "a", ""},

		{"empty", "", "empty segment"},
		{"dot", ".", `"." is not allowed`},
		{"dotdot", "..", `".." is not allowed`},
		{"slash", "a/b", `"a/b" contains /`},
		{"slash only", "/", `contains /`},
		{"NUL", "a\x00b", `contains NUL`},
		{"newline", "a\nb", `control character U+000A`},
		{"tab", "a\tb", `control character U+0009`},
		{"DEL", "a\x7fb", `control character U+007F`},
		{"invalid UTF-8", "a\xffb", `not valid UTF-8`},
		{"leading space", " web", `leading or trailing space`},
		{"trailing space", "web ", `leading or trailing space`},
		{"only spaces", "   ", `leading or trailing space`},
		{"unicode space", "web\u00a0", `leading or trailing space`},
		{"256 bytes", strings.Repeat("a", 256), `is 256 bytes; at most 255`},
		{"256 bytes multibyte", strings.Repeat("é", 128), `is 256 bytes; at most 255`},
		{"tasks", "tasks", `name of a kernel attribute file`},
		{"notify_on_release", "notify_on_release", `name of a kernel attribute file`},
		{"release_agent", "release_agent", `name of a kernel attribute file`},
	}
	for _, p := range []string{
		"cgroup.", "memory.", "cpu.", "cpuset.", "cpuacct.", "io.", "blkio.", "pids.", "devices.",
		"freezer.", "hugetlb.", "rdma.", "misc.", "net_cls.", "net_prio.", "perf_event.",
	} {
		tests = append(tests,
			struct{ name, seg, why string }{"prefix " + p, p + "x", `begins with "` + p + `"`},
			struct{ name, seg, why string }{"bare prefix " + p, p, `begins with "` + p + `"`})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := semantic.ValidateSegment(tt.seg)
			if tt.why == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, semantic.ErrInvalid)
			assert.Contains(t, err.Error(), tt.why)
		})
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		segs []string
		why  string // substring of the error; "" when valid
	}{
		{"one", "web1", []string{"web1"}, ""},
		{"three", "libvirt/lxc/web1", []string{"libvirt", "lxc", "web1"}, ""},
		{"32 levels", deep(32), strings.Split(deep(32), "/"), ""},

		{"empty", "", nil, "empty path"},
		{"absolute", "/a/b", nil, "absolute"},
		{"trailing slash", "a/b/", nil, "segment 3: empty segment"},
		{"double slash", "a//b", nil, "segment 2: empty segment"},
		{"dotdot names segment", "a/../b", nil, `segment 2: ".." is not allowed`},
		{"dot", "a/./b", nil, `segment 2: "." is not allowed`},
		{"prefix in third", "a/b/memory.max", nil, `segment 3: "memory.max" begins with "memory."`},
		{"NUL", "a/b\x00c", nil, `segment 2: "b\x00c" contains NUL`},
		{"space", "a/ b", nil, `segment 2: " b" has leading or trailing space`},
		{"long segment", "a/" + strings.Repeat("x", 256), nil, "segment 2: " + `"xxxxxxxxxxxxxxxxxxxx"... is 256 bytes; at most 255`},
		{"33 levels", deep(33), nil, "33 levels deep; at most 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := semantic.ParsePath(tt.in)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				assert.True(t, strings.HasPrefix(err.Error(), "cgsem: parse path on "), err.Error())
				assert.True(t, p.IsRoot(), "a failed parse returns the zero Path")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.segs, p.Segments())
			assert.Equal(t, tt.in, p.String())
			assert.Equal(t, len(tt.segs), p.Len())
			assert.Equal(t, tt.segs[len(tt.segs)-1], p.Base())
		})
	}
}

func TestNewPath(t *testing.T) {
	tests := []struct {
		name string
		segs []string
		want string
		why  string
	}{
		{"none is root", nil, "", ""},
		{"one", []string{"a"}, "a", ""},
		{"several", []string{"a", "b", "c"}, "a/b/c", ""},
		{"32", strings.Split(deep(32), "/"), deep(32), ""},
		{"slash inside a segment", []string{"a", "b/c"}, "", `segment 2: "b/c" contains /`},
		{"empty segment", []string{"a", ""}, "", "segment 2: empty segment"},
		{"dotdot", []string{".."}, "", `segment 1: ".." is not allowed`},
		{"prefix", []string{"cgroup.procs"}, "", `begins with "cgroup."`},
		{"33", strings.Split(deep(33), "/"), "", "33 levels deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := semantic.NewPath(tt.segs...)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.String())
			assert.Equal(t, len(tt.segs), p.Len())
		})
	}
}

func TestPathNewPathDoesNotAlias(t *testing.T) {
	segs := []string{"a", "b"}
	p, err := semantic.NewPath(segs...)
	require.NoError(t, err)
	segs[0] = "changed"
	assert.Equal(t, "a/b", p.String(), "a Path must not share its caller's slice")
	got := p.Segments()
	got[1] = "changed"
	assert.Equal(t, "a/b", p.String(), "Segments must return a copy")
}

func TestPathJoin(t *testing.T) {
	tests := []struct {
		name string
		base string
		add  []string
		want string
		why  string
	}{
		{"root plus one", "", []string{"a"}, "a", ""},
		{"root plus none", "", nil, "", ""},
		{"append two", "a/b", []string{"c", "d"}, "a/b/c/d", ""},
		{"append none", "a/b", nil, "a/b", ""},
		{"up to 32", deep(31), []string{"x"}, deep(31) + "/x", ""},
		{"past 32", deep(32), []string{"x"}, "", "33 levels deep"},
		{"invalid segment", "a", []string{"ok", ".."}, "", `segment 3: ".." is not allowed`},
		{"slash in segment", "a", []string{"b/c"}, "", "contains /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var base semantic.Path
			if tt.base != "" {
				base = semantic.MustPath(tt.base)
			}
			p, err := base.Join(tt.add...)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.String())
			assert.Equal(t, tt.base, base.String(), "Join must not change its receiver")
		})
	}
}

func TestPathJoinDoesNotShareBacking(t *testing.T) {
	// Parent shares its backing array with the child; Join on it must not
	// write into that array and so change a sibling.
	child := semantic.MustPath("a/b/c")
	parent := child.Parent()
	sibling := parent.Child("x")
	assert.Equal(t, "a/b/c", child.String())
	assert.Equal(t, "a/b/x", sibling.String())
}

func TestPathParent(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"root", "", ""},
		{"top level", "a", ""},
		{"nested", "a/b/c", "a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p semantic.Path
			if tt.in != "" {
				p = semantic.MustPath(tt.in)
			}
			got := p.Parent()
			assert.Equal(t, tt.want, got.String())
			assert.Equal(t, tt.want == "", got.IsRoot())
		})
	}
}

func TestPathHasPrefix(t *testing.T) {
	root := semantic.Root
	tests := []struct {
		name string
		p, q semantic.Path
		want bool
	}{
		{"root of root", root, root, true},
		{"root prefixes all", semantic.MustPath("a/b"), root, true},
		{"itself", semantic.MustPath("a/b"), semantic.MustPath("a/b"), true},
		{"parent", semantic.MustPath("a/b"), semantic.MustPath("a"), true},
		{"child is not a prefix", semantic.MustPath("a"), semantic.MustPath("a/b"), false},
		{"sibling", semantic.MustPath("a/b"), semantic.MustPath("a/c"), false},
		{"string prefix is not a path prefix", semantic.MustPath("ab/c"), semantic.MustPath("a"), false},
		{"nothing is above root", root, semantic.MustPath("a"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.p.HasPrefix(tt.q))
		})
	}
}

func TestPathAccessors(t *testing.T) {
	p := semantic.MustPath("a/b/c")
	assert.Equal(t, "a/b", p.Prefix(2).String())
	assert.True(t, p.Prefix(0).IsRoot())
	assert.Equal(t, "c", p.Base())
	assert.Equal(t, "a/b/c", p.Display())
	assert.Equal(t, "/", semantic.Root.Display())
	assert.Equal(t, "", semantic.Root.Base())
	assert.True(t, p.Equal(semantic.MustPath("a/b/c")))
	assert.False(t, p.Equal(semantic.MustPath("a/b")))
	assert.False(t, p.Equal(semantic.MustPath("a/b/d")))
	assert.Panics(t, func() { semantic.MustPath("a/..") })
	assert.Panics(t, func() { p.Child("memory.max") })
}

func TestPathText(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string
		bad  bool
	}{
		{"path", `"a/b"`, "a/b", false},
		{"root", `""`, "", false},
		{"invalid", `"a/.."`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p semantic.Path
			err := json.Unmarshal([]byte(tt.json), &p)
			if tt.bad {
				require.Error(t, err)
				assert.True(t, errors.Is(err, semantic.ErrInvalid))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.String())
			out, err := json.Marshal(p)
			require.NoError(t, err)
			assert.JSONEq(t, tt.json, string(out))
		})
	}
}
