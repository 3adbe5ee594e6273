package devfilter

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cgsem/cgsem/semantic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The kernel's request bits and the semantic access they mean, written out
// here independently of kernelAccess so a swapped bit in the compiler shows.
var testAccessBits = []struct {
	kernel uint32
	access semantic.Access
}{
	{1, semantic.Mknod},
	{2, semantic.Read},
	{4, semantic.Write},
}

func semanticAccess(kernel uint32) semantic.Access {
	var a semantic.Access
	for _, b := range testAccessBits {
		if kernel&b.kernel != 0 {
			a |= b.access
		}
	}
	return a
}

var testTypes = []struct {
	kernel uint32
	typ    semantic.DeviceType
}{
	{1, semantic.BlockDevice},
	{2, semantic.CharDevice},
}

// probeNumbers returns the numbers worth probing for a list: every number a
// rule names, its neighbours, and the extremes.
func probeNumbers(d *semantic.Devices, major bool, limit int64) []int64 {
	set := map[int64]bool{0: true, 1: true, limit: true}
	for _, r := range d.Rules {
		n := r.Minor
		if major {
			n = r.Major
		}
		if n == semantic.Wildcard {
			continue
		}
		for _, m := range []int64{n - 1, n, n + 1} {
			if m >= 0 && m <= limit {
				set[m] = true
			}
		}
	}
	out := make([]int64, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// agree runs prog on every probe and compares with d.Allows. It returns
// the first disagreement.
func agree(d *semantic.Devices, code []byte) error {
	prog, err := decode(code)
	if err != nil {
		return fmt.Errorf("program refused: %w\n%s", err, disasm(code))
	}
	majors := probeNumbers(d, true, semantic.MaxMajor)
	minors := probeNumbers(d, false, semantic.MaxMinor)
	for _, typ := range testTypes {
		for _, major := range majors {
			for _, minor := range minors {
				for req := uint32(1); req <= 7; req++ {
					got, err := run(prog, newDevCtx(typ.kernel, req, uint32(major), uint32(minor)))
					if err != nil {
						return fmt.Errorf("%s: %w\n%s", d.Rules, err, disasm(code))
					}
					want := d.Allows(typ.typ, major, minor, semanticAccess(req))
					if (got == 1) != want {
						return fmt.Errorf("default %s, rules %v: %c %d:%d request %q: program says %v, reference %v\n%s",
							d.Default, d.Rules, typ.typ, major, minor, semanticAccess(req), got == 1, want, disasm(code))
					}
				}
			}
		}
	}
	return nil
}

// agreeBoth checks the optimized and the plain compilation.
func agreeBoth(d *semantic.Devices) error {
	for _, optimize := range []bool{true, false} {
		p, err := compile(cloneDevices(d), optimize)
		if err != nil {
			return fmt.Errorf("compile (optimize=%v): %w", optimize, err)
		}
		if err := agree(d, p.Bytes()); err != nil {
			return fmt.Errorf("optimize=%v: %w", optimize, err)
		}
	}
	return nil
}

func cloneDevices(d *semantic.Devices) *semantic.Devices {
	return &semantic.Devices{Default: d.Default, Rules: slices.Clone(d.Rules)}
}

func mustRule(t testing.TB, allow bool, s string) semantic.DeviceRule {
	t.Helper()
	r, err := semantic.ParseDeviceRule(s, allow)
	require.NoError(t, err)
	return r
}

func allow(t testing.TB, s string) semantic.DeviceRule { t.Helper(); return mustRule(t, true, s) }
func deny(t testing.TB, s string) semantic.DeviceRule  { t.Helper(); return mustRule(t, false, s) }

func TestEncoding(t *testing.T) {
	if bigEndian() {
		t.Skip("the golden bytes below are little-endian")
	}
	// Golden bytes as the kernel's verifier log and bpftool print them.
	tests := []struct {
		name string
		in   insn
		want []byte
	}{
		{"load access_type", insn{op: opLDXW, dst: r2, src: r1, off: ctxAccessType}, []byte{0x61, 0x12, 0, 0, 0, 0, 0, 0}},
		{"load minor", insn{op: opLDXW, dst: r5, src: r1, off: ctxMinor}, []byte{0x61, 0x15, 8, 0, 0, 0, 0, 0}},
		{"return 1", insn{op: opMOVK, dst: r0, imm: 1}, []byte{0xb7, 0, 0, 0, 1, 0, 0, 0}},
		{"mov reg", insn{op: opMOVX, dst: r3, src: r2}, []byte{0xbf, 0x23, 0, 0, 0, 0, 0, 0}},
		{"and32 type", insn{op: opAND32K, dst: r3, imm: 0xffff}, []byte{0x54, 0x03, 0, 0, 0xff, 0xff, 0, 0}},
		{"deny write", insn{op: opANDK, dst: r0, imm: ^int32(accWrite)}, []byte{0x57, 0, 0, 0, 0xfb, 0xff, 0xff, 0xff}},
		{"jne major", insn{op: opJNEK, dst: r4, off: 3, imm: 136}, []byte{0x55, 0x04, 3, 0, 136, 0, 0, 0}},
		{"exit", insn{op: opEXIT}, []byte{0x95, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, appendInsn(nil, tt.in))
		})
	}
}

// TestInterpreterRefuses makes sure the interpreter can fail: each program
// breaks one rule the verifier enforces.
func TestInterpreterRefuses(t *testing.T) {
	enc := func(ins ...insn) []byte {
		var b []byte
		for _, in := range ins {
			b = appendInsn(b, in)
		}
		return b
	}
	ret := func(v int32) []insn { return []insn{{op: opMOVK, dst: r0, imm: v}, {op: opEXIT}} }
	tests := []struct {
		name string
		code []byte
	}{
		{"empty", nil},
		{"returns 2", enc(ret(2)...)},
		{"unset r0", enc(insn{op: opEXIT})},
		{"unset r3", enc(append([]insn{{op: opMOVX, dst: r0, src: r3}}, insn{op: opEXIT})...)},
		{"context offset 12", enc(append([]insn{{op: opLDXW, dst: r2, src: r1, off: 12}}, ret(0)...)...)},
		{"load through scalar", enc(append([]insn{{op: opMOVK, dst: r2, imm: 0}, {op: opLDXW, dst: r3, src: r2}}, ret(0)...)...)},
		{"arithmetic on context", enc(append([]insn{{op: opORK, dst: r1, imm: 1}}, ret(0)...)...)},
		{"falls off the end", enc(insn{op: opMOVK, dst: r0, imm: 0})},
		{"backward jump", enc(insn{op: opMOVK, dst: r0, imm: 0}, insn{op: opJEQK, dst: r0, off: -2}, insn{op: opEXIT})},
		{"jump out of range", enc(insn{op: opMOVK, dst: r0, imm: 0}, insn{op: opJEQK, dst: r0, off: 5}, insn{op: opEXIT})},
		{"unreachable", enc(append(ret(0), ret(1)...)...)},
		{"unknown opcode", enc(append([]insn{{op: 0x07, dst: r0, imm: 1}}, ret(0)...)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := decode(tt.code)
			if err == nil {
				_, err = run(prog, newDevCtx(devChar, accRead, 1, 3))
			}
			assert.Error(t, err)
		})
	}
}

func TestCompileAgreesWithReference(t *testing.T) {
	tests := []struct {
		name  string
		def   semantic.DevicePolicy
		rules []semantic.DeviceRule
	}{
		{"deny all", semantic.DenyByDefault, nil},
		{"allow all", semantic.AllowByDefault, nil},
		{"deny all but null", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c 1:3 rwm")}},
		{"allow all but zero write", semantic.AllowByDefault, []semantic.DeviceRule{deny(t, "c 1:5 w")}},
		{"zero read only", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c 1:5 r")}},
		{"mknod anything", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c *:* m"), allow(t, "b *:* m")}},
		{"block major wildcard minor", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "b 8:* rw")}},
		{"char any major fixed minor", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c *:0 r")}},
		{"deny a then allow one", semantic.AllowByDefault, []semantic.DeviceRule{deny(t, "a"), allow(t, "c 1:3 rw")}},
		{"allow one then deny a", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c 1:3 rw"), deny(t, "a *:* w")}},
		{"later deny narrows", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c 1:* rwm"), deny(t, "c 1:5 w")}},
		{"earlier deny overridden", semantic.DenyByDefault, []semantic.DeviceRule{deny(t, "c 1:5 w"), allow(t, "c 1:* rwm")}},
		{"per bit last match", semantic.DenyByDefault, []semantic.DeviceRule{
			allow(t, "c 1:3 rw"), deny(t, "c *:3 r"), allow(t, "c 1:* m"), deny(t, "c 1:3 m"),
		}},
		{"same device alternating", semantic.AllowByDefault, []semantic.DeviceRule{
			deny(t, "c 1:3 r"), allow(t, "c 1:3 r"), deny(t, "c 1:3 w"), allow(t, "c 1:3 m"), deny(t, "c 1:3 r"),
		}},
		{"char and block same numbers", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "c 8:0 r"), deny(t, "b 8:0 rwm"), allow(t, "b 8:1 w")}},
		{"type wildcard after numbers", semantic.DenyByDefault, []semantic.DeviceRule{allow(t, "b 7:0 rwm"), deny(t, "b *:* w")}},
		{"extremes", semantic.DenyByDefault, []semantic.DeviceRule{
			allow(t, fmt.Sprintf("c %d:%d rwm", semantic.MaxMajor, semantic.MaxMinor)), allow(t, "b 0:0 r"),
		}},
		{"runc-like default list", semantic.DenyByDefault, []semantic.DeviceRule{
			allow(t, "c *:* m"), allow(t, "b *:* m"),
			allow(t, "c 1:3 rwm"), allow(t, "c 1:8 rwm"), allow(t, "c 1:7 rwm"), allow(t, "c 5:0 rwm"),
			allow(t, "c 1:5 rwm"), allow(t, "c 1:9 rwm"), allow(t, "c 5:1 rwm"), allow(t, "c 136:* rwm"),
			allow(t, "c 5:2 rwm"), allow(t, "c 10:200 rwm"), deny(t, "c 10:229 rwm"),
		}},
		{"wildcard rules fold into default", semantic.DenyByDefault, []semantic.DeviceRule{
			allow(t, "a *:* r"), deny(t, "c 1:3 r"), deny(t, "a *:* w"), allow(t, "a *:* m"), allow(t, "c 1:3 w"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &semantic.Devices{Default: tt.def, Rules: tt.rules}
			require.NoError(t, agreeBoth(d))
		})
	}
}

// TestCompileUnknownAccessFollowsDefault: a request bit the kernel may add
// later is named by no rule, so it follows the default like any unnamed bit.
func TestCompileUnknownAccessFollowsDefault(t *testing.T) {
	const unknown = 1 << 3
	tests := []struct {
		name string
		def  semantic.DevicePolicy
		want uint64
	}{
		{"default deny", semantic.DenyByDefault, 0},
		{"default allow", semantic.AllowByDefault, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(&semantic.Devices{Default: tt.def, Rules: []semantic.DeviceRule{allow(t, "c 1:3 rwm"), deny(t, "c 1:5 rwm")}})
			require.NoError(t, err)
			prog, err := decode(p.Bytes())
			require.NoError(t, err)
			for _, dev := range [][2]uint32{{1, 3}, {1, 5}, {1, 7}} {
				got, err := run(prog, newDevCtx(devChar, unknown, dev[0], dev[1]))
				require.NoError(t, err)
				assert.Equal(t, tt.want, got, "c %d:%d", dev[0], dev[1])
			}
		})
	}
}

// testAlphabet is a small rule universe that still has every shape:
// each type, numbers that collide and that don't, wildcards in each place.
func testAlphabet(accesses []semantic.Access) []semantic.DeviceRule {
	var out []semantic.DeviceRule
	shapes := []struct {
		typ          semantic.DeviceType
		major, minor int64
	}{{semantic.AnyDevice, semantic.Wildcard, semantic.Wildcard}}
	for _, typ := range []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice} {
		for _, major := range []int64{semantic.Wildcard, 1, 2} {
			for _, minor := range []int64{semantic.Wildcard, 3, 4} {
				shapes = append(shapes, struct {
					typ          semantic.DeviceType
					major, minor int64
				}{typ, major, minor})
			}
		}
	}
	for _, s := range shapes {
		for _, a := range accesses {
			for _, allow := range []bool{true, false} {
				out = append(out, semantic.DeviceRule{Allow: allow, Type: s.typ, Major: s.major, Minor: s.minor, Access: a})
			}
		}
	}
	return out
}

// TestCompileExhaustivePairs compiles every ordered pair of rules of a
// small universe, under both defaults, and checks each on the probe grid.
func TestCompileExhaustivePairs(t *testing.T) {
	accesses := []semantic.Access{semantic.Read, semantic.Write, semantic.Mknod, semantic.Read | semantic.Write, semantic.AllAccess}
	if testing.Short() {
		accesses = []semantic.Access{semantic.Read, semantic.Read | semantic.Write, semantic.AllAccess}
	}
	alphabet := testAlphabet(accesses)
	for _, def := range []semantic.DevicePolicy{semantic.DenyByDefault, semantic.AllowByDefault} {
		t.Run(string(def), func(t *testing.T) {
			t.Parallel()
			n := 0
			for _, a := range alphabet {
				for _, b := range alphabet {
					d := &semantic.Devices{Default: def, Rules: []semantic.DeviceRule{a, b}}
					p, err := Compile(d)
					require.NoError(t, err)
					if err := agree(d, p.Bytes()); err != nil {
						t.Fatal(err)
					}
					n++
				}
			}
			t.Logf("%d rule lists checked", n)
		})
	}
}

// TestCompileExhaustiveTriples does the same for triples of a smaller
// universe, where a middle rule can be shadowed, restored or overridden.
func TestCompileExhaustiveTriples(t *testing.T) {
	if testing.Short() {
		t.Skip("slow; the pairs and the fuzz seeds cover the short run")
	}
	var alphabet []semantic.DeviceRule
	for _, r := range testAlphabet([]semantic.Access{semantic.Read, semantic.Read | semantic.Write}) {
		// Keep wildcards on one axis at a time and one number per axis so
		// the universe stays small yet every covers/overlaps case remains.
		if r.Major == 2 || r.Minor == 4 {
			continue
		}
		alphabet = append(alphabet, r)
	}
	for _, def := range []semantic.DevicePolicy{semantic.DenyByDefault, semantic.AllowByDefault} {
		t.Run(string(def), func(t *testing.T) {
			t.Parallel()
			n := 0
			for _, a := range alphabet {
				for _, b := range alphabet {
					for _, c := range alphabet {
						d := &semantic.Devices{Default: def, Rules: []semantic.DeviceRule{a, b, c}}
						p, err := Compile(d)
						require.NoError(t, err)
						if err := agree(d, p.Bytes()); err != nil {
							t.Fatal(err)
						}
						n++
					}
				}
			}
			t.Logf("%d rule lists checked", n)
		})
	}
}

func TestCompileRefusesInvalid(t *testing.T) {
	tests := []struct {
		name string
		d    *semantic.Devices
	}{
		{"nil", nil},
		{"no default", &semantic.Devices{}},
		{"numbered any", &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.AnyDevice, Major: 1, Minor: semantic.Wildcard, Access: semantic.Read}}}},
		{"major too large", &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: semantic.MaxMajor + 1, Minor: 0, Access: semantic.Read}}}},
		{"no access", &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.d)
			require.Error(t, err)
			assert.True(t, errors.Is(err, semantic.ErrInvalid), "%v", err)
		})
	}
}

// TestCompileOptimizes checks that equivalent lists the optimizer is meant
// to see through compile to identical bytes (so a Cache shares them), and
// that it never makes a program longer.
func TestCompileOptimizes(t *testing.T) {
	tests := []struct {
		name string
		def  semantic.DevicePolicy
		a, b []semantic.DeviceRule
	}{
		{"shadowed by a later rule", semantic.DenyByDefault,
			[]semantic.DeviceRule{allow(t, "c 1:3 r"), allow(t, "c 1:5 rwm"), deny(t, "c 1:* r")},
			[]semantic.DeviceRule{allow(t, "c 1:5 wm"), deny(t, "c 1:* r")}},
		{"allow under allow default", semantic.AllowByDefault,
			[]semantic.DeviceRule{allow(t, "c 1:3 rwm"), deny(t, "c 1:5 w")},
			[]semantic.DeviceRule{deny(t, "c 1:5 w")}},
		{"deny under deny default", semantic.DenyByDefault,
			[]semantic.DeviceRule{deny(t, "b 8:0 rwm"), allow(t, "c 1:3 rwm")},
			[]semantic.DeviceRule{allow(t, "c 1:3 rwm")}},
		{"duplicates merge", semantic.DenyByDefault,
			[]semantic.DeviceRule{allow(t, "c 1:3 r"), allow(t, "c 1:3 w"), allow(t, "c 1:3 m")},
			[]semantic.DeviceRule{allow(t, "c 1:3 rwm")}},
		{"shadowed by an a rule", semantic.DenyByDefault,
			[]semantic.DeviceRule{allow(t, "c 1:3 w"), deny(t, "b 8:* r"), allow(t, "a *:* rwm")},
			[]semantic.DeviceRule{allow(t, "a *:* rwm")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			da := &semantic.Devices{Default: tt.def, Rules: tt.a}
			pa, err := Compile(da)
			require.NoError(t, err)
			pb, err := Compile(&semantic.Devices{Default: tt.def, Rules: tt.b})
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pa.Bytes(), pb.Bytes()), "a:\n%s\nb:\n%s", disasm(pa.Bytes()), disasm(pb.Bytes()))
			plain, err := compile(cloneDevices(da), false)
			require.NoError(t, err)
			assert.LessOrEqual(t, pa.Len(), plain.Len())
			require.NoError(t, agreeBoth(da))
		})
	}
}

// TestCompileDoesNotModifyInput: the driver keeps the list it compiled for
// exact read-back, so Compile must not touch it.
func TestCompileDoesNotModifyInput(t *testing.T) {
	d := &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
		allow(t, "c 1:3 r"), allow(t, "c 1:3 rwm"), allow(t, "a *:* m"), deny(t, "b 8:* w"),
	}}
	before := cloneDevices(d)
	_, err := Compile(d)
	require.NoError(t, err)
	assert.Equal(t, before, d)
}
