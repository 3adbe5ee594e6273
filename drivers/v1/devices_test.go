package v1

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func rule(t testing.TB, allow bool, s string) semantic.DeviceRule {
	t.Helper()
	r, err := semantic.ParseDeviceRule(s, allow)
	require.NoError(t, err)
	return r
}

func list(t testing.TB, def semantic.DevicePolicy, rules ...string) *semantic.Devices {
	t.Helper()
	d := &semantic.Devices{Default: def}
	for _, s := range rules {
		allow := true
		if s[0] == '!' {
			allow, s = false, s[1:]
		}
		d.Rules = append(d.Rules, rule(t, allow, s))
	}
	return d
}

// probe devices: every number the tests name, a neighbour, and extremes.
var (
	probeMajors = []int64{0, 1, 2, 4, 5, 8, 9, 136, semantic.MaxMajor}
	probeMinors = []int64{0, 1, 3, 4, 5, 6, 7, semantic.MaxMinor}
	probeTypes  = []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice}
)

// sameAsReference checks the kernel's evaluation of s against the
// reference evaluator of d on every probe device and kernel request.
func sameAsReference(t *testing.T, s devState, d *semantic.Devices) {
	t.Helper()
	for _, typ := range probeTypes {
		for _, ma := range probeMajors {
			for _, mi := range probeMinors {
				for _, a := range kernelRequests {
					if want, got := d.Allows(typ, ma, mi, a), s.grants(typ, ma, mi, a); want != got {
						t.Fatalf("%c %d:%d %s under %s compiled to %v: kernel grants %v, reference %v",
							typ, ma, mi, a, showDevices(d), s.semanticDevices().Rules, got, want)
					}
				}
			}
		}
	}
}

// within reports whether a grants nothing b does not, on the probes.
func within(a, b func(semantic.DeviceType, int64, int64, semantic.Access) bool) bool {
	for _, typ := range probeTypes {
		for _, ma := range probeMajors {
			for _, mi := range probeMinors {
				for _, acc := range kernelRequests {
					if a(typ, ma, mi, acc) && !b(typ, ma, mi, acc) {
						return false
					}
				}
			}
		}
	}
	return true
}

func TestCompileDevices(t *testing.T) {
	tests := []struct {
		name    string
		list    *semantic.Devices
		want    []string // the exceptions, as devices.list shows them; nil with allow
		allow   bool
		refused string
	}{
		{name: "allow all", list: list(t, semantic.AllowByDefault), allow: true},
		{name: "allow with redundant allows", list: list(t, semantic.AllowByDefault, "c 1:3 rwm"), allow: true},
		{name: "deny with a grant of everything", list: list(t, semantic.DenyByDefault, "a *:* rwm"), allow: true},
		{name: "deny all", list: list(t, semantic.DenyByDefault), want: nil},
		{name: "one node", list: list(t, semantic.DenyByDefault, "c 1:3 rwm"), want: []string{"c 1:3 rwm"}},
		{name: "docker-like", list: list(t, semantic.DenyByDefault, "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 136:* rw"),
			want: []string{"c 1:3 rwm", "c 1:5 rwm", "c 136:* rwm", "b *:* m", "c *:* m"}},
		{name: "per-bit merge into one exception", list: list(t, semantic.DenyByDefault, "c 1:3 r", "c 1:3 w"), want: []string{"c 1:3 rw"}},
		{name: "later deny narrows an earlier allow", list: list(t, semantic.DenyByDefault, "c 1:3 rwm", "!c 1:3 w"), want: []string{"c 1:3 rm"}},
		{name: "denied node inside an allowed type is fine when numbered", list: list(t, semantic.DenyByDefault, "c 1:3 rw", "c 1:5 rw", "!c 1:5 w"),
			want: []string{"c 1:3 rw", "c 1:5 r"}},
		{name: "wildcard with a hole", list: list(t, semantic.DenyByDefault, "c *:* rw", "!c 1:5 w"), refused: "cannot express"},
		{name: "allow default with a deny", list: list(t, semantic.AllowByDefault, "!c 1:3 w"), refused: "cannot express"},
		{name: "r and w from different wildcards get a numbered exception holding both", list: list(t, semantic.DenyByDefault, "c 1:* r", "c *:3 w"),
			want: []string{"c 1:3 rw", "c 1:* r", "c *:3 w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := compileDevices(tt.list)
			if tt.refused != "" {
				require.ErrorIs(t, err, semantic.ErrNotSupported)
				require.ErrorIs(t, err, errors.ErrUnsupported)
				assert.ErrorContains(t, err, tt.refused)
				assert.ErrorContains(t, err, string(semantic.DevicesFeature))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.allow, s.allow)
			var got []string
			for _, k := range s.sortedKeys() {
				got = append(got, k.spec(s.ex[k]))
			}
			assert.ElementsMatch(t, tt.want, got)
			sameAsReference(t, s, tt.list)
		})
	}
}

// randomList draws a rule list over a few numbers, so rules overlap.
func randomList(r *rand.Rand) *semantic.Devices {
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	if r.IntN(4) == 0 {
		d.Default = semantic.AllowByDefault
	}
	nums := []int64{semantic.Wildcard, 1, 4, 5}
	for range r.IntN(6) {
		x := semantic.DeviceRule{Allow: r.IntN(3) != 0, Access: semantic.Access(1 + r.IntN(7))}
		switch r.IntN(5) {
		case 0:
			x.Type, x.Major, x.Minor = semantic.AnyDevice, semantic.Wildcard, semantic.Wildcard
		case 1:
			x.Type = semantic.BlockDevice
		default:
			x.Type = semantic.CharDevice
		}
		if x.Type != semantic.AnyDevice {
			x.Major, x.Minor = nums[r.IntN(len(nums))], nums[r.IntN(len(nums))]
		}
		d.Rules = append(d.Rules, x)
	}
	return d
}

// TestCompileDevicesRandom: whatever compiles evaluates exactly as the
// reference does.
func TestCompileDevicesRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	compiled := 0
	for i := range 3000 {
		d := randomList(r)
		s, err := compileDevices(d)
		if err != nil {
			require.ErrorIs(t, err, semantic.ErrNotSupported, "case %d: %s", i, showDevices(d))
			continue
		}
		compiled++
		sameAsReference(t, s, d)
	}
	assert.Greater(t, compiled, 1000, "most random lists are expressible")
}

// TestTransitionNeverWidens walks every transition between random
// expressible lists through the kernel model, and checks the invariant
// transition documents: first each state is within the one before and
// ends within both old and new, then each state is within new; the last
// equals new; and undoing any prefix in reverse gets back to old.
func TestTransitionNeverWidens(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var lists []devState
	var refs []*semantic.Devices
	for len(lists) < 24 {
		d := randomList(r)
		if s, err := compileDevices(d); err == nil {
			lists, refs = append(lists, s), append(refs, d)
		}
	}
	for i := range lists {
		for j := range lists {
			for _, childless := range []bool{false, true} {
				old, target := lists[i], lists[j]
				steps := transition(&old, target, childless)
				states := []devState{old}
				for _, st := range steps {
					states = append(states, applyWrite(states[len(states)-1], st.w))
				}
				name := fmt.Sprintf("%s -> %s childless=%v", showDevices(refs[i]), showDevices(refs[j]), childless)
				sameAsReference(t, states[len(states)-1], refs[j])

				narrowing := true
				for k := 1; k < len(states); k++ {
					prev, cur := states[k-1], states[k]
					if narrowing && !within(cur.grants, prev.grants) {
						narrowing = false
						require.True(t, within(prev.grants, old.grants) && within(prev.grants, refs[j].Allows),
							"%s: the last narrowing state %d is not within old and new", name, k-1)
					}
					if !narrowing {
						require.True(t, within(cur.grants, refs[j].Allows), "%s: state %d grants more than new", name, k)
						require.True(t, within(prev.grants, cur.grants), "%s: state %d narrows after widening began", name, k)
					}
				}
				if !childless {
					for _, st := range steps {
						require.False(t, st.w.all && old.allow == target.allow,
							"%s: \"a\" written where the group may have children", name)
					}
				}
				for n := 0; n <= len(steps); n++ {
					s := states[n]
					for k := n - 1; k >= 0; k-- {
						for _, u := range steps[k].undo {
							s = applyWrite(s, u)
						}
					}
					require.True(t, within(s.grants, old.grants) && within(old.grants, s.grants),
						"%s: undoing %d writes does not restore the old state", name, n)
				}
			}
		}
	}
}

func TestTransitionMinimal(t *testing.T) {
	compile := func(d *semantic.Devices) devState {
		s, err := compileDevices(d)
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name      string
		cur       *devState
		target    *semantic.Devices
		childless bool
		want      []string // file: value
	}{
		{name: "new group, deny all + null", cur: nil, target: list(t, semantic.DenyByDefault, "c 1:3 rwm"),
			want: []string{"devices.deny: a", "devices.allow: c 1:3 rwm"}},
		{name: "new group, allow all", cur: nil, target: list(t, semantic.AllowByDefault),
			want: []string{"devices.allow: a"}},
		{name: "allow to allow", cur: &devState{allow: true}, target: list(t, semantic.AllowByDefault)},
		{name: "same list", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 rwm"))),
			target: list(t, semantic.DenyByDefault, "c 1:3 rwm")},
		{name: "narrow one bit", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 rwm"))),
			target: list(t, semantic.DenyByDefault, "c 1:3 rw"), want: []string{"devices.deny: c 1:3 m"}},
		{name: "swap nodes: remove first", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 rwm"))),
			target: list(t, semantic.DenyByDefault, "c 1:5 r"), want: []string{"devices.deny: c 1:3 rwm", "devices.allow: c 1:5 r"}},
		{name: "deny to allow all", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 rwm"))),
			target: list(t, semantic.AllowByDefault), want: []string{"devices.allow: a"}},
		{name: "many removals reset when childless", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 r", "c 1:5 r", "c 1:7 r"))),
			target: list(t, semantic.DenyByDefault, "c 1:9 r"), childless: true, want: []string{"devices.deny: a", "devices.allow: c 1:9 r"}},
		{name: "many removals one by one with children", cur: ptrTo(compile(list(t, semantic.DenyByDefault, "c 1:3 r", "c 1:5 r", "c 1:7 r"))),
			target: list(t, semantic.DenyByDefault, "c 1:9 r"),
			want:   []string{"devices.deny: c 1:3 r", "devices.deny: c 1:5 r", "devices.deny: c 1:7 r", "devices.allow: c 1:9 r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, st := range transition(tt.cur, compile(tt.target), tt.childless) {
				got = append(got, st.w.file+": "+st.w.value)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestDevicesFromList(t *testing.T) {
	allowAll := devicesFromList([]semantic.DeviceRule{rule(t, true, "a *:* rwm")})
	assert.True(t, allowAll.allow)
	assert.Equal(t, semantic.AllowByDefault, allowAll.semanticDevices().Default)

	s := devicesFromList([]semantic.DeviceRule{rule(t, true, "c 1:3 rwm"), rule(t, true, "b *:* m")})
	assert.False(t, s.allow)
	sameAsReference(t, s, list(t, semantic.DenyByDefault, "c 1:3 rwm", "b *:* m"))
	assert.ElementsMatch(t, list(t, semantic.DenyByDefault, "c 1:3 rwm", "b *:* m").Rules, s.semanticDevices().Rules)
}

// FuzzCompileDevices: any rule list either compiles to a state the kernel
// evaluates as the reference does, or is refused as not supported.
func FuzzCompileDevices(f *testing.F) {
	f.Add([]byte{0, 'c', 1, 3, 7, 1, 'c', 255, 255, 1})
	f.Add([]byte{1, 'b', 255, 5, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		d := &semantic.Devices{Default: semantic.DenyByDefault}
		if b[0]&1 == 1 {
			d.Default = semantic.AllowByDefault
		}
		num := func(x byte) int64 {
			if x == 255 {
				return semantic.Wildcard
			}
			return int64(x % 8)
		}
		for b = b[1:]; len(b) >= 5 && len(d.Rules) < 8; b = b[5:] {
			r := semantic.DeviceRule{Allow: b[0]&1 == 0, Type: semantic.CharDevice, Major: num(b[2]), Minor: num(b[3]), Access: semantic.Access(1 + b[4]%7)}
			switch b[1] % 3 {
			case 1:
				r.Type = semantic.BlockDevice
			case 2:
				r.Type, r.Major, r.Minor = semantic.AnyDevice, semantic.Wildcard, semantic.Wildcard
			}
			d.Rules = append(d.Rules, r)
		}
		s, err := compileDevices(d)
		if err != nil {
			require.ErrorIs(t, err, semantic.ErrNotSupported)
			return
		}
		sameAsReference(t, s, d)
	})
}
