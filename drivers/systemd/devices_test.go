package systemd

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

const (
	c, b, a = semantic.CharDevice, semantic.BlockDevice, semantic.AnyDevice
	wild    = semantic.Wildcard
	r, w, m = semantic.Read, semantic.Write, semantic.Mknod
	rwm     = semantic.AllAccess
)

func allow(t semantic.DeviceType, major, minor int64, acc semantic.Access) semantic.DeviceRule {
	return semantic.DeviceRule{Allow: true, Type: t, Major: major, Minor: minor, Access: acc}
}

func deny(t semantic.DeviceType, major, minor int64, acc semantic.Access) semantic.DeviceRule {
	return semantic.DeviceRule{Type: t, Major: major, Minor: minor, Access: acc}
}

// testMajors is a /proc/devices with sd registered, and the pts majors
// registered twice (as they are where more than 256 ptys are allowed).
func testMajors(t *testing.T) majorNames {
	t.Helper()
	m, err := parseProcDevices([]byte(`Character devices:
  1 mem
  4 /dev/vc/0
  4 tty
  5 /dev/tty
136 pts
137 pts
254 gpio*chip

Block devices:
  8 sd
 65 sd
259 blkext
253 device-mapper
`))
	require.NoError(t, err)
	return m
}

func TestDeviceProperties(t *testing.T) {
	majors := testMajors(t)
	unique := majorNames{c: {1: {"mem"}, 136: {"pts"}}, b: {8: {"sd"}}}
	for _, c := range []struct {
		name   string
		names  majorNames
		list   semantic.Devices
		policy string
		allow  []deviceAllow
		bad    bool
	}{
		{name: "AllowAllIsAuto", list: semantic.Devices{Default: semantic.AllowByDefault},
			policy: "auto"},
		{name: "AllowAllWithAllowRules", list: semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r)}},
			policy: "auto"},
		{name: "DenyAllIsStrictEmpty", list: semantic.Devices{Default: semantic.DenyByDefault},
			policy: "strict"},
		{name: "Node", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w)}},
			policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "rw"}}},
		{name: "BlockNode", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(b, 8, 0, r)}},
			policy: "strict", allow: []deviceAllow{{"/dev/block/8:0", "r"}}},
		{name: "EveryChar", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, wild, wild, m)}},
			policy: "strict", allow: []deviceAllow{{"char-*", "m"}}},
		{name: "EveryDeviceSomeAccess", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(a, wild, wild, r)}},
			policy: "strict", allow: []deviceAllow{{"char-*", "r"}, {"block-*", "r"}}},
		{name: "WholeMajorUniqueName", names: unique, list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 136, wild, r|w)}},
			policy: "strict", allow: []deviceAllow{{"char-pts", "rw"}}},
		{name: "WholeMajorSharedName", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 136, wild, r|w)}},
			bad: true},
		{name: "WholeMajorTwoNames", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 4, wild, r)}},
			bad: true},
		{name: "WholeMajorUnregistered", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(b, 7, wild, r)}},
			bad: true},
		{name: "WholeMajorGlobName", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 254, wild, r)}},
			bad: true},
		{name: "WholeMajorNameWithDash", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(b, 253, wild, r)}},
			policy: "strict", allow: []deviceAllow{{"block-device-mapper", "r"}}},
		{name: "MinorOfEveryMajor", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, wild, 3, r)}},
			bad: true},
		{name: "DenyTakesBitsOutOfCoveredEntry", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, 1, 3, rwm), deny(c, 1, 3, m)}},
			policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "rw"}}},
		{name: "DenyRemovesEntry", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, 1, 3, r), allow(c, 1, 5, r), deny(c, 1, wild, rwm)}},
			policy: "strict"},
		{name: "DenyOfOtherDeviceIsNoOp", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, 1, 3, r), deny(c, 1, 5, r)}},
			policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "r"}}},
		{name: "DenyCarvesFromWildcard", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, wild, wild, r|w), deny(c, 1, 5, w)}},
			bad: true},
		{name: "AllowDefaultWithDeny", list: semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{deny(c, 1, 3, w)}},
			bad: true},
		{name: "AllowDefaultDenyOneBitEverywhere", list: semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{deny(a, wild, wild, m)}},
			policy: "strict", allow: []deviceAllow{{"char-*", "rw"}, {"block-*", "rw"}}},
		{name: "AllowDefaultDenyBlocks", list: semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{deny(b, wild, wild, rwm)}},
			policy: "strict", allow: []deviceAllow{{"char-*", "rwm"}}},
		{name: "DenyThenAllowAgain", list: semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, 1, 3, rwm), deny(c, 1, 3, rwm), allow(c, 1, 3, r)}},
			policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "r"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			names := c.names
			if names == nil {
				names = majors
			}
			policy, got, err := deviceProperties(&c.list, names)
			if c.bad {
				require.ErrorIs(t, err, errDevices)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.policy, policy)
			assert.Equal(t, c.allow, got)
			// Read back, the list grants what the request grants.
			back := devicesFromProperties(policy, got, names, noNodes)
			requireSameAccess(t, &c.list, back)
		})
	}
}

func noNodes(string) (semantic.DeviceType, int64, int64, bool) { return 0, 0, 0, false }

// requireSameAccess compares two lists on a grid of devices.
func requireSameAccess(t *testing.T, want, got *semantic.Devices) {
	t.Helper()
	for _, typ := range []semantic.DeviceType{c, b} {
		for _, major := range []int64{0, 1, 4, 5, 7, 8, 65, 136, 137, 253, 254, semantic.MaxMajor} {
			for _, minor := range []int64{0, 1, 3, 5, 7, semantic.MaxMinor} {
				require.Equal(t, want.Allowed(typ, major, minor), got.Allowed(typ, major, minor),
					"%c %d:%d: want %v, got %v", typ, major, minor, want, got)
			}
		}
	}
}

func TestDevicesFromProperties(t *testing.T) {
	majors := testMajors(t)
	for _, c := range []struct {
		name   string
		policy string
		allow  []deviceAllow
		want   semantic.Devices
	}{
		{"AutoEmptyAllowsAll", "auto", nil, semantic.Devices{Default: semantic.AllowByDefault}},
		{"StrictEmptyDeniesAll", "strict", nil, semantic.Devices{Default: semantic.DenyByDefault}},
		{"ClosedAddsDefaults", "closed", []deviceAllow{{"/dev/block/8:0", "r"}}, semantic.Devices{Default: semantic.DenyByDefault,
			Rules: append(append([]semantic.DeviceRule{}, closedDefaults...), allow(c, 136, wild, r|w), allow(c, 137, wild, r|w), allow(b, 8, 0, r))}},
		{"AutoWithEntriesIsClosed", "auto", []deviceAllow{{"char-pts", "r"}}, semantic.Devices{Default: semantic.DenyByDefault,
			Rules: append(append([]semantic.DeviceRule{}, closedDefaults...), allow(c, 136, wild, r|w), allow(c, 137, wild, r|w))}},
		{"GroupGlob", "strict", []deviceAllow{{"block-s*", "w"}}, semantic.Devices{Default: semantic.DenyByDefault,
			Rules: []semantic.DeviceRule{allow(b, 8, wild, w), allow(b, 65, wild, w)}}},
		{"UnresolvableSkipped", "strict", []deviceAllow{{"/dev/nonexistent", "r"}, {"/dev/char/1:5", "bogus"}}, semantic.Devices{Default: semantic.DenyByDefault}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := devicesFromProperties(c.policy, c.allow, majors, noNodes)
			requireSameAccess(t, &c.want, got)
		})
	}
}

func TestParseProcDevices(t *testing.T) {
	m := testMajors(t)
	assert.Equal(t, []string{"/dev/vc/0", "tty"}, m[c][4])
	assert.Equal(t, []string{"sd"}, m[b][65])
	name, err := m.groupName(b, 253)
	require.NoError(t, err)
	assert.Equal(t, "device-mapper", name)
	assert.Equal(t, []int64{136, 137}, m.majorsNamed(c, "pts"))
	for _, bad := range []string{"1 mem\n", "Character devices:\nx mem\n", "Block devices:\n99999 big\n"} {
		_, err := parseProcDevices([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
	if b, err := os.ReadFile("/proc/devices"); err == nil {
		_, err := parseProcDevices(b)
		assert.NoError(t, err, "this host's /proc/devices")
	}
}

// FuzzCompileDevices: a list either compiles to an allow list that grants
// exactly what the reference evaluator says, or is refused.
func FuzzCompileDevices(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4})
	f.Add([]byte{1, 0x81, 0x12, 0x07})
	f.Add([]byte{0, 1, 0, 0, 7, 0, 0, 0, 4})
	names := majorNames{c: {1: {"mem"}, 5: {"tty"}, 136: {"pts"}}, b: {8: {"sd"}}}
	majors := []int64{wild, 1, 5, 136, 8}
	minors := []int64{wild, 0, 3, 5}
	types := []semantic.DeviceType{c, b, a}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		d := &semantic.Devices{Default: semantic.DenyByDefault}
		if data[0]&1 == 1 {
			d.Default = semantic.AllowByDefault
		}
		for i := 1; i+3 < len(data) && len(d.Rules) < 8; i += 4 {
			typ := types[int(data[i])%len(types)]
			major, minor := majors[int(data[i+1])%len(majors)], minors[int(data[i+2])%len(minors)]
			if typ == a {
				major, minor = wild, wild
			}
			acc := semantic.Access(data[i+3]) & rwm
			if acc == 0 {
				acc = r
			}
			d.Rules = append(d.Rules, semantic.DeviceRule{Allow: data[i]&0x80 == 0, Type: typ, Major: major, Minor: minor, Access: acc})
		}
		if d.Validate() != nil {
			return
		}
		policy, allow, err := deviceProperties(d, names)
		if err != nil {
			return
		}
		back := devicesFromProperties(policy, allow, names, noNodes)
		for _, typ := range []semantic.DeviceType{c, b} {
			for _, major := range []int64{0, 1, 2, 5, 8, 136, semantic.MaxMajor} {
				for _, minor := range []int64{0, 3, 5, 9} {
					if w, g := d.Allowed(typ, major, minor), back.Allowed(typ, major, minor); w != g {
						t.Fatalf("%v compiled to %s %v, which grants %q on %c %d:%d, want %q", d, policy, allow, g, typ, major, minor, w)
					}
				}
			}
		}
	})
}
