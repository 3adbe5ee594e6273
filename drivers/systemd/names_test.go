package systemd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestEscapeSegment(t *testing.T) {
	for _, c := range []struct {
		name, seg, want string
	}{
		{"Plain", "web1", "web1"},
		{"Dash", "a-b", `a\x2db`},
		{"Space", "a b", `a\x20b`},
		{"LeadingDot", ".hidden", `\x2ehidden`},
		{"InnerDots", "x..y", "x..y"},
		{"TrailingDots", "x..", "x.."},
		{"Colon and underscore", "_x:y_", "_x:y_"},
		{"Backslash", `a\b`, `a\x5cb`},
		{"UTF-8 bytes each", "é", `\xc3\xa9`},
		{"Slash never reaches here, but a dash alone", "-", `\x2d`},
		{"Upper case kept", "ABC", "ABC"},
		{"Percent", "100%", `100\x25`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := escapeSegment(c.seg)
			assert.Equal(t, c.want, got)
			back, err := unescapeSegment(got)
			require.NoError(t, err)
			assert.Equal(t, c.seg, back)
		})
	}
}

func TestUnescapeRefusesNonCanonical(t *testing.T) {
	for _, c := range []struct{ name, in string }{
		{"Empty", ""},
		{"RawDash", "a-b"},
		{"UpperHex", `a\X2db`},
		{"UpperHexDigits", `a\x2Db`},
		{"EscapedLetter", `\x61`},
		{"EscapedInnerDot", `a\x2e`},
		{"RawLeadingDot", ".x"},
		{"Truncated", `a\x2`},
		{"BackslashAlone", `a\`},
		{"NotX", `a\y2d`},
		{"RawSpace", "a b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := unescapeSegment(c.in)
			assert.Error(t, err, "%q", c.in)
		})
	}
}

func TestUnitNamesPerLevel(t *testing.T) {
	for _, c := range []struct {
		name, root, path string
		slices           []string
		scope            string
	}{
		{"LibvirtAtTop", "-.slice", "libvirt/lxc/web1",
			[]string{"libvirt.slice", "libvirt-lxc.slice", "libvirt-lxc-web1.slice"}, "libvirt-lxc-web1.scope"},
		{"BelowMachine", "machine.slice", "libvirt/lxc/web1",
			[]string{"machine-libvirt.slice", "machine-libvirt-lxc.slice", "machine-libvirt-lxc-web1.slice"}, "machine-libvirt-lxc-web1.scope"},
		{"DashesInSegments", "-.slice", "a-b/c-d",
			[]string{`a\x2db.slice`, `a\x2db-c\x2dd.slice`}, `a\x2db-c\x2dd.scope`},
		{"EscapedRoot", `cgsem\x2dtest.slice`, "x",
			[]string{`cgsem\x2dtest-x.slice`}, `cgsem\x2dtest-x.scope`},
		{"DotNames", "-.slice", ".hidden/..x",
			[]string{`\x2ehidden.slice`, `\x2ehidden-\x2e.x.slice`}, `\x2ehidden-\x2e.x.scope`},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := newNamer(c.root)
			require.NoError(t, err)
			p := semantic.MustPath(c.path)
			for i, want := range c.slices {
				got, err := n.slice(p.Prefix(i + 1))
				require.NoError(t, err)
				assert.Equal(t, want, got, "level %d", i+1)
			}
			scope, err := n.scope(p)
			require.NoError(t, err)
			assert.Equal(t, c.scope, scope)
			root, err := n.slice(semantic.Root)
			require.NoError(t, err)
			assert.Equal(t, c.root, root)
		})
	}
}

func TestLongSegmentsAreHashed(t *testing.T) {
	n, err := newNamer(`cgsem\x2dtest\x2d0123456789ab.slice`)
	require.NoError(t, err)
	long := strings.Repeat("n", semantic.MaxSegmentLen)
	p := semantic.MustPath(long)
	s, err := n.slice(p)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(s), maxUnitName)
	prefix := strings.TrimSuffix(s, sliceSuffix)
	comp, ok := childComponent(n.base, s)
	require.True(t, ok, "%s is a child of the root", s)
	assert.True(t, isHashComponent(comp), "%s", comp)
	seg, ok := segmentOf(n.base, comp, descriptionOf(p))
	require.True(t, ok)
	assert.Equal(t, long, seg)
	// A description naming another segment does not resolve the hash.
	_, ok = segmentOf(n.base, comp, descriptionOf(semantic.MustPath(long[1:])))
	assert.False(t, ok)
	// Below a hashed level, names keep growing from the hashed prefix.
	child, err := n.slice(p.Child("c"))
	require.NoError(t, err)
	assert.Equal(t, prefix+"-c.slice", child)
	// A short segment whose escape fits is never hashed, and a hashed
	// component never comes from escaping.
	assert.False(t, isHashComponent(escapeSegment(`\x5fh`+strings.Repeat("0", hashHex))))
}

func TestDeepPathsRunOutOfName(t *testing.T) {
	n, err := newNamer("-.slice")
	require.NoError(t, err)
	deep := strings.TrimSuffix(strings.Repeat("d/", semantic.MaxDepth), "/")
	_, err = n.slice(semantic.MustPath(deep))
	require.NoError(t, err, "32 levels of one letter fit")
	var segs []string
	for range 20 {
		segs = append(segs, strings.Repeat("x", 200))
	}
	_, err = n.slice(semantic.MustPath(strings.Join(segs, "/")))
	require.ErrorIs(t, err, errNameTooLong)
}

func TestChildComponent(t *testing.T) {
	for _, c := range []struct {
		name, parent, unit, want string
		ok                       bool
	}{
		{"TopLevel", "", "web.slice", "web", true},
		{"TopLevelNotDeeper", "", "a-b.slice", "", false},
		{"RootItself", "", "-.slice", "", false},
		{"Below", "a", "a-b.slice", "b", true},
		{"Deeper", "a", "a-b-c.slice", "", false},
		{"OtherParent", "a", "ab-c.slice", "", false},
		{"Scope", "a", "a-b.scope", "", false},
		{"Escaped", `a\x2db`, `a\x2db-c\x20d.slice`, `c\x20d`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := childComponent(c.parent, c.unit)
			assert.Equal(t, c.ok, ok)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestSegmentOfSkipsForeignNames(t *testing.T) {
	for _, c := range []struct{ name, comp string }{
		{"NotCanonical", `\x61`},
		{"AttributeName", "tasks"},
		{"ControllerPrefix", "memory.x"},
		{"HashWithoutDescription", hashComponent("x")},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok := segmentOf("", c.comp, "")
			assert.False(t, ok)
		})
	}
}

func TestCgroupNames(t *testing.T) {
	for _, c := range []struct{ unit, want string }{
		{"web.slice", "web.slice"},
		{"cpu.slice", "_cpu.slice"},
		{"memory.slice", "_memory.slice"},
		{"memory-x.slice", "memory-x.slice"},
		{"_x_.slice", "__x_.slice"},
		{"tasks", "_tasks"},
		{"cgroup.x", "_cgroup.x"},
	} {
		t.Run(c.unit, func(t *testing.T) { assert.Equal(t, c.want, cgroupName(c.unit)) })
	}
	for _, c := range []struct{ slice, want string }{
		{"-.slice", "/"},
		{"a.slice", "/a.slice"},
		{"a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"},
		{"memory-x.slice", "/_memory.slice/memory-x.slice"},
	} {
		t.Run(c.slice, func(t *testing.T) {
			got, err := sliceCgroup(c.slice)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestParseRoot(t *testing.T) {
	for _, c := range []struct {
		name, root, want string
		bad              bool
	}{
		{"Empty", "", "-.slice", false},
		{"Slash", "/", "-.slice", false},
		{"UnitName", "machine.slice", "machine.slice", false},
		{"CgroupPath", "/machine.slice", "machine.slice", false},
		{"NestedCgroupPath", "/a.slice/a-b.slice", "a-b.slice", false},
		{"EscapedCgroupPath", "/_cpu.slice", "cpu.slice", false},
		{"InconsistentPath", "/a.slice/b.slice", "", true},
		{"Scope", "/system.slice/x.scope", "", true},
		{"Self", "self", "", true},
		{"NotASlice", "x.service", "", true},
		{"EmptyComponent", "a--b.slice", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseRoot(c.root)
			if c.bad {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

// FuzzEscapeRoundTrip: every valid segment escapes to a component that
// unescapes to it, that systemd would take as one level (no dash), and
// that reads back as the segment below any parent.
func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range []string{"web1", "a-b", ".x", "é", `\`, "a b", "..x", strings.Repeat("n", 255), "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		e := escapeSegment(seg)
		back, err := unescapeSegment(e)
		if seg == "" {
			if err == nil {
				t.Fatalf("empty component accepted")
			}
			return
		}
		if err != nil || back != seg {
			t.Fatalf("escape(%q) = %q, unescape gives %q, %v", seg, e, back, err)
		}
		if strings.Contains(e, "-") || strings.HasPrefix(e, ".") {
			t.Fatalf("escape(%q) = %q holds a dash or starts with a dot", seg, e)
		}
		if semantic.ValidateSegment(seg) == nil {
			comp := component("p", seg)
			got, ok := segmentOf("p", comp, descriptionOf(semantic.MustPath("x").Child(seg)))
			if !ok || got != seg {
				t.Fatalf("segment %q: component %q reads back as %q, %v", seg, comp, got, ok)
			}
		}
	})
}

// FuzzUnescapeCanonical: whatever unescape accepts, escape writes back
// exactly, so one segment has one unit name.
func FuzzUnescapeCanonical(f *testing.F) {
	for _, s := range []string{`a\x2db`, `\x2ex`, `\x61`, "a-b", `\xc3\xa9`, `\x5fh`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, comp string) {
		seg, err := unescapeSegment(comp)
		if err != nil {
			return
		}
		if e := escapeSegment(seg); e != comp {
			t.Fatalf("unescape(%q) = %q, which escapes to %q", comp, seg, e)
		}
	})
}
