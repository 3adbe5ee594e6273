package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// parseResources parses a command line the way create does.
func parseResources(args []string) (*semantic.Resources, []string, error) {
	var o cmdOptions
	fs := newFlagSet("test")
	o.res.register(fs)
	pos, err := parseArgs(fs, args, true)
	if err != nil {
		return nil, nil, err
	}
	res, err := o.res.resources()
	return res, pos, err
}

func rule(allow bool, typ semantic.DeviceType, major, minor int64, a semantic.Access) semantic.DeviceRule {
	return semantic.DeviceRule{Allow: allow, Type: typ, Major: major, Minor: minor, Access: a}
}

func TestResourceFlags(t *testing.T) {
	rw := semantic.Read | semantic.Write
	cases := []struct {
		name string
		args []string
		want *semantic.Resources
	}{
		{"none", nil, nil},
		{"memory", []string{"--memory", "512MiB"}, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(512 * semantic.MiB)}}},
		{"memory short suffix and fraction", []string{"--memory=1.5G"}, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(3 * semantic.GiB / 2)}}},
		{"memory high", []string{"--memory-high", "max"}, &semantic.Resources{Memory: &semantic.Memory{High: ptr(semantic.Bytes(semantic.Unlimited))}}},
		{"memory low", []string{"--memory-low", "4096"}, &semantic.Resources{Memory: &semantic.Memory{Low: ptr(semantic.Bytes(4096))}}},
		{"memory min", []string{"--memory-min", "64M"}, &semantic.Resources{Memory: &semantic.Memory{Min: ptr(64 * semantic.MiB)}}},
		{"swap", []string{"--swap", "1GiB"}, &semantic.Resources{Memory: &semantic.Memory{Swap: ptr(semantic.GiB)}}},
		{"every memory flag", []string{"--memory", "2G", "--memory-high", "1G", "--memory-low", "256M", "--memory-min", "128M", "--swap", "0"},
			&semantic.Resources{Memory: &semantic.Memory{Max: ptr(2 * semantic.GiB), High: ptr(semantic.GiB), Low: ptr(256 * semantic.MiB), Min: ptr(128 * semantic.MiB), Swap: ptr(semantic.Bytes(0))}}},
		{"last value wins", []string{"--memory", "1G", "--memory", "2G"}, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(2 * semantic.GiB)}}},
		{"cpu weight", []string{"--cpu-weight", "250"}, &semantic.Resources{CPU: &semantic.CPU{Weight: ptr(uint64(250))}}},
		{"cpus", []string{"--cpus", "1.5"}, &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5}}}},
		{"cpus with duration period", []string{"--cpus", "0.5", "--cpu-period", "50ms"}, &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.5, Period: 50 * time.Millisecond}}}},
		{"cpus max with microsecond period", []string{"--cpu-period", "200000", "--cpus", "max"}, &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0, Period: 200 * time.Millisecond}}}},
		{"cpuset", []string{"--cpuset", "0-3,7"}, &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{0, 1, 2, 3, 7}}}},
		{"mems", []string{"--mems", "0"}, &semantic.Resources{CPU: &semantic.CPU{Mems: semantic.CPUSet{0}}}},
		{"io weight", []string{"--io-weight", "10000"}, &semantic.Resources{IO: &semantic.IO{Weight: ptr(uint64(10000))}}},
		{"io limits repeat", []string{"--io-limit", "8:0:rbps=1M,wiops=100", "--io-limit", "8:16:wbps=max,riops=5"},
			&semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{
				{Major: 8, Minor: 0, ReadBPS: uint64(semantic.MiB), WriteIOPS: 100},
				{Major: 8, Minor: 16, ReadIOPS: 5},
			}}}},
		{"pids", []string{"--pids", "100"}, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(100))}}},
		{"pids max", []string{"--pids", "max"}, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))}}},
		{"devices default only", []string{"--devices", "deny"}, &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault}}},
		{"device rules keep command-line order across both flags", []string{
			"--allow-device", "c 1:3 rwm", "--devices", "deny", "--deny-device", "c 1:3 w", "--allow-device", "b *:* r", "--deny-device", "a",
		}, &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			rule(true, semantic.CharDevice, 1, 3, semantic.AllAccess),
			rule(false, semantic.CharDevice, 1, 3, semantic.Write),
			rule(true, semantic.BlockDevice, semantic.Wildcard, semantic.Wildcard, semantic.Read),
			rule(false, semantic.AnyDevice, semantic.Wildcard, semantic.Wildcard, semantic.AllAccess),
		}}}},
		{"device rule from a node", []string{"--devices", "allow", "--deny-device", "/dev/null:rw"},
			&semantic.Resources{Devices: &semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{
				rule(false, semantic.CharDevice, 1, 3, rw),
			}}}},
		{"hugetlb repeat", []string{"--hugetlb", "2MiB=1GiB", "--hugetlb", "1G=2G"}, &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{
			{PageSize: 2 * semantic.MiB, Limit: semantic.GiB}, {PageSize: semantic.GiB, Limit: 2 * semantic.GiB},
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, pos, err := parseResources(tc.args)
			require.NoError(t, err)
			assert.Empty(t, pos)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestResourceFlagIOLimitByDevicePath(t *testing.T) {
	dev, major, minor := findBlockDevice(t)
	got, _, err := parseResources([]string{"--io-limit", dev + ":wbps=10M"})
	require.NoError(t, err)
	assert.Equal(t, []semantic.IOLimit{{Major: major, Minor: minor, WriteBPS: uint64(10 * semantic.MiB)}}, got.IO.Limits)
}

// findBlockDevice returns some block device node of this host.
func findBlockDevice(t *testing.T) (string, int64, int64) {
	t.Helper()
	entries, err := os.ReadDir("/dev")
	require.NoError(t, err)
	for _, e := range entries {
		p := filepath.Join("/dev", e.Name())
		typ, major, minor, err := semantic.StatDevice(p)
		if err == nil && typ == semantic.BlockDevice {
			return p, major, minor
		}
	}
	t.Skip("no block device node in /dev")
	return "", 0, 0
}

func TestFlagsAfterPositionalArguments(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantPos []string
		want    *semantic.Resources
	}{
		{"flags after the path", []string{"web", "--pids", "5"}, []string{"web"}, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(5))}}},
		{"flags around the path", []string{"--pids", "5", "web", "--memory", "1G"}, []string{"web"},
			&semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.GiB)}, Pids: &semantic.Pids{Max: ptr(semantic.Count(5))}}},
		{"double dash ends flags", []string{"--pids", "5", "--", "--memory", "1G"}, []string{"--memory", "1G"},
			&semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(5))}}},
		{"a value that looks like a flag", []string{"--allow-device", "-x", "--devices=deny"}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, pos, err := parseResources(tc.args)
			if tc.want == nil {
				// "-x" was taken as --allow-device's value and refused as a rule.
				require.ErrorContains(t, err, `invalid value "-x" for flag -allow-device`)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantPos, pos)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestBadFlagValues(t *testing.T) {
	cases := []struct {
		name string
		args []string
		// want are substrings of the message: the flag, the value, why.
		want []string
	}{
		{"memory unknown suffix", []string{"--memory", "12Q"}, []string{"-memory", `"12Q"`, "unknown suffix"}},
		{"memory ambiguous suffix", []string{"--memory", "1MB"}, []string{"-memory", `"1MB"`, "ambiguous"}},
		{"memory high negative", []string{"--memory-high", "-1"}, []string{"-memory-high", `"-1"`, "want a number"}},
		{"memory low not a number", []string{"--memory-low", "lots"}, []string{"-memory-low", `"lots"`, "want a number"}},
		{"memory min two dots", []string{"--memory-min", "1.2.3"}, []string{"-memory-min", `"1.2.3"`, "not a decimal number"}},
		{"swap empty", []string{"--swap", ""}, []string{"-swap", `""`, "want a number"}},
		{"memory missing value", []string{"--memory"}, []string{"flag needs an argument", "-memory"}},
		{"cpu weight zero", []string{"--cpu-weight", "0"}, []string{"-cpu-weight", `"0"`, "out of range 1..10000"}},
		{"cpu weight too big", []string{"--cpu-weight", "10001"}, []string{"-cpu-weight", `"10001"`, "out of range 1..10000"}},
		{"cpu weight fraction", []string{"--cpu-weight", "1.5"}, []string{"-cpu-weight", `"1.5"`, "whole number"}},
		{"cpus zero", []string{"--cpus", "0"}, []string{"-cpus", `"0"`, "out of range"}},
		{"cpus too many decimals", []string{"--cpus", "1.1234567"}, []string{"-cpus", `"1.1234567"`, "more than 6 decimals"}},
		{"cpus with a unit", []string{"--cpus", "2c"}, []string{"-cpus", `"2c"`, "number of CPUs"}},
		{"cpu period too long", []string{"--cpus", "1", "--cpu-period", "2s"}, []string{"-cpu-period", `"2s"`, "out of range"}},
		{"cpu period zero", []string{"--cpus", "1", "--cpu-period", "0"}, []string{"-cpu-period", `"0"`, "positive"}},
		{"cpu period part of a microsecond", []string{"--cpus", "1", "--cpu-period", "1000500ns"}, []string{"-cpu-period", `"1000500ns"`, "whole number of microseconds"}},
		{"cpu period gibberish", []string{"--cpus", "1", "--cpu-period", "soon"}, []string{"-cpu-period", `"soon"`, "want a duration"}},
		{"cpuset backwards", []string{"--cpuset", "3-1"}, []string{"-cpuset", `"3-1"`, "runs backwards"}},
		{"cpuset empty", []string{"--cpuset", ""}, []string{"-cpuset", `""`, "empty"}},
		{"mems not a list", []string{"--mems", "x"}, []string{"-mems", `"x"`, "not a number"}},
		{"io weight zero", []string{"--io-weight", "0"}, []string{"-io-weight", `"0"`, "out of range"}},
		{"io limit without keys", []string{"--io-limit", "8:0"}, []string{"-io-limit", `"8:0"`, "DEVICE:KEY=VALUE"}},
		{"io limit unknown key", []string{"--io-limit", "8:0:foo=1"}, []string{"-io-limit", `"8:0:foo=1"`, `unknown key "foo"`}},
		{"io limit char device", []string{"--io-limit", "/dev/null:rbps=1M"}, []string{"-io-limit", "/dev/null", "not a block device"}},
		{"pids negative", []string{"--pids", "-1"}, []string{"-pids", `"-1"`, "non-negative whole number"}},
		{"devices policy", []string{"--devices", "maybe"}, []string{"-devices", `"maybe"`, `want "deny" or "allow"`}},
		{"allow device bad type", []string{"--devices", "deny", "--allow-device", "x 1:3 rwm"}, []string{"-allow-device", `"x 1:3 rwm"`, "is not a, b or c"}},
		{"deny device bad access", []string{"--devices", "deny", "--deny-device", "c 1:3 rwz"}, []string{"-deny-device", `"c 1:3 rwz"`, "not one of r, w, m"}},
		{"allow device missing node", []string{"--devices", "deny", "--allow-device", "/dev/cgsem-test-none"}, []string{"-allow-device", "/dev/cgsem-test-none", "no such file"}},
		{"hugetlb without limit", []string{"--hugetlb", "2MiB"}, []string{"-hugetlb", `"2MiB"`, "PAGESIZE=LIMIT"}},
		{"hugetlb odd page size", []string{"--hugetlb", "3000=1G"}, []string{"-hugetlb", "3000", "power of two"}},
		{"unknown flag", []string{"--memroy", "1G"}, []string{"flag provided but not defined", "-memroy"}},

		// What no single flag can judge.
		{"period without cpus", []string{"--cpu-period", "50ms"}, []string{"--cpu-period needs --cpus"}},
		{"device rules without a policy", []string{"--allow-device", "c 1:3 rwm"}, []string{"device rules need --devices"}},
		{"quota below the kernel minimum", []string{"--cpus", "0.001", "--cpu-period", "100ms"}, []string{"CPU max 0.001", "below the kernel's minimum"}},
		{"io device twice", []string{"--io-limit", "8:0:rbps=1M", "--io-limit", "8:0:wbps=1M"}, []string{"8:0", "listed twice"}},
		{"hugetlb size twice", []string{"--hugetlb", "2MiB=1G", "--hugetlb", "2MiB=2G"}, []string{"2MiB", "listed twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{})
			r := e.run(append([]string{"create", "web"}, tc.args...)...)
			assert.Equal(t, exitUsage, r.code, "stderr: %s", r.stderr)
			require.True(t, strings.HasPrefix(r.stderr, "cgsem: create: "), "stderr: %s", r.stderr)
			for _, w := range tc.want {
				assert.Contains(t, r.stderr, w)
			}
			assert.Contains(t, r.stderr, "run 'cgsem create --help' for usage")
			assert.Empty(t, r.stdout)
			assert.False(t, e.exists("web"), "a refused command changed nothing")
		})
	}
}

func TestResourceFlagsReachTheDriver(t *testing.T) {
	// The same flags through create, set and run; the fake's read-back is
	// the Normalize of what it was given.
	page := pageSize()
	args := []string{
		"--memory", fmt.Sprint(100 * page), "--memory-high", fmt.Sprint(90*page + 1), "--swap", "max",
		"--cpu-weight", "300", "--cpus", "0.5", "--cpu-period", "20ms", "--cpuset", "0", "--mems", "0",
		"--io-weight", "50", "--io-limit", "8:0:riops=7",
		"--pids", "64", "--devices", "deny", "--allow-device", "/dev/null", "--deny-device", "c 1:3 m",
		"--hugetlb", "2MiB=4MiB",
	}
	want, _, err := parseResources(args)
	require.NoError(t, err)
	want = want.Normalize(uint64(page))

	t.Run("create", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		e.must(append([]string{"create", "a/b"}, args...)...)
		assertManaged(t, want, e.resources("a/b"))
	})
	t.Run("set", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		e.must("create", "a")
		e.must(append([]string{"set", "a"}, args...)...)
		assertManaged(t, want, e.resources("a"))
	})
	t.Run("run", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		e.must(append(append([]string{"run", "--path", "a"}, args...), "true")...)
		assertManaged(t, want, e.resources("a"))
	})
}

// assertManaged checks that every field set in want reads back as want.
func assertManaged(t *testing.T, want, got *semantic.Resources) {
	t.Helper()
	require.NotNil(t, got)
	for _, f := range want.Fields() {
		assert.Equal(t, fieldOf(want, f), fieldOf(got, f), "field %s", f)
	}
}

func fieldOf(r *semantic.Resources, f semantic.Feature) any {
	switch f {
	case semantic.MemoryMax:
		return r.Memory.Max
	case semantic.MemoryHigh:
		return r.Memory.High
	case semantic.MemoryLow:
		return r.Memory.Low
	case semantic.MemoryMin:
		return r.Memory.Min
	case semantic.MemorySwap:
		return r.Memory.Swap
	case semantic.CPUWeight:
		return r.CPU.Weight
	case semantic.CPUMaxFeature:
		return r.CPU.Max
	case semantic.CPUSetCPUs:
		return r.CPU.Cpus
	case semantic.CPUSetMems:
		return r.CPU.Mems
	case semantic.IOWeight:
		return r.IO.Weight
	case semantic.IOLimits:
		return r.IO.Limits
	case semantic.PidsMax:
		return r.Pids.Max
	case semantic.DevicesFeature:
		return r.Devices
	case semantic.HugeTLB:
		return r.HugeTLB
	}
	panic("unknown feature " + f)
}
