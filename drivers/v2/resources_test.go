package v2

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func ptr[T any](v T) *T { return &v }

// writesOf renders attributeWrites as "file=value" for comparison.
func writesOf(req *semantic.Resources) []string {
	var out []string
	for _, c := range attributeWrites(req.Normalize(4096), sortedIOLimits(req)) {
		out = append(out, c.file+"="+c.value)
	}
	return out
}

func TestAttributeWrites(t *testing.T) {
	for _, c := range []struct {
		name string
		req  *semantic.Resources
		want []string
	}{
		{"Nil", nil, nil},
		{"Empty", &semantic.Resources{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}}, nil},
		{"MemoryRoundedToPage", &semantic.Resources{Memory: &semantic.Memory{
			Max: ptr(semantic.Bytes(256<<20 + 123)), High: ptr(semantic.Bytes(semantic.Unlimited)),
			Low: ptr(semantic.Bytes(4097)), Min: ptr(semantic.Bytes(0)), Swap: ptr(semantic.Bytes(1 << 30)),
		}}, []string{"memory.max=268435456", "memory.high=max", "memory.low=4096", "memory.min=0", "memory.swap.max=1073741824"}},
		{"CPUWeightAndDefaultPeriod", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](250), Max: &semantic.CPUMax{CPUs: 1.5}}},
			[]string{"cpu.weight=250", "cpu.max=150000 100000"}},
		{"CPUThirdRoundsToMicroseconds", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3, Period: 50 * time.Millisecond}}},
			[]string{"cpu.max=16667 50000"}},
		{"CPUNoCap", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{}}}, []string{"cpu.max=max 100000"}},
		{"CPUSets", &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{3, 0, 1, 2, 7}, Mems: semantic.CPUSet{0}}},
			[]string{"cpuset.cpus=0-3,7", "cpuset.mems=0"}},
		{"IOWeightAndLimitsSortedEveryKey", &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](50), Limits: []semantic.IOLimit{
			{Major: 8, Minor: 16, WriteIOPS: 100},
			{Major: 8, Minor: 0, ReadBPS: 1 << 20},
		}}}, []string{"io.weight=default 50", "io.max=8:0 rbps=1048576 wbps=max riops=max wiops=max", "io.max=8:16 rbps=max wbps=max riops=max wiops=100"}},
		{"IOLimitNoneLiftsThrottles", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 1, Minor: 0}}}},
			[]string{"io.max=1:0 rbps=max wbps=max riops=max wiops=max"}},
		{"Pids", &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(7))}}, []string{"pids.max=7"}},
		{"PidsMax", &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))}}, []string{"pids.max=max"}},
		{"HugeTLBRoundedToItsPage", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{
			{PageSize: semantic.GiB, Limit: semantic.Unlimited},
			{PageSize: 2 * semantic.MiB, Limit: 4*2*semantic.MiB + 1},
		}}, []string{"hugetlb.2MB.max=8388608", "hugetlb.1GB.max=max"}},
		{"DevicesAreNotFiles", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, writesOf(c.req))
		})
	}
}

func TestHugeFile(t *testing.T) {
	for size, want := range map[semantic.Bytes]string{
		64 * semantic.KiB: "hugetlb.64KB.max", 512 * semantic.KiB: "hugetlb.512KB.max",
		2 * semantic.MiB: "hugetlb.2MB.max", 32 * semantic.MiB: "hugetlb.32MB.max",
		semantic.GiB: "hugetlb.1GB.max", 16 * semantic.GiB: "hugetlb.16GB.max",
	} {
		require.Equal(t, want, hugeFile(size), "size %s", size)
	}
}

func TestControllersOf(t *testing.T) {
	fs := []semantic.Feature{semantic.MemoryMax, semantic.DevicesFeature, semantic.MemorySwap, semantic.PidsMax, semantic.CPUSetCPUs, semantic.CPUWeight}
	require.Equal(t, []string{"memory", "pids", "cpuset", "cpu"}, controllersOf(fs))
	require.Nil(t, controllersOf([]semantic.Feature{semantic.DevicesFeature}))
}

func TestParseCPUMax(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     semantic.CPUMax
		bad      bool
	}{
		{name: "Max", in: "max 100000\n", want: semantic.CPUMax{Period: 100 * time.Millisecond}},
		{name: "Quota", in: "150000 100000", want: semantic.CPUMax{CPUs: 1.5, Period: 100 * time.Millisecond}},
		{name: "Captured", in: readTestdata(t, "vm-cpu.max"), want: semantic.CPUMax{CPUs: 0.5, Period: 100 * time.Millisecond}},
		{name: "NoPeriod", in: "max", bad: true},
		{name: "ZeroPeriod", in: "1000 0", bad: true},
		{name: "Garbage", in: "x 100000", bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseCPUMax(c.in)
			if c.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
	// What cpuMaxString writes, parseCPUMax reads as Normalize says.
	for _, m := range []semantic.CPUMax{{CPUs: 1.0 / 3}, {CPUs: 0.25, Period: 50 * time.Millisecond}, {}, {CPUs: 3, Period: time.Second}} {
		req := (&semantic.Resources{CPU: &semantic.CPU{Max: &m}}).Normalize(4096)
		got, err := parseCPUMax(cpuMaxString(req.CPU.Max))
		require.NoError(t, err)
		require.Equal(t, *req.CPU.Max, got, "round trip of %+v", m)
	}
}

func TestParseIOWeight(t *testing.T) {
	for in, want := range map[string]uint64{
		readTestdata(t, "vm-io.weight"): 150,
		"default 100\n8:0 50\n":         100,
		"8:0 50\ndefault 300\n":         300,
		"200\n":                         200,
	} {
		got, err := parseIOWeight(in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
	_, err := parseIOWeight("8:0 50\n")
	require.Error(t, err)
}

func TestParseIOMax(t *testing.T) {
	got, err := parseIOMax(readTestdata(t, "vm-io.max"))
	require.NoError(t, err)
	require.Equal(t, []semantic.IOLimit{{Major: 1, Minor: 0, ReadBPS: 2097152, WriteIOPS: 120}}, got)

	got, err = parseIOMax("8:16 rbps=max wbps=max riops=max wiops=5\n8:0 rbps=max wbps=max riops=max wiops=max\n")
	require.NoError(t, err)
	require.Equal(t, []semantic.IOLimit{{Major: 8, Minor: 16, WriteIOPS: 5}}, got, "a device with no limit is not listed")

	got, err = parseIOMax("")
	require.NoError(t, err)
	require.Equal(t, []semantic.IOLimit{}, got, "none is an empty list, not nil: the feature is present")

	_, err = parseIOMax("sda rbps=1\n")
	require.Error(t, err)
}

func TestIOMaxLineOf(t *testing.T) {
	content := "8:0 rbps=1 wbps=max riops=max wiops=max\n8:16 rbps=max wbps=2 riops=max wiops=max"
	require.Equal(t, "8:16 rbps=max wbps=2 riops=max wiops=max", ioMaxLineOf(content, "8:16"))
	require.Equal(t, "8:1 rbps=max wbps=max riops=max wiops=max", ioMaxLineOf(content, "8:1"))
}

// files is a group's attribute files for readBack; controllers not listed
// are not enabled for the group, so their files are absent.
type files struct {
	controllers []string
	content     map[string]string
}

func (f files) read(file string) (string, bool, error) {
	for _, c := range f.controllers {
		if controllerOfFile(file) == c {
			s, ok := f.content[file]
			if !ok {
				return "", false, errors.New("missing test file " + file)
			}
			return s, true, nil
		}
	}
	return "", false, nil
}

func TestReadBack(t *testing.T) {
	all := []semantic.Feature{
		semantic.MemoryMax, semantic.MemoryHigh, semantic.MemoryLow, semantic.MemoryMin, semantic.MemorySwap,
		semantic.CPUWeight, semantic.CPUMaxFeature, semantic.CPUSetCPUs, semantic.CPUSetMems,
		semantic.IOWeight, semantic.IOLimits, semantic.PidsMax, semantic.HugeTLB,
	}
	huge := []semantic.Bytes{2 * semantic.MiB, semantic.GiB}
	parentEffective := func(file string) (string, error) {
		return map[string]string{"cpuset.cpus.effective": "0-3", "cpuset.mems.effective": "0"}[file], nil
	}
	defaults := &semantic.Resources{
		Memory: &semantic.Memory{Max: ptr(semantic.Bytes(semantic.Unlimited)), High: ptr(semantic.Bytes(semantic.Unlimited)),
			Low: ptr(semantic.Bytes(0)), Min: ptr(semantic.Bytes(0)), Swap: ptr(semantic.Bytes(semantic.Unlimited))},
		CPU: &semantic.CPU{Weight: ptr[uint64](100), Max: &semantic.CPUMax{Period: 100 * time.Millisecond},
			Cpus: semantic.CPUSet{0, 1, 2, 3}, Mems: semantic.CPUSet{0}},
		IO:      &semantic.IO{Weight: ptr[uint64](100), Limits: []semantic.IOLimit{}},
		Pids:    &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))},
		HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: semantic.Unlimited}, {PageSize: semantic.GiB, Limit: semantic.Unlimited}},
	}
	for _, c := range []struct {
		name  string
		files files
		want  *semantic.Resources
	}{
		{name: "NothingEnabledReadsAsDefaults", want: defaults},
		{name: "Captured", files: files{
			controllers: []string{"memory", "cpu", "cpuset", "io", "pids", "hugetlb"},
			content: map[string]string{
				"memory.max": "134217728", "memory.high": "max", "memory.low": "0", "memory.min": "0", "memory.swap.max": "max",
				"cpu.weight": "100", "cpu.max": "50000 100000", "cpuset.cpus": "", "cpuset.mems": "0",
				"io.weight": "default 150", "io.max": "1:0 rbps=2097152 wbps=max riops=max wiops=120",
				"pids.max": "100", "hugetlb.2MB.max": "4194304", "hugetlb.1GB.max": "max",
			},
		}, want: &semantic.Resources{
			Memory: &semantic.Memory{Max: ptr(semantic.Bytes(128 << 20)), High: ptr(semantic.Bytes(semantic.Unlimited)),
				Low: ptr(semantic.Bytes(0)), Min: ptr(semantic.Bytes(0)), Swap: ptr(semantic.Bytes(semantic.Unlimited))},
			CPU: &semantic.CPU{Weight: ptr[uint64](100), Max: &semantic.CPUMax{CPUs: 0.5, Period: 100 * time.Millisecond},
				Cpus: semantic.CPUSet{0, 1, 2, 3}, Mems: semantic.CPUSet{0}},
			IO:      &semantic.IO{Weight: ptr[uint64](150), Limits: []semantic.IOLimit{{Major: 1, Minor: 0, ReadBPS: 2097152, WriteIOPS: 120}}},
			Pids:    &semantic.Pids{Max: ptr(semantic.Count(100))},
			HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: 4 << 20}, {PageSize: semantic.GiB, Limit: semantic.Unlimited}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readBack(c.files.read, all, huge, parentEffective)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
	t.Run("OnlyTheFeaturesAsked", func(t *testing.T) {
		got, err := readBack(files{}.read, []semantic.Feature{semantic.PidsMax}, huge, parentEffective)
		require.NoError(t, err)
		require.Equal(t, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))}}, got)
	})
	t.Run("MalformedFileIsAnError", func(t *testing.T) {
		_, err := readBack(files{controllers: []string{"memory"}, content: map[string]string{"memory.max": "lots"}}.read,
			[]semantic.Feature{semantic.MemoryMax}, huge, parentEffective)
		require.ErrorContains(t, err, "memory.max")
	})
}

func TestRestoreValue(t *testing.T) {
	// restoreValue reads through the driver's root; the parsing it relies
	// on is what this pins: what a read gives, a write takes back.
	for _, c := range []struct {
		name    string
		change  change
		content string
		want    string
	}{
		{"Plain", change{file: "memory.max", feature: semantic.MemoryMax}, "max", "max"},
		{"IOWeightDefaultOnly", change{file: "io.weight", feature: semantic.IOWeight}, "default 150\n8:0 50", "default 150"},
		{"IOMaxLine", change{file: "io.max", feature: semantic.IOLimits, key: "1:0"}, "1:0 rbps=5 wbps=max riops=max wiops=max", "1:0 rbps=5 wbps=max riops=max wiops=max"},
		{"IOMaxNoLine", change{file: "io.max", feature: semantic.IOLimits, key: "1:0"}, "", "1:0 rbps=max wbps=max riops=max wiops=max"},
		{"EmptyCpusetInherits", change{file: "cpuset.cpus", feature: semantic.CPUSetCPUs}, "", "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := restoreOf(c.change, c.content)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

func TestPlanOf(t *testing.T) {
	p := semantic.MustPath("a/b/c")
	changes := []change{
		{action: actWrite, dir: "", file: subtreeControl, value: "+memory +pids", feature: semantic.MemoryMax},
		{action: actWrite, dir: "a", file: subtreeControl, value: "+memory +pids", feature: semantic.MemoryMax},
		{action: actWrite, dir: "a/b", file: subtreeControl, value: "+pids", feature: semantic.PidsMax},
		{action: actWrite, dir: "a/b/c", file: "memory.max", value: "4096", feature: semantic.MemoryMax},
		{action: actAttach, dir: "a/b/c", feature: semantic.DevicesFeature, devices: &semantic.Devices{
			Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess}}}},
	}
	require.Equal(t, "write ../../../cgroup.subtree_control +memory +pids\n"+
		"write ../../cgroup.subtree_control +memory +pids\n"+
		"write ../cgroup.subtree_control +pids\n"+
		"write memory.max 4096\n"+
		"attach device program deny; allow c 1:3 rwm\n", planOf(p, changes).String())
	require.Empty(t, planOf(p, nil).Steps)
	require.NotNil(t, planOf(p, nil).Steps, "an empty plan has an empty list of steps")
}

func TestFirstNeeding(t *testing.T) {
	fs := []semantic.Feature{semantic.DevicesFeature, semantic.MemoryHigh, semantic.PidsMax}
	require.Equal(t, semantic.PidsMax, firstNeeding(fs, []string{"pids"}))
	require.Equal(t, semantic.MemoryHigh, firstNeeding(fs, []string{"pids", "memory"}))
}

func TestAllowsEverything(t *testing.T) {
	rule := func(allow bool) semantic.DeviceRule {
		return semantic.DeviceRule{Allow: allow, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.Read}
	}
	require.True(t, allowsEverything(&semantic.Devices{Default: semantic.AllowByDefault}))
	require.True(t, allowsEverything(&semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{rule(true)}}))
	require.False(t, allowsEverything(&semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{rule(true), rule(false)}}))
	require.False(t, allowsEverything(&semantic.Devices{Default: semantic.DenyByDefault}))
}
