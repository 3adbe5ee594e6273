package systemd

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func ptr[T any](v T) *T { return &v }

func unifiedHost() *host {
	return &host{layout: layoutUnified, version: 252, pageSize: 4096, freeze: true, pressure: true,
		controllers: map[string]bool{"cpu": true, "cpuset": true, "io": true, "memory": true, "pids": true},
		majors:      majorNames{c: {1: {"mem"}, 136: {"pts"}}, b: {8: {"sd"}}}}
}

func hybridHost() *host {
	return &host{layout: layoutHybrid, version: 252, pageSize: 4096, pressure: true,
		controllers: map[string]bool{"cpu": true, "cpuacct": true, "cpuset": true, "blkio": true, "memory": true, "pids": true, "devices": true, "freezer": true},
		majors:      majorNames{c: {1: {"mem"}, 136: {"pts"}}, b: {}}}
}

func TestCapabilities(t *testing.T) {
	for _, c := range []struct {
		name        string
		host        *host
		exact       []semantic.Feature
		approximate []semantic.Feature
		unsupported []semantic.Feature
	}{
		{"Unified", unifiedHost(),
			[]semantic.Feature{semantic.MemoryMax, semantic.MemoryHigh, semantic.MemoryLow, semantic.MemoryMin, semantic.MemorySwap,
				semantic.CPUWeight, semantic.CPUSetCPUs, semantic.CPUSetMems, semantic.IOWeight, semantic.IOLimits, semantic.PidsMax,
				semantic.DevicesFeature, semantic.Freeze, semantic.Kill, semantic.StartInside, semantic.EventsPopulated,
				semantic.EventsFrozen, semantic.EventsOOM, semantic.StatsPressure},
			[]semantic.Feature{semantic.CPUMaxFeature},
			[]semantic.Feature{semantic.HugeTLB, semantic.Threads}},
		{"Hybrid", hybridHost(),
			[]semantic.Feature{semantic.MemoryMax, semantic.CPUWeight, semantic.PidsMax, semantic.DevicesFeature, semantic.Kill,
				semantic.StartInside, semantic.EventsPopulated, semantic.EventsOOM, semantic.StatsPressure},
			[]semantic.Feature{semantic.CPUMaxFeature},
			[]semantic.Feature{semantic.MemoryHigh, semantic.MemoryLow, semantic.MemoryMin, semantic.MemorySwap, semantic.CPUSetCPUs,
				semantic.CPUSetMems, semantic.IOWeight, semantic.IOLimits, semantic.HugeTLB, semantic.Freeze, semantic.EventsFrozen, semantic.Threads}},
		{"HybridWithBlkioWeight", func() *host { h := hybridHost(); h.blkioWeight = true; return h }(),
			nil, []semantic.Feature{semantic.IOWeight}, []semantic.Feature{semantic.IOLimits}},
		{"UnifiedWithoutControllers", func() *host { h := unifiedHost(); h.controllers = map[string]bool{}; return h }(),
			[]semantic.Feature{semantic.DevicesFeature, semantic.Freeze, semantic.Kill, semantic.EventsPopulated},
			nil,
			[]semantic.Feature{semantic.MemoryMax, semantic.CPUWeight, semantic.CPUMaxFeature, semantic.PidsMax, semantic.IOWeight, semantic.EventsOOM}},
		{"OldSystemd", func() *host { h := unifiedHost(); h.version = 239; return h }(),
			[]semantic.Feature{semantic.MemoryMax, semantic.MemorySwap, semantic.IOLimits},
			nil,
			[]semantic.Feature{semantic.MemoryMin, semantic.CPUSetCPUs, semantic.CPUSetMems, semantic.CPUMaxFeature, semantic.Freeze, semantic.EventsFrozen}},
	} {
		t.Run(c.name, func(t *testing.T) {
			caps := c.host.capabilities()
			for _, f := range c.exact {
				assert.Equal(t, semantic.Exact, caps.Get(f).Support, "%s: %s", f, caps.Get(f).Reason)
			}
			for _, f := range c.approximate {
				assert.Equal(t, semantic.Approximate, caps.Get(f).Support, "%s", f)
				assert.NotEmpty(t, caps.Get(f).Conversion, "%s names its conversion", f)
			}
			for _, f := range c.unsupported {
				assert.Equal(t, semantic.Unsupported, caps.Get(f).Support, "%s", f)
				assert.NotEmpty(t, caps.Get(f).Reason, "%s says why", f)
			}
		})
	}
}

func TestCPUQuota(t *testing.T) {
	for _, c := range []struct {
		name     string
		cpus     float64
		period   time.Duration
		perSec   uint64
		lossless bool
	}{
		{"NoCap", 0, 100 * time.Millisecond, infinity, true},
		{"OneAndAHalf", 1.5, 100 * time.Millisecond, 1500000, true},
		{"QuarterPer50ms", 0.25, 50 * time.Millisecond, 250000, true},
		{"Third", 1.0 / 3, 100 * time.Millisecond, 330000, false},
		{"PercentPerOddPeriod", 0.5, 1235 * time.Microsecond, 500000, false},
		{"TinyRoundsUpToOneStep", 0.001, time.Second, 10000, false},
		{"Whole", 2, time.Second, 2000000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			perSec, lossless := cpuQuota(c.cpus, c.period)
			assert.Equal(t, c.perSec, perSec)
			assert.Equal(t, c.lossless, lossless)
		})
	}
}

func TestEncodeRefusals(t *testing.T) {
	for _, c := range []struct {
		name    string
		host    *host
		req     *semantic.Resources
		approx  bool
		feature semantic.Feature
	}{
		{"LossyQuota", unifiedHost(), &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3}}}, false, semantic.CPUMaxFeature},
		{"QuotaBelowMinimumAfterRounding", unifiedHost(), &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.014, Period: 80 * time.Millisecond}}}, true, semantic.CPUMaxFeature},
		{"ClampedIOWeightOnV1", func() *host { h := hybridHost(); h.blkioWeight = true; return h }(), &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](1000)}}, false, semantic.IOWeight},
		{"WildcardMinorWithoutName", hybridHost(), &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault,
			Rules: []semantic.DeviceRule{allow(b, 8, wild, r)}}}, false, semantic.DevicesFeature},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.host.encode(c.req.Normalize(c.host.pageSize), c.approx)
			require.ErrorIs(t, err, semantic.ErrNotSupported)
			assert.Contains(t, err.Error(), string(c.feature))
		})
	}
	// With AllowApproximate the lossy values go through, converted.
	props, err := unifiedHost().encode(&semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3, Period: 100 * time.Millisecond}}}, true)
	require.NoError(t, err)
	assert.Equal(t, uint64(330000), props[0].Value.Value())
}

// TestEncodeDecodeRoundTrip sends a request through encode and back
// through decode as systemd would report the properties, and expects the
// normalized request.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	h := unifiedHost()
	caps := h.capabilities()
	for _, c := range []struct {
		name string
		req  *semantic.Resources
	}{
		{"Memory", &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(256<<20 + 123)), High: ptr(semantic.Bytes(semantic.Unlimited)),
			Low: ptr(semantic.Bytes(16 << 20)), Min: ptr(semantic.Bytes(0)), Swap: ptr(semantic.Bytes(64 << 20))}}},
		{"CPU", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](250), Max: &semantic.CPUMax{CPUs: 0.25, Period: 50 * time.Millisecond},
			Cpus: semantic.CPUSet{0, 2, 9}, Mems: semantic.CPUSet{0}}}},
		{"NoCPUCap", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{}}}},
		{"IO", &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](50), Limits: []semantic.IOLimit{
			{Major: 8, Minor: 16, WriteBPS: 2 << 20, ReadIOPS: 50}, {Major: 8, Minor: 0, ReadBPS: 1 << 20, WriteIOPS: 100}}}}},
		{"Pids", &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(7))}}},
		{"PidsMax", &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))}}},
		{"Devices", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			allow(c, 1, 3, rwm), allow(c, 1, 5, r), allow(b, 8, wild, r), allow(c, 136, wild, r|w)}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := c.req.Normalize(h.pageSize)
			props, err := h.encode(want, false)
			require.NoError(t, err)
			got := h.decode(systemdView(t, props), caps, noNodes, noSets).Normalize(h.pageSize)
			for _, f := range c.req.Fields() {
				switch f {
				case semantic.DevicesFeature:
					requireSameAccess(t, want.Devices, got.Devices)
				case semantic.IOLimits:
					assert.Equal(t, want.IO.Limits, got.IO.Limits)
				default:
					assert.Equal(t, pick(f, want), pick(f, got), "%s", f)
				}
			}
		})
	}
}

// systemdView applies properties as systemd keeps them: a later value
// replaces an earlier one, a non-empty list adds to the list (by path), an
// empty one clears it; the result goes through D-Bus encoding.
func systemdView(t *testing.T, props []prop) map[string]dbus.Variant {
	t.Helper()
	out := map[string]dbus.Variant{}
	lists := map[string][]any{}
	for _, p := range props {
		switch v := p.Value.Value().(type) {
		case []deviceAllow:
			if len(v) == 0 {
				lists[p.Name] = nil
			}
			for _, e := range v {
				lists[p.Name] = append(lists[p.Name], e)
			}
		case []ioLimit:
			for _, e := range v {
				lists[p.Name] = append(lists[p.Name], e)
			}
		default:
			out[p.Name] = p.Value
		}
	}
	for name, l := range lists {
		if name == "DeviceAllow" {
			var das []deviceAllow
			for _, e := range l {
				das = append(das, e.(deviceAllow))
			}
			out[name] = roundTrip(t, das)
			continue
		}
		var ios []ioLimit
		for _, e := range l {
			ios = append(ios, e.(ioLimit))
		}
		out[name] = roundTrip(t, ios)
	}
	return out
}

// roundTrip marshals a value as D-Bus would and returns the variant a
// reader gets: structs come back as []any.
func roundTrip(t *testing.T, v any) dbus.Variant {
	t.Helper()
	msg := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath: dbus.MakeVariant(dbus.ObjectPath("/x")), dbus.FieldInterface: dbus.MakeVariant("x.y"), dbus.FieldMember: dbus.MakeVariant("z"),
		dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(dbus.MakeVariant(v)))},
		Body: []any{dbus.MakeVariant(v)}}
	var buf bytes.Buffer
	require.NoError(t, msg.EncodeTo(&buf, binary.LittleEndian))
	back, err := dbus.DecodeMessage(&buf)
	require.NoError(t, err)
	return back.Body[0].(dbus.Variant)
}

func pick(f semantic.Feature, r *semantic.Resources) any {
	switch f {
	case semantic.MemoryMax:
		return *r.Memory.Max
	case semantic.MemoryHigh:
		return *r.Memory.High
	case semantic.MemoryLow:
		return *r.Memory.Low
	case semantic.MemoryMin:
		return *r.Memory.Min
	case semantic.MemorySwap:
		return *r.Memory.Swap
	case semantic.CPUWeight:
		return *r.CPU.Weight
	case semantic.CPUMaxFeature:
		return *r.CPU.Max
	case semantic.CPUSetCPUs:
		return r.CPU.Cpus.String()
	case semantic.CPUSetMems:
		return r.CPU.Mems.String()
	case semantic.IOWeight:
		return *r.IO.Weight
	case semantic.PidsMax:
		return *r.Pids.Max
	}
	return nil
}

func TestDecodeDefaults(t *testing.T) {
	h := unifiedHost()
	got := h.decode(map[string]dbus.Variant{
		"MemoryMax": dbus.MakeVariant(uint64(infinity)), "MemoryLow": dbus.MakeVariant(uint64(0)),
		"CPUWeight": dbus.MakeVariant(uint64(infinity)), "IOWeight": dbus.MakeVariant(uint64(infinity)),
		"CPUQuotaPerSecUSec": dbus.MakeVariant(uint64(infinity)), "CPUQuotaPeriodUSec": dbus.MakeVariant(uint64(infinity)),
		"TasksMax": dbus.MakeVariant(uint64(infinity)), "DevicePolicy": dbus.MakeVariant("auto"),
		"EffectiveCPUs": dbus.MakeVariant([]byte{}), "AllowedCPUs": dbus.MakeVariant([]byte{}),
		"EffectiveMemoryNodes": dbus.MakeVariant([]byte{}), "AllowedMemoryNodes": dbus.MakeVariant([]byte{}),
	}, h.capabilities(), noNodes, func(file string) semantic.CPUSet {
		// What the group above gives: systemd's Effective* stays empty
		// until it enables cpuset for the slice.
		return map[string]semantic.CPUSet{"cpuset.cpus.effective": {0, 1, 2, 3}, "cpuset.mems.effective": {0}}[file]
	})
	assert.Equal(t, semantic.Bytes(semantic.Unlimited), *got.Memory.Max)
	assert.Equal(t, semantic.Bytes(0), *got.Memory.Low)
	assert.Equal(t, uint64(100), *got.CPU.Weight, "unset weight is the default")
	assert.Equal(t, uint64(100), *got.IO.Weight)
	assert.Equal(t, semantic.CPUMax{Period: semantic.DefaultCPUPeriod}, *got.CPU.Max)
	assert.Equal(t, semantic.CPUSet{0, 1, 2, 3}, got.CPU.Cpus, "an empty AllowedCPUs= reads as the inherited set")
	assert.Equal(t, semantic.CPUSet{0}, got.CPU.Mems, "an empty AllowedMemoryNodes= reads as the inherited set")
	assert.Equal(t, semantic.Count(semantic.Unlimited), *got.Pids.Max)
	assert.Equal(t, semantic.AllowByDefault, got.Devices.Default)
	assert.Empty(t, got.IO.Limits)
	// Unsupported features are left out.
	hy := hybridHost()
	got = hy.decode(map[string]dbus.Variant{}, hy.capabilities(), noNodes, noSets)
	assert.Nil(t, got.Memory.High)
	assert.Nil(t, got.IO)
	assert.Empty(t, got.HugeTLB)
}

func noSets(string) semantic.CPUSet { return nil }

// TestEncodeRefusesSetsOffHost: systemd stores any AllowedCPUs= and only
// logs the kernel's EINVAL, so the driver must refuse it.
func TestEncodeRefusesSetsOffHost(t *testing.T) {
	h := unifiedHost()
	h.cpus, h.mems = semantic.CPUSet{0, 1}, semantic.CPUSet{0}
	for _, c := range []struct {
		name    string
		cpu     semantic.CPU
		invalid bool
	}{
		{"CpusOnHost", semantic.CPU{Cpus: semantic.CPUSet{0, 1}}, false},
		{"MemsOnHost", semantic.CPU{Mems: semantic.CPUSet{0}}, false},
		{"CpuOffHost", semantic.CPU{Cpus: semantic.CPUSet{1, 2}}, true},
		{"NodeOffHost", semantic.CPU{Mems: semantic.CPUSet{semantic.MaxCPUSetID}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			props, err := h.encode(&semantic.Resources{CPU: &c.cpu}, false)
			if c.invalid {
				require.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Empty(t, props)
				return
			}
			require.NoError(t, err)
			assert.Len(t, props, 1)
		})
	}
	h.cpus = nil
	_, err := h.encode(&semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{7}}}, false)
	assert.NoError(t, err, "an unknown host set refuses nothing; the kernel is the judge")
}

func TestCPUMask(t *testing.T) {
	for _, c := range []struct {
		set  semantic.CPUSet
		mask []byte
	}{
		{semantic.CPUSet{}, []byte{}},
		{semantic.CPUSet{0}, []byte{0x01}},
		{semantic.CPUSet{0, 2, 9}, []byte{0x05, 0x02}},
		{semantic.CPUSet{7, 8}, []byte{0x80, 0x01}},
	} {
		t.Run(c.set.String(), func(t *testing.T) {
			assert.Equal(t, c.mask, cpuMask(c.set))
			if len(c.set) > 0 {
				assert.Equal(t, c.set, maskSet(c.mask))
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{{"252.38-1~deb12u1", 252}, {"v255", 255}, {"255.4-1ubuntu8", 255}, {"239", 239}} {
		got, err := parseVersion(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got)
	}
	for _, bad := range []string{"", "systemd", "v"} {
		_, err := parseVersion(bad)
		assert.Error(t, err, bad)
	}
}

func TestRestoreProps(t *testing.T) {
	before := map[string]dbus.Variant{
		"MemoryMax":          dbus.MakeVariant(uint64(1 << 30)),
		"DeviceAllow":        roundTrip(t, []deviceAllow{{"/dev/char/1:3", "rw"}}),
		"IOReadBandwidthMax": roundTrip(t, []ioLimit{}),
	}
	props := []prop{
		{Name: "MemoryMax", Value: dbus.MakeVariant(uint64(1 << 20))},
		{Name: "DeviceAllow", Value: dbus.MakeVariant([]deviceAllow{})},
		{Name: "DeviceAllow", Value: dbus.MakeVariant([]deviceAllow{{"char-*", "r"}})},
		{Name: "IOReadBandwidthMax", Value: dbus.MakeVariant([]ioLimit{{"/dev/block/8:0", 5}})},
	}
	got := restoreProps(props, before)
	require.Len(t, got, 4)
	assert.Equal(t, "MemoryMax", got[0].Name)
	assert.Equal(t, uint64(1<<30), got[0].Value.Value())
	assert.Equal(t, []deviceAllow{}, got[1].Value.Value(), "the list is cleared first")
	assert.Equal(t, []deviceAllow{{"/dev/char/1:3", "rw"}}, got[2].Value.Value(), "then refilled")
	assert.Equal(t, []ioLimit{}, got[3].Value.Value())
}
