package semantic_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func ptr[T any](v T) *T { return &v }

// full returns a fresh Resources with every field set.
func full() *semantic.Resources {
	return &semantic.Resources{
		Memory: &semantic.Memory{
			Max:  ptr(512 * semantic.MiB),
			High: ptr(semantic.Bytes(semantic.Unlimited)),
			Low:  ptr(64 * semantic.MiB),
			Min:  ptr(semantic.Bytes(0)),
			Swap: ptr(semantic.GiB),
		},
		CPU: &semantic.CPU{
			Weight: ptr[uint64](200),
			Max:    &semantic.CPUMax{CPUs: 1.5, Period: 50 * time.Millisecond},
			Cpus:   semantic.CPUSet{0, 1, 2, 3, 7},
			Mems:   semantic.CPUSet{0},
		},
		IO: &semantic.IO{
			Weight: ptr[uint64](50),
			Limits: []semantic.IOLimit{{Major: 8, Minor: 0, ReadBPS: 10 << 20, WriteIOPS: 100}},
		},
		Pids: &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			rule(true, c, 1, 3, semantic.AllAccess),
			rule(false, b, w, w, semantic.Write),
		}},
		HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: semantic.GiB}},
	}
}

func TestResourcesValidate(t *testing.T) {
	cpuMax := func(cpus float64, period time.Duration) *semantic.Resources {
		return &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: cpus, Period: period}}}
	}
	tests := []struct {
		name string
		r    *semantic.Resources
		why  string // "" when valid
	}{
		{"nil", nil, ""},
		{"empty", &semantic.Resources{}, ""},
		{"everything", full(), ""},
		{"empty sections", &semantic.Resources{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}, IO: &semantic.IO{}, Pids: &semantic.Pids{}}, ""},

		{"CPU weight 1", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](1)}}, ""},
		{"CPU weight 10000", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](10000)}}, ""},
		{"CPU weight 0", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](0)}}, "CPU weight 0: out of range 1..10000"},
		{"CPU weight 10001", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](10001)}}, "CPU weight 10001: out of range"},

		{"no cap", cpuMax(0, 0), ""},
		{"cap", cpuMax(1.5, 0), ""},
		{"smallest quota", cpuMax(0.01, 0), ""},
		{"quota below 1ms", cpuMax(0.009, 0), "below the kernel's minimum 1ms"},
		{"smallest CPUs on a long period", cpuMax(semantic.MinCPUs, time.Second), ""},
		{"smallest CPUs on the default period", cpuMax(semantic.MinCPUs, 0), "below the kernel's minimum"},
		{"largest CPUs", cpuMax(semantic.MaxCPUs, 0), ""},
		{"negative CPUs", cpuMax(-1, 0), "CPU max -1: out of range"},
		{"too many CPUs", cpuMax(semantic.MaxCPUs+1, 0), "out of range"},
		{"NaN CPUs", cpuMax(math.NaN(), 0), "CPU max NaN"},
		{"infinite CPUs", cpuMax(math.Inf(1), 0), "out of range"},
		{"shortest period", cpuMax(1, time.Millisecond), ""},
		{"longest period", cpuMax(1, time.Second), ""},
		{"period too short", cpuMax(1, time.Millisecond-time.Microsecond), "CPU period 999µs: out of range 1ms..1s"},
		{"period too long", cpuMax(1, time.Second+time.Microsecond), "out of range 1ms..1s"},
		{"negative period", cpuMax(1, -time.Millisecond), "out of range"},
		{"period not whole microseconds", cpuMax(1, time.Millisecond+500), "not a whole number of microseconds"},

		{"empty CPU set", &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{}}}, "CPU set: empty"},
		{"empty memory node set", &semantic.Resources{CPU: &semantic.CPU{Mems: semantic.CPUSet{}}}, "memory node set: empty"},
		{"unsorted CPU set", &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{3, 1}}}, "not sorted, unique"},
		{"out of range memory node", &semantic.Resources{CPU: &semantic.CPU{Mems: semantic.CPUSet{-1}}}, "not sorted, unique and within"},

		{"IO weight 0", &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](0)}}, "IO weight 0: out of range"},
		{"IO weight 10001", &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](10001)}}, "IO weight 10001"},
		{"IO device out of range", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 4096, ReadBPS: 1}}}}, "IO limit device 4096:0: numbers out of range"},
		{"IO wildcard device", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: -1, Minor: -1}}}}, "numbers out of range"},
		{"IO device twice", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, ReadBPS: 1}, {Major: 8, WriteBPS: 1}}}}, "8:0: listed twice"},
		{"IO max instead of 0", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, WriteIOPS: semantic.Unlimited}}}}, "use 0, not max"},

		{"bad device rule", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{rule(true, c, 1, 3, 0)}}}, "non-empty subset of rwm"},
		{"no device default", &semantic.Resources{Devices: &semantic.Devices{}}, "device default"},

		{"huge page twice", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB}, {PageSize: 2 * semantic.MiB}}}, "2MiB: listed twice"},
		{"huge page not a power of two", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{{PageSize: 3 * semantic.MiB}}}, "huge page size 3MiB: not a power of two"},
		{"huge page too small", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{{PageSize: 4 * semantic.KiB}}}, "of at least 64KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.why == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, semantic.ErrInvalid)
			assert.Contains(t, err.Error(), tt.why)
		})
	}
}

func TestResourcesNormalize(t *testing.T) {
	const page = 4096
	tests := []struct {
		name string
		in   *semantic.Resources
		page uint64
		want *semantic.Resources
	}{
		{"nil", nil, page, nil},
		{"memory rounded down to the page", &semantic.Resources{Memory: &semantic.Memory{
			Max: ptr(semantic.Bytes(4097)), High: ptr(semantic.Bytes(4095)), Low: ptr(semantic.Bytes(semantic.Unlimited)),
			Min: ptr(semantic.Bytes(8192)), Swap: ptr(semantic.Bytes(12287)),
		}}, page, &semantic.Resources{Memory: &semantic.Memory{
			Max: ptr(semantic.Bytes(4096)), High: ptr(semantic.Bytes(0)), Low: ptr(semantic.Bytes(semantic.Unlimited)),
			Min: ptr(semantic.Bytes(8192)), Swap: ptr(semantic.Bytes(8192)),
		}}},
		{"64KiB pages", &semantic.Resources{Memory: &semantic.Memory{Max: ptr(100 * semantic.KiB)}}, 64 << 10,
			&semantic.Resources{Memory: &semantic.Memory{Max: ptr(64 * semantic.KiB)}}},
		{"page size 0 keeps bytes", &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(4097))}}, 0,
			&semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(4097))}}},
		{"unset memory stays unset", &semantic.Resources{Memory: &semantic.Memory{High: ptr(semantic.Bytes(5000))}}, page,
			&semantic.Resources{Memory: &semantic.Memory{High: ptr(semantic.Bytes(4096))}}},
		{"CPU period made explicit", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5}}}, page,
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5, Period: 100 * time.Millisecond}}}},
		{"CPU cap rounded to a whole microsecond of quota", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3, Period: 100 * time.Millisecond}}}, page,
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.33333, Period: 100 * time.Millisecond}}}},
		{"CPU cap to the nearest microsecond", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.0123456, Period: time.Millisecond}}}, page,
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.012, Period: time.Millisecond}}}},
		{"no cap keeps 0", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{}}}, page,
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{Period: 100 * time.Millisecond}}}},
		{"CPU sets sorted", &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{3, 1, 3}, Mems: semantic.CPUSet{1, 0}}}, page,
			&semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{1, 3}, Mems: semantic.CPUSet{0, 1}}}},
		{"IO limits sorted by device", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{
			{Major: 259, Minor: 0, ReadBPS: 1}, {Major: 8, Minor: 16, ReadBPS: 2}, {Major: 8, Minor: 0, ReadBPS: 3},
		}}}, page, &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{
			{Major: 8, Minor: 0, ReadBPS: 3}, {Major: 8, Minor: 16, ReadBPS: 2}, {Major: 259, Minor: 0, ReadBPS: 1},
		}}}},
		{"huge pages rounded to their size and sorted", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{
			{PageSize: semantic.GiB, Limit: 3*semantic.GiB + 1},
			{PageSize: 2 * semantic.MiB, Limit: 5 * semantic.MiB},
			{PageSize: 64 * semantic.KiB, Limit: semantic.Unlimited},
		}}, page, &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{
			{PageSize: 64 * semantic.KiB, Limit: semantic.Unlimited},
			{PageSize: 2 * semantic.MiB, Limit: 4 * semantic.MiB},
			{PageSize: semantic.GiB, Limit: 3 * semantic.GiB},
		}}},
		{"devices kept as given", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{
			rule(false, c, 1, 5, semantic.Write), rule(false, b, w, w, semantic.Read),
		}}}, page, &semantic.Resources{Devices: &semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{
			rule(false, c, 1, 5, semantic.Write), rule(false, b, w, w, semantic.Read),
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := json.Marshal(tt.in)
			require.NoError(t, err)
			got := tt.in.Normalize(tt.page)
			assert.Equal(t, tt.want, got)
			after, err := json.Marshal(tt.in)
			require.NoError(t, err)
			assert.Equal(t, string(before), string(after), "Normalize must not change its receiver")
			assert.Equal(t, got, got.Normalize(tt.page), "Normalize must be idempotent")
		})
	}
}

func TestRoundToPage(t *testing.T) {
	tests := []struct {
		name string
		in   semantic.Bytes
		page uint64
		want semantic.Bytes
	}{
		{"exact", 8192, 4096, 8192},
		{"down", 8191, 4096, 4096},
		{"below a page", 1, 4096, 0},
		{"max stays", semantic.Unlimited, 4096, semantic.Unlimited},
		{"just below max", semantic.Unlimited - 1, 4096, semantic.Unlimited - 4095},
		{"no page size", 4097, 0, 4097},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, semantic.RoundToPage(tt.in, tt.page))
		})
	}
}

func TestResourcesClone(t *testing.T) {
	assert.Nil(t, (*semantic.Resources)(nil).Clone())

	orig := full()
	cl := orig.Clone()
	require.Equal(t, orig, cl)

	// Change everything the clone can reach; the original must not move.
	*cl.Memory.Max, *cl.Memory.High, *cl.Memory.Low, *cl.Memory.Min, *cl.Memory.Swap = 1, 2, 3, 4, 5
	*cl.CPU.Weight = 1
	cl.CPU.Max.CPUs, cl.CPU.Max.Period = 9, time.Second
	cl.CPU.Cpus[0], cl.CPU.Mems[0] = 99, 99
	*cl.IO.Weight = 1
	cl.IO.Limits[0].ReadBPS = 1
	*cl.Pids.Max = 1
	cl.Devices.Default = semantic.AllowByDefault
	cl.Devices.Rules[0].Allow = false
	cl.HugeTLB[0].Limit = 0
	assert.Equal(t, full(), orig)

	// Sections hold the same shape: unset stays unset.
	partial := &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(1))}}
	assert.Equal(t, partial, partial.Clone())
	assert.Nil(t, partial.Clone().CPU)
	assert.Nil(t, partial.Clone().Memory.High)
}

func TestMerge(t *testing.T) {
	mem := func(max, high *semantic.Bytes) *semantic.Resources {
		return &semantic.Resources{Memory: &semantic.Memory{Max: max, High: high}}
	}
	tests := []struct {
		name         string
		base, update *semantic.Resources
		want         *semantic.Resources
	}{
		{"both nil", nil, nil, &semantic.Resources{}},
		{"nil update keeps base", full(), nil, full()},
		{"empty update keeps base", full(), &semantic.Resources{}, full()},
		{"nil base takes update", nil, full(), full()},
		{"fields add up", mem(ptr(semantic.MiB), nil), mem(nil, ptr(semantic.KiB)), mem(ptr(semantic.MiB), ptr(semantic.KiB))},
		{"field replaced", mem(ptr(semantic.MiB), nil), mem(ptr(semantic.GiB), nil), mem(ptr(semantic.GiB), nil)},
		{"empty section changes nothing", full(), &semantic.Resources{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}, IO: &semantic.IO{}, Pids: &semantic.Pids{}}, full()},
		{"CPU set replaced, weight kept",
			&semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](5), Cpus: semantic.CPUSet{0, 1}}},
			&semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{2}}},
			&semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](5), Cpus: semantic.CPUSet{2}}}},
		{"CPU max replaced as a whole",
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1, Period: time.Second}}},
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 2}}},
			&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 2}}}},
		{"device list replaced as a whole", full(),
			&semantic.Resources{Devices: &semantic.Devices{Default: semantic.AllowByDefault}},
			func() *semantic.Resources {
				r := full()
				r.Devices = &semantic.Devices{Default: semantic.AllowByDefault}
				return r
			}()},
		{"empty IO limit list clears", full(),
			&semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{}}},
			func() *semantic.Resources {
				r := full()
				r.IO.Limits = []semantic.IOLimit{}
				return r
			}()},
		{"huge pages replaced", full(),
			&semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{{PageSize: semantic.GiB, Limit: 0}}},
			func() *semantic.Resources {
				r := full()
				r.HugeTLB = []semantic.HugeTLBLimit{{PageSize: semantic.GiB, Limit: 0}}
				return r
			}()},
		{"pids into empty base", &semantic.Resources{}, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(10))}},
			&semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(10))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := semantic.Merge(tt.base, tt.update)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	base, update := full(), full()
	*update.Memory.Max = 1
	got := semantic.Merge(base, update)
	*got.Memory.Max, *got.Memory.Low = 7, 7
	got.CPU.Cpus[0] = 99
	got.Devices.Rules[0].Allow = false
	got.HugeTLB[0].Limit = 5
	assert.Equal(t, full(), base, "Merge must not share memory with base")
	want := full()
	*want.Memory.Max = 1
	assert.Equal(t, want, update, "Merge must not share memory with update")
}

func TestResourcesFields(t *testing.T) {
	tests := []struct {
		name string
		r    *semantic.Resources
		want []semantic.Feature
	}{
		{"nil", nil, nil},
		{"empty", &semantic.Resources{}, nil},
		{"empty sections", &semantic.Resources{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}, IO: &semantic.IO{}, Pids: &semantic.Pids{}}, nil},
		{"everything in order", full(), semantic.ResourceFeatures},
		{"memory swap", &semantic.Resources{Memory: &semantic.Memory{Swap: ptr(semantic.Bytes(0))}}, []semantic.Feature{semantic.MemorySwap}},
		{"CPU max and mems", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{}, Mems: semantic.CPUSet{0}}}, []semantic.Feature{semantic.CPUMaxFeature, semantic.CPUSetMems}},
		{"empty IO limit list is a request", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{}}}, []semantic.Feature{semantic.IOLimits}},
		{"devices", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault}}, []semantic.Feature{semantic.DevicesFeature}},
		{"empty huge page list is a request", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{}}, []semantic.Feature{semantic.HugeTLB}},
		{"pids and IO weight", &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(1))}, IO: &semantic.IO{Weight: ptr[uint64](1)}},
			[]semantic.Feature{semantic.IOWeight, semantic.PidsMax}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.r.Fields())
		})
	}
}

func TestResourcesOnly(t *testing.T) {
	r := full()
	for _, f := range semantic.ResourceFeatures {
		t.Run(string(f), func(t *testing.T) {
			one := r.Only(f)
			require.Equal(t, []semantic.Feature{f}, one.Fields())
			// The one field is r's value, and a copy of it.
			merged := semantic.Merge(&semantic.Resources{}, one)
			assert.Equal(t, r.Only(f), merged)
			assert.Equal(t, semantic.Merge(r, one), r, "applying it to r changes nothing")
			if one.Memory != nil && r.Memory.Max != nil && one.Memory.Max != nil {
				assert.NotSame(t, r.Memory.Max, one.Memory.Max)
			}
		})
	}
	assert.Empty(t, (&semantic.Resources{}).Only(semantic.MemoryMax).Fields(), "an unset field gives an empty request")
	assert.Empty(t, (*semantic.Resources)(nil).Only(semantic.PidsMax).Fields())
}

func TestResourcesJSON(t *testing.T) {
	r := full()
	out, err := json.Marshal(r)
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"memory": {"max": 536870912, "high": "max", "low": 67108864, "min": 0, "swap": 1073741824},
		"cpu": {"weight": 200, "max": {"cpus": 1.5, "period": 50000000}, "cpus": "0-3,7", "mems": "0"},
		"io": {"weight": 50, "limits": [{"major": 8, "minor": 0, "rbps": 10485760, "wiops": 100}]},
		"pids": {"max": "max"},
		"devices": {"default": "deny", "rules": [
			{"allow": true, "rule": "c 1:3 rwm"},
			{"allow": false, "rule": "b *:* w"}]},
		"hugetlb": [{"pagesize": 2097152, "limit": 1073741824}]
	}`, string(out))
	var back semantic.Resources
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, r, &back)

	t.Run("what users write", func(t *testing.T) {
		var got semantic.Resources
		require.NoError(t, json.Unmarshal([]byte(`{
			"memory": {"max": "512MiB", "swap": "1.5G"},
			"cpu": {"cpus": "0-1"},
			"pids": {"max": 64},
			"hugetlb": [{"pagesize": "2M", "limit": "max"}]
		}`), &got))
		assert.Equal(t, &semantic.Resources{
			Memory:  &semantic.Memory{Max: ptr(512 * semantic.MiB), Swap: ptr(3 * semantic.GiB / 2)},
			CPU:     &semantic.CPU{Cpus: semantic.CPUSet{0, 1}},
			Pids:    &semantic.Pids{Max: ptr(semantic.Count(64))},
			HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: semantic.Unlimited}},
		}, &got)
	})
	t.Run("empty round trips to empty", func(t *testing.T) {
		out, err := json.Marshal(&semantic.Resources{})
		require.NoError(t, err)
		assert.Equal(t, `{}`, string(out))
	})
	for name, in := range map[string]string{
		"ambiguous bytes":  `{"memory":{"max":"1GB"}}`,
		"backwards range":  `{"cpu":{"cpus":"3-1"}}`,
		"numbered any":     `{"devices":{"default":"deny","rules":[{"allow":true,"rule":"a 1:3 r"}]}}`,
		"negative count":   `{"pids":{"max":-1}}`,
		"word for a count": `{"pids":{"max":"lots"}}`,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			var got semantic.Resources
			assert.ErrorIs(t, json.Unmarshal([]byte(in), &got), semantic.ErrInvalid)
		})
	}
}

func TestResourcesString(t *testing.T) {
	assert.Equal(t, "{}", (*semantic.Resources)(nil).String())
	assert.Equal(t, "{}", (&semantic.Resources{}).String())
	assert.Equal(t, "{memory.max=512MiB memory.high=max memory.low=64MiB memory.min=0 memory.swap=1GiB "+
		"cpu.weight=200 cpu.max=1.5/50ms cpu.cpus=0-3,7 cpu.mems=0 io.weight=50 "+
		"io.limits=[8:0:rbps=10MiB,wbps=max,riops=max,wiops=100] pids.max=max "+
		"devices=deny[allow c 1:3 rwm, deny b *:* w] hugetlb=[{2MiB 1GiB}]}", full().String())
}

func TestCPUMaxEffectivePeriod(t *testing.T) {
	assert.Equal(t, semantic.DefaultCPUPeriod, (&semantic.CPUMax{CPUs: 1}).EffectivePeriod())
	assert.Equal(t, time.Second, (&semantic.CPUMax{CPUs: 1, Period: time.Second}).EffectivePeriod())
}
