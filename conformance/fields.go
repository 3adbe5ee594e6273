package conformance

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// field is one resource feature as the suite exercises it.
type field struct {
	feature semantic.Feature
	area    string // subtest group: "Memory"
	name    string // subtest below it: "Max"
	// base is applied before values: other fields this one needs (swap is
	// on top of a memory max).
	base *semantic.Resources
	// values set only this field, applied in order; they differ from one
	// to the next and from the kernel's default. values[0] is the "before"
	// and values[1] the "after" of the multi-field subtests.
	values []*semantic.Resources
	// mustTake is how many leading values every driver declaring the
	// feature takes; a backend may refuse later ones with ErrNotSupported
	// when it cannot express them (systemd cannot express every device
	// list). 0: it takes them all.
	mustTake int
	// missing says why values is empty: the harness gave nothing usable.
	missing string
	// sample is a request touching the feature even when values is empty,
	// for checking that an unsupported feature is refused.
	sample *semantic.Resources
	// invalid requests of this field; each is refused with ErrInvalid.
	invalid []namedRes
}

type namedRes struct {
	name string
	res  *semantic.Resources
	host bool // only the host refuses it, when written: Plan need not know
}

func ptr[T any](v T) *T { return &v }

func memRes(set func(*semantic.Memory)) *semantic.Resources {
	m := &semantic.Memory{}
	set(m)
	return &semantic.Resources{Memory: m}
}

func cpuRes(set func(*semantic.CPU)) *semantic.Resources {
	c := &semantic.CPU{}
	set(c)
	return &semantic.Resources{CPU: c}
}

func ioRes(set func(*semantic.IO)) *semantic.Resources {
	io := &semantic.IO{}
	set(io)
	return &semantic.Resources{IO: io}
}

func pidsRes(n semantic.Count) *semantic.Resources {
	return &semantic.Resources{Pids: &semantic.Pids{Max: &n}}
}

func devRes(def semantic.DevicePolicy, rules ...semantic.DeviceRule) *semantic.Resources {
	return &semantic.Resources{Devices: &semantic.Devices{Default: def, Rules: rules}}
}

func rule(allow bool, typ semantic.DeviceType, major, minor int64, a semantic.Access) semantic.DeviceRule {
	return semantic.DeviceRule{Allow: allow, Type: typ, Major: major, Minor: minor, Access: a}
}

// resourceFields is the table every resource subtest is driven by. Values
// are chosen to exercise normalization (odd byte counts round down to a
// page, a third of a CPU rounds to whole microseconds) and to be honoured
// exactly by every backend that declares the feature exact (CPU weights
// that map to v1 shares and back, IO weights inside blkio's range).
func resourceFields(s *suite) []field {
	const (
		MiB = semantic.MiB
		max = semantic.Bytes(semantic.Unlimited)
	)
	mem := func(f semantic.Feature, name string, base *semantic.Resources, vals []semantic.Bytes, set func(*semantic.Memory, *semantic.Bytes)) field {
		fl := field{feature: f, area: "Memory", name: name, base: base}
		for _, v := range vals {
			fl.values = append(fl.values, memRes(func(m *semantic.Memory) { set(m, ptr(v)) }))
		}
		return fl
	}
	fields := []field{
		mem(semantic.MemoryMax, "Max", nil, []semantic.Bytes{256*MiB + 123, 512 * MiB, max},
			func(m *semantic.Memory, v *semantic.Bytes) { m.Max = v }),
		mem(semantic.MemoryHigh, "High", nil, []semantic.Bytes{192*MiB + 77, 384 * MiB, max},
			func(m *semantic.Memory, v *semantic.Bytes) { m.High = v }),
		mem(semantic.MemoryLow, "Low", nil, []semantic.Bytes{16*MiB + 5, 32 * MiB, 0},
			func(m *semantic.Memory, v *semantic.Bytes) { m.Low = v }),
		mem(semantic.MemoryMin, "Min", nil, []semantic.Bytes{8*MiB + 3, 16 * MiB, 0},
			func(m *semantic.Memory, v *semantic.Bytes) { m.Min = v }),
		mem(semantic.MemorySwap, "Swap", memRes(func(m *semantic.Memory) { m.Max = ptr(256 * MiB) }),
			[]semantic.Bytes{32*MiB + 9, 64 * MiB, 0, max},
			func(m *semantic.Memory, v *semantic.Bytes) { m.Swap = v }),
		{
			feature: semantic.CPUWeight, area: "CPU", name: "Weight",
			values: []*semantic.Resources{
				cpuRes(func(c *semantic.CPU) { c.Weight = ptr[uint64](250) }),
				cpuRes(func(c *semantic.CPU) { c.Weight = ptr[uint64](semantic.MaxWeight) }),
				cpuRes(func(c *semantic.CPU) { c.Weight = ptr[uint64](semantic.MinWeight) }),
			},
			invalid: []namedRes{
				{name: "Zero", res: cpuRes(func(c *semantic.CPU) { c.Weight = ptr[uint64](0) })},
				{name: "AboveMax", res: cpuRes(func(c *semantic.CPU) { c.Weight = ptr[uint64](semantic.MaxWeight + 1) })},
			},
		},
		{
			feature: semantic.CPUMaxFeature, area: "CPU", name: "Max",
			values: []*semantic.Resources{
				cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 1.5} }),
				cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 0.25, Period: 50 * time.Millisecond} }),
				cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 1.0 / 3} }),
				cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{} }),
			},
			invalid: []namedRes{
				{name: "BelowMinimum", res: cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 0.0001} })},
				{name: "Negative", res: cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: -1} })},
				{name: "PeriodTooShort", res: cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 1, Period: 500 * time.Microsecond} })},
				{name: "PeriodTooLong", res: cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 1, Period: 2 * time.Second} })},
				{name: "PeriodNotWholeMicroseconds", res: cpuRes(func(c *semantic.CPU) {
					c.Max = &semantic.CPUMax{CPUs: 1, Period: 100*time.Millisecond + 1}
				})},
			},
		},
		cpuSetField(semantic.CPUSetCPUs, "Cpus", s.cpus, func(c *semantic.CPU, v semantic.CPUSet) { c.Cpus = v }),
		cpuSetField(semantic.CPUSetMems, "Mems", s.mems, func(c *semantic.CPU, v semantic.CPUSet) { c.Mems = v }),
		{
			feature: semantic.IOWeight, area: "IO", name: "Weight",
			values: []*semantic.Resources{
				ioRes(func(io *semantic.IO) { io.Weight = ptr[uint64](50) }),
				ioRes(func(io *semantic.IO) { io.Weight = ptr[uint64](150) }),
				ioRes(func(io *semantic.IO) { io.Weight = ptr[uint64](100) }),
			},
			invalid: []namedRes{
				{name: "Zero", res: ioRes(func(io *semantic.IO) { io.Weight = ptr[uint64](0) })},
				{name: "AboveMax", res: ioRes(func(io *semantic.IO) { io.Weight = ptr[uint64](semantic.MaxWeight + 1) })},
			},
		},
		ioLimitsField(s.h.IODevice),
		{
			feature: semantic.PidsMax, area: "Pids", name: "Max",
			values: []*semantic.Resources{pidsRes(7), pidsRes(semantic.Unlimited), pidsRes(1000)},
		},
		devicesField(),
		hugeTLBField(s.h.HugePageSizes),
	}
	for i := range fields {
		if fields[i].sample == nil && len(fields[i].values) > 0 {
			fields[i].sample = semantic.Merge(fields[i].base, fields[i].values[0])
		}
	}
	return fields
}

func cpuSetField(f semantic.Feature, name string, host semantic.CPUSet, set func(*semantic.CPU, semantic.CPUSet)) field {
	with := func(v semantic.CPUSet) *semantic.Resources { return cpuRes(func(c *semantic.CPU) { set(c, v) }) }
	fl := field{feature: f, area: "CPU", name: name,
		invalid: []namedRes{
			{name: "Empty", res: with(semantic.CPUSet{})},
			{name: "Unsorted", res: with(semantic.CPUSet{1, 0})},
			// The kernel refuses members the host does not have (EINVAL).
			{name: "NotOnHost", res: with(semantic.CPUSet{semantic.MaxCPUSetID}), host: true},
		}}
	// The whole host set, then its first member alone, then the whole set
	// again: a change each time the host has more than one.
	fl.values = []*semantic.Resources{with(host), with(host[:1]), with(host)}
	return fl
}

func ioLimitsField(dev *[2]int64) field {
	with := func(ls ...semantic.IOLimit) *semantic.Resources {
		return ioRes(func(io *semantic.IO) { io.Limits = ls })
	}
	fl := field{feature: semantic.IOLimits, area: "IO", name: "Limits",
		sample: with(semantic.IOLimit{Major: 8, Minor: 0, ReadBPS: 1 << 20}),
		invalid: []namedRes{
			{name: "MajorOutOfRange", res: with(semantic.IOLimit{Major: semantic.MaxMajor + 1, Minor: 0, ReadBPS: 1 << 20})},
			{name: "DeviceTwice", res: with(semantic.IOLimit{Major: 8, Minor: 0, ReadBPS: 1 << 20}, semantic.IOLimit{Major: 8, Minor: 0, WriteBPS: 1 << 20})},
			{name: "MaxInsteadOfZero", res: with(semantic.IOLimit{Major: 8, Minor: 0, ReadBPS: semantic.Unlimited})},
		}}
	if dev == nil {
		fl.missing = "the harness gives no IODevice to limit"
		return fl
	}
	maj, min := dev[0], dev[1]
	fl.values = []*semantic.Resources{
		with(semantic.IOLimit{Major: maj, Minor: min, ReadBPS: 1 << 20, WriteIOPS: 100}),
		// Listing the device again replaces all four figures: ReadBPS and
		// WriteIOPS go back to no limit.
		with(semantic.IOLimit{Major: maj, Minor: min, WriteBPS: 2 << 20, ReadIOPS: 50}),
		with(semantic.IOLimit{Major: maj, Minor: min}),
	}
	return fl
}

func devicesField() field {
	const c, b, a = semantic.CharDevice, semantic.BlockDevice, semantic.AnyDevice
	const w = semantic.Wildcard
	return field{feature: semantic.DevicesFeature, area: "Devices", name: "List",
		values: []*semantic.Resources{
			devRes(semantic.DenyByDefault,
				rule(true, c, 1, 3, semantic.AllAccess),
				rule(true, c, 1, 5, semantic.Read),
				// Block major 259 (blkext) is registered on every
				// kernel with a block layer: systemd says a whole major
				// only by its /proc/devices name (block-blkext), and
				// major 8 has none where no SCSI driver is loaded.
				rule(true, b, 259, w, semantic.Read),
				rule(true, c, 136, w, semantic.Read|semantic.Write)),
			devRes(semantic.DenyByDefault,
				rule(true, c, 1, 3, semantic.Read|semantic.Write),
				rule(true, c, 1, 7, semantic.AllAccess)),
			devRes(semantic.AllowByDefault,
				rule(false, c, 1, 3, semantic.Write),
				rule(false, b, w, w, semantic.Mknod)),
			devRes(semantic.DenyByDefault),
			devRes(semantic.AllowByDefault),
		},
		// Default deny with allowed devices is what every backend expresses.
		mustTake: 2,
		invalid: []namedRes{
			{name: "BadDefault", res: devRes("sometimes")},
			{name: "BadType", res: devRes(semantic.DenyByDefault, rule(true, 'x', 1, 3, semantic.Read))},
			{name: "NoAccess", res: devRes(semantic.DenyByDefault, rule(true, c, 1, 3, 0))},
			{name: "NumberedAny", res: devRes(semantic.DenyByDefault, rule(true, a, 1, 3, semantic.Read))},
			{name: "MajorOutOfRange", res: devRes(semantic.DenyByDefault, rule(true, c, semantic.MaxMajor+1, 3, semantic.Read))},
		},
	}
}

func hugeTLBField(sizes []semantic.Bytes) field {
	with := func(ls ...semantic.HugeTLBLimit) *semantic.Resources { return &semantic.Resources{HugeTLB: ls} }
	fl := field{feature: semantic.HugeTLB, area: "HugeTLB", name: "Limit",
		sample: with(semantic.HugeTLBLimit{PageSize: 2 * semantic.MiB, Limit: 4 * semantic.MiB}),
		invalid: []namedRes{
			{name: "PageSizeNotPowerOfTwo", res: with(semantic.HugeTLBLimit{PageSize: 3 * semantic.MiB, Limit: 6 * semantic.MiB})},
			{name: "PageSizeTooSmall", res: with(semantic.HugeTLBLimit{PageSize: 4096, Limit: 8192})},
			{name: "SizeTwice", res: with(semantic.HugeTLBLimit{PageSize: 2 * semantic.MiB, Limit: 4 * semantic.MiB},
				semantic.HugeTLBLimit{PageSize: 2 * semantic.MiB, Limit: 8 * semantic.MiB})},
		}}
	if len(sizes) == 0 {
		fl.missing = "the harness lists no HugePageSizes"
		return fl
	}
	ps := sizes[0]
	fl.values = []*semantic.Resources{
		with(semantic.HugeTLBLimit{PageSize: ps, Limit: 4*ps + 1}),
		with(semantic.HugeTLBLimit{PageSize: ps, Limit: semantic.Unlimited}),
		with(semantic.HugeTLBLimit{PageSize: ps, Limit: 2 * ps}),
	}
	return fl
}

// value returns a scalar feature's value in r, or nil when r does not have
// it. Devices, IO limits and huge page limits are compared by diff.
func value(f semantic.Feature, r *semantic.Resources) any {
	if r == nil {
		return nil
	}
	deref := func(p any) any {
		switch v := p.(type) {
		case *semantic.Bytes:
			if v != nil {
				return *v
			}
		case *uint64:
			if v != nil {
				return *v
			}
		case *semantic.Count:
			if v != nil {
				return *v
			}
		case *semantic.CPUMax:
			if v != nil {
				return *v
			}
		case semantic.CPUSet:
			if v != nil {
				return v.String()
			}
		}
		return nil
	}
	switch m, c, io := r.Memory, r.CPU, r.IO; f {
	case semantic.MemoryMax, semantic.MemoryHigh, semantic.MemoryLow, semantic.MemoryMin, semantic.MemorySwap:
		if m == nil {
			return nil
		}
		return deref(map[semantic.Feature]*semantic.Bytes{
			semantic.MemoryMax: m.Max, semantic.MemoryHigh: m.High, semantic.MemoryLow: m.Low,
			semantic.MemoryMin: m.Min, semantic.MemorySwap: m.Swap}[f])
	case semantic.CPUWeight:
		if c != nil {
			return deref(c.Weight)
		}
	case semantic.CPUMaxFeature:
		if c != nil {
			return deref(c.Max)
		}
	case semantic.CPUSetCPUs:
		if c != nil {
			return deref(c.Cpus)
		}
	case semantic.CPUSetMems:
		if c != nil {
			return deref(c.Mems)
		}
	case semantic.IOWeight:
		if io != nil {
			return deref(io.Weight)
		}
	case semantic.PidsMax:
		if r.Pids != nil {
			return deref(r.Pids.Max)
		}
	}
	return nil
}

// present reports whether r has a value for f.
func present(f semantic.Feature, r *semantic.Resources) bool {
	switch f {
	case semantic.DevicesFeature:
		return r != nil && r.Devices != nil
	case semantic.IOLimits:
		return r != nil && r.IO != nil && r.IO.Limits != nil
	case semantic.HugeTLB:
		return r != nil && r.HugeTLB != nil
	}
	return value(f, r) != nil
}

// diff compares feature f of want and got and says how they differ, or ""
// when they agree. With partial, want is a request and only what it names
// is compared (the IO devices and huge page sizes it lists); otherwise
// both are whole read-backs. Devices are compared by meaning: the access
// each list grants on a grid of devices, since a backend may store an
// equivalent list in another form (v1 reads back the kernel's effective
// list).
func diff(f semantic.Feature, want, got *semantic.Resources, partial bool) string {
	switch f {
	case semantic.DevicesFeature:
		var wd, gd *semantic.Devices
		if want != nil {
			wd = want.Devices
		}
		if got != nil {
			gd = got.Devices
		}
		return diffDevices(wd, gd)
	case semantic.IOLimits:
		wl, gl := ioLimits(want), ioLimits(got)
		if !partial {
			if !maps.Equal(wl, gl) {
				return fmt.Sprintf("IO limits %v, want %v", sortedValues(gl), sortedValues(wl))
			}
			return ""
		}
		// Every device the request lists, one listed with no figure
		// (which removes its limits) included, reads back as listed.
		if want == nil || want.IO == nil {
			return ""
		}
		for _, l := range want.IO.Limits {
			dev := [2]int64{l.Major, l.Minor}
			if g, w := gl[dev], wl[dev]; g != w {
				return fmt.Sprintf("IO limit of %s is %+v, want %+v", l.Device(), g, w)
			}
		}
		return ""
	case semantic.HugeTLB:
		wl, gl := hugeLimits(want), hugeLimits(got)
		if !partial {
			if !maps.Equal(wl, gl) {
				return fmt.Sprintf("huge page limits %v, want %v", gl, wl)
			}
			return ""
		}
		for size, w := range wl {
			if g, ok := gl[size]; !ok || g != w {
				return fmt.Sprintf("huge page limit for %s pages is %v (present %v), want %v", size, g, ok, w)
			}
		}
		return ""
	}
	w, g := value(f, want), value(f, got)
	if w != g {
		return fmt.Sprintf("%s is %s, want %s", f, show(g), show(w))
	}
	return ""
}

func show(v any) string {
	if v == nil {
		return "absent"
	}
	return fmt.Sprintf("%v", v)
}

// ioLimits maps each device with a limit to it; a device listed with no
// limit at all is the same as one not listed.
func ioLimits(r *semantic.Resources) map[[2]int64]semantic.IOLimit {
	out := map[[2]int64]semantic.IOLimit{}
	if r == nil || r.IO == nil {
		return out
	}
	for _, l := range r.IO.Limits {
		if l.ReadBPS|l.WriteBPS|l.ReadIOPS|l.WriteIOPS != 0 {
			out[[2]int64{l.Major, l.Minor}] = l
		}
	}
	return out
}

// sortedValues renders a map's values in key order, for messages.
func sortedValues(m map[[2]int64]semantic.IOLimit) []semantic.IOLimit {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b [2]int64) int {
		if a[0] != b[0] {
			return int(a[0] - b[0])
		}
		return int(a[1] - b[1])
	})
	out := make([]semantic.IOLimit, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func hugeLimits(r *semantic.Resources) map[semantic.Bytes]semantic.Bytes {
	out := map[semantic.Bytes]semantic.Bytes{}
	if r == nil {
		return out
	}
	for _, h := range r.HugeTLB {
		out[h.PageSize] = h.Limit
	}
	return out
}

// diffDevices compares two device lists by the access they grant on every
// device of a grid: both types, each number the rules name, its
// neighbours, and a few common and extreme numbers.
func diffDevices(want, got *semantic.Devices) string {
	if want == nil || got == nil {
		if want == nil && got == nil {
			return ""
		}
		return fmt.Sprintf("devices %s, want %s", showDevices(got), showDevices(want))
	}
	majors := []int64{0, 1, 4, 5, 7, 8, 10, 136, 254, semantic.MaxMajor}
	minors := []int64{0, 1, 3, 5, 7, 9, 64, semantic.MaxMinor}
	for _, d := range []*semantic.Devices{want, got} {
		for _, r := range d.Rules {
			if r.Major != semantic.Wildcard {
				majors = append(majors, r.Major, min(r.Major+1, semantic.MaxMajor))
			}
			if r.Minor != semantic.Wildcard {
				minors = append(minors, r.Minor, min(r.Minor+1, semantic.MaxMinor))
			}
		}
	}
	for _, typ := range []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice} {
		for _, maj := range majors {
			for _, min := range minors {
				w, g := want.Allowed(typ, maj, min), got.Allowed(typ, maj, min)
				if w != g {
					return fmt.Sprintf("devices %s grant %q on %c %d:%d, want %q (from %s)",
						showDevices(got), g, typ, maj, min, w, showDevices(want))
				}
			}
		}
	}
	return ""
}

func showDevices(d *semantic.Devices) string {
	if d == nil {
		return "absent"
	}
	return (&semantic.Resources{Devices: d}).String()
}
