package semantic_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

const (
	c = semantic.CharDevice
	b = semantic.BlockDevice
	a = semantic.AnyDevice
	w = semantic.Wildcard
)

func rule(allow bool, typ semantic.DeviceType, major, minor int64, acc semantic.Access) semantic.DeviceRule {
	return semantic.DeviceRule{Allow: allow, Type: typ, Major: major, Minor: minor, Access: acc}
}

func mustAccess(t testing.TB, s string) semantic.Access {
	t.Helper()
	acc, err := semantic.ParseAccess(s)
	require.NoError(t, err)
	return acc
}

func TestParseAccess(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.Access
		str  string
		why  string
	}{
		{"read", "r", semantic.Read, "r", ""},
		{"write", "w", semantic.Write, "w", ""},
		{"mknod", "m", semantic.Mknod, "m", ""},
		{"all", "rwm", semantic.AllAccess, "rwm", ""},
		{"any order", "mwr", semantic.AllAccess, "rwm", ""},
		{"read mknod", "mr", semantic.Read | semantic.Mknod, "rm", ""},
		{"empty", "", 0, "", "empty"},
		{"unknown letter", "rx", 0, "", `'x' is not one of r, w, m`},
		{"upper case", "R", 0, "", "is not one of"},
		{"repeated", "rr", 0, "", `'r' repeated`},
		{"space", "r w", 0, "", "is not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseAccess(tt.in)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.str, got.String())
		})
	}
}

// nodes makes device nodes with known numbers in a temporary directory:
// a char node, a block node, and a link to /dev/null whose name holds
// colons as /dev/disk/by-path names do. Making nodes needs CAP_MKNOD; the
// cases that use them are skipped, with the reason, without it.
type nodes struct {
	dir         string
	char, block string // "" when mknod was not permitted
	colonLink   string
	regular     string
}

func makeNodes(t *testing.T) nodes {
	t.Helper()
	n := nodes{dir: t.TempDir()}
	n.colonLink = filepath.Join(n.dir, "pci-0000:00:1f.2-null")
	require.NoError(t, os.Symlink("/dev/null", n.colonLink))
	n.regular = filepath.Join(n.dir, "regular")
	require.NoError(t, os.WriteFile(n.regular, nil, 0o600))
	char := filepath.Join(n.dir, "char")
	if err := unix.Mknod(char, unix.S_IFCHR|0o600, int(unix.Mkdev(4095, 1048575))); err == nil {
		n.char = char
	}
	block := filepath.Join(n.dir, "block")
	if err := unix.Mknod(block, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 42))); err == nil {
		n.block = block
	}
	return n
}

func TestParseDeviceRule(t *testing.T) {
	n := makeNodes(t)
	tests := []struct {
		name  string
		in    string
		allow bool
		want  semantic.DeviceRule
		spec  string // canonical Spec; "" means same as in
		kind  error  // nil when valid
		why   string
		mknod bool // uses a node made by makeNodes
	}{
		{name: "char rwm", in: "c 1:3 rwm", allow: true, want: rule(true, c, 1, 3, semantic.AllAccess)},
		{name: "deny", in: "c 1:3 rwm", allow: false, want: rule(false, c, 1, 3, semantic.AllAccess)},
		{name: "block wildcards", in: "b *:* r", allow: true, want: rule(true, b, w, w, semantic.Read)},
		{name: "any", in: "a", allow: true, want: rule(true, a, w, w, semantic.AllAccess), spec: "a *:* rwm"},
		{name: "any spelled out", in: "a *:* rwm", allow: false, want: rule(false, a, w, w, semantic.AllAccess)},
		{name: "access defaults to rwm", in: "c 1:3", allow: true, want: rule(true, c, 1, 3, semantic.AllAccess), spec: "c 1:3 rwm"},
		{name: "access reordered", in: "c 1:* mr", allow: true, want: rule(true, c, 1, w, semantic.Read|semantic.Mknod), spec: "c 1:* rm"},
		{name: "wildcard major", in: "c *:3 w", allow: true, want: rule(true, c, w, 3, semantic.Write)},
		{name: "extra spaces", in: "  c  1:3\trw ", allow: true, want: rule(true, c, 1, 3, semantic.Read|semantic.Write), spec: "c 1:3 rw"},
		{name: "largest numbers", in: "c 4095:1048575 r", allow: true, want: rule(true, c, 4095, 1048575, semantic.Read)},
		{name: "zero numbers", in: "b 0:0 r", allow: true, want: rule(true, b, 0, 0, semantic.Read)},
		{name: "node", in: "/dev/null", allow: true, want: rule(true, c, 1, 3, semantic.AllAccess), spec: "c 1:3 rwm"},
		{name: "node with access", in: "/dev/null:rw", allow: true, want: rule(true, c, 1, 3, semantic.Read|semantic.Write), spec: "c 1:3 rw"},
		{name: "node with colons in its name", in: n.colonLink, allow: true, want: rule(true, c, 1, 3, semantic.AllAccess), spec: "c 1:3 rwm"},
		{name: "node with colons and access", in: n.colonLink + ":r", allow: false, want: rule(false, c, 1, 3, semantic.Read), spec: "c 1:3 r"},
		{name: "made char node", in: n.char, allow: true, want: rule(true, c, 4095, 1048575, semantic.AllAccess), spec: "c 4095:1048575 rwm", mknod: true},
		{name: "made block node", in: n.block + ":w", allow: true, want: rule(true, b, 7, 42, semantic.Write), spec: "b 7:42 w", mknod: true},

		{name: "numbered any refused", in: "a 1:3 r", kind: semantic.ErrInvalid, why: "type a (any) needs *:*"},
		{name: "half numbered any refused", in: "a *:3 r", kind: semantic.ErrInvalid, why: "type a (any) needs *:*"},
		{name: "unknown type", in: "x 1:3 r", kind: semantic.ErrInvalid, why: `type "x" is not a, b or c`},
		{name: "long type", in: "cc 1:3 r", kind: semantic.ErrInvalid, why: "want \"TYPE MAJOR:MINOR [ACCESS]\""},
		{name: "empty", in: "", kind: semantic.ErrInvalid, why: "want \"TYPE MAJOR:MINOR [ACCESS]\""},
		{name: "type only", in: "c", kind: semantic.ErrInvalid, why: "want \"TYPE MAJOR:MINOR [ACCESS]\""},
		{name: "too many fields", in: "c 1:3 rw x", kind: semantic.ErrInvalid, why: "want \"TYPE MAJOR:MINOR [ACCESS]\""},
		{name: "no colon", in: "c 1 rw", kind: semantic.ErrInvalid, why: `"1" is not MAJOR:MINOR`},
		{name: "major too big", in: "c 4096:0 r", kind: semantic.ErrInvalid, why: "major \"4096\" is not * or a decimal number 0..4095"},
		{name: "minor too big", in: "c 0:1048576 r", kind: semantic.ErrInvalid, why: "minor \"1048576\""},
		{name: "negative major", in: "c -1:3 r", kind: semantic.ErrInvalid, why: "major"},
		{name: "signed major", in: "c +1:3 r", kind: semantic.ErrInvalid, why: "major"},
		{name: "minus zero minor", in: "c 1:-0 r", kind: semantic.ErrInvalid, why: "minor"},
		{name: "leading zero major", in: "c 01:3 r", kind: semantic.ErrInvalid, why: "major"},
		{name: "hex major", in: "c 0x1:3 r", kind: semantic.ErrInvalid, why: "major"},
		{name: "empty major", in: "c :3 r", kind: semantic.ErrInvalid, why: "major"},
		{name: "three numbers", in: "c 1:3:4 r", kind: semantic.ErrInvalid, why: "minor"},
		{name: "bad access", in: "c 1:3 rwx", kind: semantic.ErrInvalid, why: "is not one of r, w, m"},
		{name: "repeated access", in: "c 1:3 rr", kind: semantic.ErrInvalid, why: "repeated"},
		{name: "node with bad access", in: "/dev/null:rx", kind: semantic.ErrInvalid, why: "is not one of r, w, m"},
		{name: "node with empty access", in: "/dev/null:", kind: semantic.ErrInvalid, why: "empty"},
		{name: "regular file", in: n.regular, kind: semantic.ErrInvalid, why: "not a character or block device node"},
		{name: "directory", in: n.dir, kind: semantic.ErrInvalid, why: "not a character or block device node"},
		{name: "missing node", in: "/nonexistent-cgsem-test/dev", kind: semantic.ErrNotExist, why: `stat device on "/nonexistent-cgsem-test/dev"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mknod && (n.char == "" || n.block == "") {
				t.Skip("mknod is not permitted here (needs CAP_MKNOD)")
			}
			got, err := semantic.ParseDeviceRule(tt.in, tt.allow)
			if tt.kind != nil {
				require.Error(t, err, "parsed as %v", got)
				assert.ErrorIs(t, err, tt.kind)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.NoError(t, got.Validate())
			spec := tt.spec
			if spec == "" {
				spec = tt.in
			}
			assert.Equal(t, spec, got.Spec())
			back, err := semantic.ParseDeviceRule(got.Spec(), got.Allow)
			require.NoError(t, err)
			assert.Equal(t, got, back, "Spec must parse back to the same rule")
		})
	}
}

func TestDeviceRuleValidate(t *testing.T) {
	tests := []struct {
		name string
		r    semantic.DeviceRule
		why  string
	}{
		{"char", rule(true, c, 1, 3, semantic.Read), ""},
		{"any wildcards", rule(true, a, w, w, semantic.Read), ""},
		{"zero type", rule(true, 0, 1, 3, semantic.Read), "is not a, b or c"},
		{"unknown type", rule(true, 'x', 1, 3, semantic.Read), "is not a, b or c"},
		{"major high", rule(true, c, semantic.MaxMajor+1, 3, semantic.Read), "major 4096 out of range"},
		{"major negative", rule(true, c, -2, 3, semantic.Read), "major -2 out of range"},
		{"minor high", rule(true, c, 1, semantic.MaxMinor+1, semantic.Read), "minor 1048576 out of range"},
		{"numbered any", rule(true, a, 1, w, semantic.Read), "needs *:*"},
		{"no access", rule(true, c, 1, 3, 0), "non-empty subset of rwm"},
		{"unknown access bit", rule(true, c, 1, 3, 8), "non-empty subset of rwm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.why == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, semantic.ErrInvalid)
			assert.ErrorContains(t, err, tt.why)
		})
	}
}

func TestDeviceRuleString(t *testing.T) {
	assert.Equal(t, "allow c 1:3 rwm", rule(true, c, 1, 3, semantic.AllAccess).String())
	assert.Equal(t, "deny b *:* w", rule(false, b, w, w, semantic.Write).String())
}

func TestDeviceTypeMatches(t *testing.T) {
	tests := []struct {
		name     string
		rule     semantic.DeviceType
		dev      semantic.DeviceType
		expected bool
	}{
		{"any covers char", a, c, true},
		{"any covers block", a, b, true},
		{"char covers char", c, c, true},
		{"char misses block", c, b, false},
		{"block misses char", b, c, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.expected, tt.rule.Matches(tt.dev))
		})
	}
}

func TestDevicesJSON(t *testing.T) {
	d := semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
		rule(true, c, 1, 3, semantic.AllAccess),
		rule(false, b, w, w, semantic.Write),
		rule(true, a, w, w, semantic.Read),
	}}
	out, err := json.Marshal(d)
	require.NoError(t, err)
	assert.JSONEq(t, `{"default":"deny","rules":[
		{"allow":true,"rule":"c 1:3 rwm"},
		{"allow":false,"rule":"b *:* w"},
		{"allow":true,"rule":"a *:* r"}]}`, string(out))
	var back semantic.Devices
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, d, back)

	var r semantic.DeviceRule
	assert.ErrorIs(t, json.Unmarshal([]byte(`{"allow":true,"rule":"a 1:3 r"}`), &r), semantic.ErrInvalid)
	assert.ErrorIs(t, json.Unmarshal([]byte(`{"allow":true,"rule":"/dev/null"}`), &r), semantic.ErrInvalid,
		"JSON holds resolved rules; a node path there would be stat'ed on every decode")
}

func TestDevicesValidate(t *testing.T) {
	tests := []struct {
		name string
		d    semantic.Devices
		why  string
	}{
		{"deny", semantic.Devices{Default: semantic.DenyByDefault}, ""},
		{"allow with rules", semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{rule(false, c, 1, 3, semantic.Write)}}, ""},
		{"no default", semantic.Devices{}, `device default ""`},
		{"unknown default", semantic.Devices{Default: "maybe"}, `device default "maybe"`},
		{"bad rule", semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{rule(true, a, 1, 3, semantic.Read)}}, "needs *:*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Validate()
			if tt.why == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, semantic.ErrInvalid)
			assert.ErrorContains(t, err, tt.why)
		})
	}
}

func TestDevicesAllowed(t *testing.T) {
	deny, allow := semantic.DenyByDefault, semantic.AllowByDefault
	type check struct {
		typ          semantic.DeviceType
		major, minor int64
		want         string // granted access as "rwm" letters
	}
	tests := []struct {
		name   string
		def    semantic.DevicePolicy
		rules  []semantic.DeviceRule
		checks []check
	}{
		{"deny default, no rules", deny, nil,
			[]check{{c, 1, 3, ""}, {b, 8, 0, ""}}},
		{"allow default, no rules", allow, nil,
			[]check{{c, 1, 3, "rwm"}, {b, 8, 0, "rwm"}}},
		{"one allowed node", deny, []semantic.DeviceRule{rule(true, c, 1, 3, semantic.AllAccess)},
			[]check{{c, 1, 3, "rwm"}, {c, 1, 5, ""}, {b, 1, 3, ""}}},
		{"any type matches both", deny, []semantic.DeviceRule{rule(true, a, w, w, semantic.Read)},
			[]check{{c, 1, 3, "r"}, {b, 8, 0, "r"}}},
		{"wildcard minor", deny, []semantic.DeviceRule{rule(true, c, 1, w, semantic.Read)},
			[]check{{c, 1, 3, "r"}, {c, 1, 5, "r"}, {c, 2, 3, ""}}},
		{"wildcard major", deny, []semantic.DeviceRule{rule(true, c, w, 3, semantic.Write)},
			[]check{{c, 1, 3, "w"}, {c, 7, 3, "w"}, {c, 1, 4, ""}}},
		{"later deny takes only its bits", deny, []semantic.DeviceRule{
			rule(true, c, 1, 3, semantic.AllAccess),
			rule(false, c, 1, 3, semantic.Write),
		}, []check{{c, 1, 3, "rm"}}},
		{"later allow wins over earlier deny", deny, []semantic.DeviceRule{
			rule(false, c, 1, 3, semantic.Write),
			rule(true, c, 1, 3, semantic.AllAccess),
		}, []check{{c, 1, 3, "rwm"}}},
		{"allows add up", deny, []semantic.DeviceRule{
			rule(true, c, 1, 3, semantic.Read|semantic.Write),
			rule(true, c, 1, 3, semantic.Mknod),
		}, []check{{c, 1, 3, "rwm"}}},
		{"narrow deny inside a wide allow", deny, []semantic.DeviceRule{
			rule(true, c, 1, w, semantic.AllAccess),
			rule(false, c, 1, 3, semantic.AllAccess),
		}, []check{{c, 1, 3, ""}, {c, 1, 5, "rwm"}, {c, 2, 3, ""}}},
		{"wide allow after a narrow deny overrides it", deny, []semantic.DeviceRule{
			rule(false, c, 1, 3, semantic.AllAccess),
			rule(true, c, 1, w, semantic.AllAccess),
		}, []check{{c, 1, 3, "rwm"}, {c, 1, 5, "rwm"}}},
		{"allow default with a char blacklist and an exception", allow, []semantic.DeviceRule{
			rule(false, c, w, w, semantic.AllAccess),
			rule(true, c, 1, 3, semantic.Read|semantic.Write),
		}, []check{{c, 1, 3, "rw"}, {c, 1, 5, ""}, {b, 8, 0, "rwm"}}},
		{"allow default without mknod", allow, []semantic.DeviceRule{rule(false, a, w, w, semantic.Mknod)},
			[]check{{c, 1, 3, "rw"}, {b, 8, 0, "rw"}}},
		{"rule of another type is ignored", deny, []semantic.DeviceRule{rule(true, b, 1, 3, semantic.Read)},
			[]check{{c, 1, 3, ""}, {b, 1, 3, "r"}}},
		{"allow default, deny then re-allow one bit", allow, []semantic.DeviceRule{
			rule(false, c, 1, 3, semantic.AllAccess),
			rule(true, c, 1, 3, semantic.Read),
		}, []check{{c, 1, 3, "r"}, {c, 1, 4, "rwm"}}},
		{"unnamed bits keep the earlier decision", deny, []semantic.DeviceRule{
			rule(true, c, 1, 3, semantic.Read),
			rule(false, c, 1, 3, semantic.Write),
		}, []check{{c, 1, 3, "r"}}},
		{"empty policy grants nothing by default", "", []semantic.DeviceRule{rule(true, c, 1, 3, semantic.Read)},
			[]check{{c, 1, 3, "r"}, {c, 1, 5, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &semantic.Devices{Default: tt.def, Rules: tt.rules}
			for _, ck := range tt.checks {
				got := d.Allowed(ck.typ, ck.major, ck.minor)
				assert.Equal(t, ck.want, got.String(), "%c %d:%d", ck.typ, ck.major, ck.minor)
				for _, want := range []semantic.Access{semantic.Read, semantic.Write, semantic.Mknod, semantic.Read | semantic.Write, semantic.AllAccess} {
					assert.Equal(t, want&^got == 0, d.Allows(ck.typ, ck.major, ck.minor, want),
						"Allows(%c %d:%d, %s) with %q granted", ck.typ, ck.major, ck.minor, want, got)
				}
				assert.True(t, d.Allows(ck.typ, ck.major, ck.minor, 0), "asking for nothing is always granted")
			}
		})
	}
}

// TestDevicesAllowedPerBit checks Allowed against the rule as the package
// doc states it, written independently: for each bit, scan the rules from
// the end and take the first that matches the device and names the bit.
func TestDevicesAllowedPerBit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []semantic.DeviceType{a, b, c}
	nums := []int64{w, 1, 3}
	for range 5000 {
		d := &semantic.Devices{Default: semantic.DenyByDefault}
		if rng.IntN(2) == 0 {
			d.Default = semantic.AllowByDefault
		}
		for range rng.IntN(6) {
			typ := types[rng.IntN(len(types))]
			r := rule(rng.IntN(2) == 0, typ, nums[rng.IntN(3)], nums[rng.IntN(3)], semantic.Access(1+rng.IntN(7)))
			if typ == a {
				r.Major, r.Minor = w, w
			}
			d.Rules = append(d.Rules, r)
		}
		require.NoError(t, d.Validate())
		for _, typ := range []semantic.DeviceType{b, c} {
			for _, major := range []int64{1, 3} {
				for _, minor := range []int64{1, 3} {
					var want semantic.Access
					for _, bit := range []semantic.Access{semantic.Read, semantic.Write, semantic.Mknod} {
						granted := d.Default == semantic.AllowByDefault
						for i := len(d.Rules) - 1; i >= 0; i-- {
							r := d.Rules[i]
							if r.Access&bit != 0 && (r.Type == a || r.Type == typ) &&
								(r.Major == w || r.Major == major) && (r.Minor == w || r.Minor == minor) {
								granted = r.Allow
								break
							}
						}
						if granted {
							want |= bit
						}
					}
					require.Equal(t, want, d.Allowed(typ, major, minor), "%+v on %c %d:%d", d, typ, major, minor)
				}
			}
		}
	}
}

func TestStatDevice(t *testing.T) {
	typ, major, minor, err := semantic.StatDevice("/dev/null")
	require.NoError(t, err)
	assert.Equal(t, c, typ)
	assert.Equal(t, int64(1), major)
	assert.Equal(t, int64(3), minor)

	_, _, _, err = semantic.StatDevice("/nonexistent-cgsem-test")
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	assert.ErrorIs(t, err, unix.ENOENT, "the errno stays in the chain")
}
