package semantic

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Resources is a backend-neutral set of limits. A nil section, and a nil
// field inside a section, means "not managed: leave as it is". Apply
// changes exactly the fields that are set.
type Resources struct {
	Memory  *Memory        `json:"memory,omitempty"`
	CPU     *CPU           `json:"cpu,omitempty"`
	IO      *IO            `json:"io,omitempty"`
	Pids    *Pids          `json:"pids,omitempty"`
	Devices *Devices       `json:"devices,omitempty"`
	HugeTLB []HugeTLBLimit `json:"hugetlb,omitempty"`
}

// Memory limits. Values are rounded down to the page size (see Normalize).
type Memory struct {
	// Max is the hard limit: above it the group reclaims, then is OOM-killed.
	Max *Bytes `json:"max,omitempty"`
	// High is the throttle limit: above it the group is slowed and reclaimed.
	High *Bytes `json:"high,omitempty"`
	// Low is best-effort protection from reclaim.
	Low *Bytes `json:"low,omitempty"`
	// Min is hard protection from reclaim.
	Min *Bytes `json:"min,omitempty"`
	// Swap is swap the group may use in addition to memory (v2 meaning).
	Swap *Bytes `json:"swap,omitempty"`
}

// Default CPU bandwidth period, and the kernel's bounds on it.
const (
	DefaultCPUPeriod = 100 * time.Millisecond
	MinCPUPeriod     = time.Millisecond
	MaxCPUPeriod     = time.Second
	// MinCPUQuota is the kernel's smallest quota per period.
	MinCPUQuota = time.Millisecond
	// MinCPUs and MaxCPUs bound a CPU bandwidth limit.
	MinCPUs = 0.001
	MaxCPUs = 1 << 20
)

// Weight bounds and the default, on systemd's and cgroup v2's scale.
const (
	MinWeight     = 1
	MaxWeight     = 10000
	DefaultWeight = 100
)

// CPU limits.
type CPU struct {
	// Weight is the relative share under contention, 1..10000, default 100.
	Weight *uint64 `json:"weight,omitempty"`
	// Max caps CPU bandwidth.
	Max *CPUMax `json:"max,omitempty"`
	// Cpus restricts the group to these CPUs.
	Cpus CPUSet `json:"cpus,omitempty"`
	// Mems restricts the group to these memory nodes.
	Mems CPUSet `json:"mems,omitempty"`
}

// CPUMax caps CPU bandwidth to CPUs per Period.
type CPUMax struct {
	// CPUs is the cap in CPUs (1.5 = one and a half CPUs' time per period);
	// 0 means no cap ("max").
	CPUs float64 `json:"cpus"`
	// Period is the accounting period; 0 means DefaultCPUPeriod.
	Period time.Duration `json:"period,omitempty"`
}

// IO limits.
type IO struct {
	// Weight is the relative share under contention, 1..10000, default 100.
	Weight *uint64 `json:"weight,omitempty"`
	// Limits are per-device throttles. A nil slice leaves every device's
	// throttles alone; a listed device gets exactly the limits given (0 = none).
	Limits []IOLimit `json:"limits,omitempty"`
}

// IOLimit throttles one block device. Zero means no limit for that figure.
type IOLimit struct {
	Major     int64  `json:"major"`
	Minor     int64  `json:"minor"`
	ReadBPS   uint64 `json:"rbps,omitempty"`
	WriteBPS  uint64 `json:"wbps,omitempty"`
	ReadIOPS  uint64 `json:"riops,omitempty"`
	WriteIOPS uint64 `json:"wiops,omitempty"`
}

// SortIOLimits orders limits by device number, major then minor: the
// order Normalize gives and every driver reads back in.
func SortIOLimits(limits []IOLimit) {
	// sort.Slice rather than slices.SortFunc: one sort for every element
	// type keeps programs that link cgsem small (the generic sort is
	// instantiated per type).
	sort.Slice(limits, func(i, j int) bool {
		a, b := limits[i], limits[j]
		return a.Major < b.Major || a.Major == b.Major && a.Minor < b.Minor
	})
}

// Device renders the device as "MAJOR:MINOR".
func (l IOLimit) Device() string { return fmt.Sprintf("%d:%d", l.Major, l.Minor) }

// String renders the limit as ParseIOLimit reads it, every key present and
// 0 (no limit) as max: "8:0:rbps=10MiB,wbps=max,riops=max,wiops=100".
func (l IOLimit) String() string {
	rate := func(v uint64, bytes bool) string {
		switch {
		case v == 0:
			return "max"
		case bytes:
			return Bytes(v).String()
		}
		return strconv.FormatUint(v, 10)
	}
	return fmt.Sprintf("%s:rbps=%s,wbps=%s,riops=%s,wiops=%s", l.Device(),
		rate(l.ReadBPS, true), rate(l.WriteBPS, true), rate(l.ReadIOPS, false), rate(l.WriteIOPS, false))
}

// Pids limits.
type Pids struct {
	// Max is the most tasks (processes and threads) the group may hold.
	Max *Count `json:"max,omitempty"`
}

// HugeTLBLimit caps huge pages of one size.
type HugeTLBLimit struct {
	PageSize Bytes `json:"pagesize"`
	Limit    Bytes `json:"limit"`
}

// Validate checks every set field's range and form. It does not consult
// the host: a driver may still refuse a field as unsupported.
func (r *Resources) Validate() error {
	if r == nil {
		return nil
	}
	if c := r.CPU; c != nil {
		if c.Weight != nil && (*c.Weight < MinWeight || *c.Weight > MaxWeight) {
			return invalidf("CPU weight %d: out of range %d..%d", *c.Weight, MinWeight, MaxWeight)
		}
		if m := c.Max; m != nil {
			if math.IsNaN(m.CPUs) || m.CPUs != 0 && (m.CPUs < MinCPUs || m.CPUs > MaxCPUs) {
				return invalidf("CPU max %g: out of range %g..%d (0 for no cap)", m.CPUs, MinCPUs, MaxCPUs)
			}
			if m.Period != 0 && (m.Period < MinCPUPeriod || m.Period > MaxCPUPeriod) {
				return invalidf("CPU period %v: out of range %v..%v", m.Period, MinCPUPeriod, MaxCPUPeriod)
			}
			if m.Period%time.Microsecond != 0 {
				return invalidf("CPU period %v: not a whole number of microseconds", m.Period)
			}
			if m.CPUs != 0 {
				if q := CPUsToQuota(m.CPUs, m.period()); q < MinCPUQuota {
					return invalidf("CPU max %g per %v: quota %v is below the kernel's minimum %v", m.CPUs, m.period(), q, MinCPUQuota)
				}
			}
		}
		if err := c.Cpus.Validate(); err != nil {
			return err
		}
		if err := c.Mems.Validate(); err != nil {
			return err
		}
		if c.Cpus != nil && len(c.Cpus) == 0 {
			return invalidf("CPU set: empty; a group with no CPUs cannot run")
		}
		if c.Mems != nil && len(c.Mems) == 0 {
			return invalidf("memory node set: empty; a group with no memory nodes cannot run")
		}
	}
	if io := r.IO; io != nil {
		if io.Weight != nil && (*io.Weight < MinWeight || *io.Weight > MaxWeight) {
			return invalidf("IO weight %d: out of range %d..%d", *io.Weight, MinWeight, MaxWeight)
		}
		seen := map[[2]int64]bool{}
		for _, l := range io.Limits {
			if l.Major < 0 || l.Major > MaxMajor || l.Minor < 0 || l.Minor > MaxMinor {
				return invalidf("IO limit device %s: numbers out of range", l.Device())
			}
			if seen[[2]int64{l.Major, l.Minor}] {
				return invalidf("IO limit device %s: listed twice", l.Device())
			}
			seen[[2]int64{l.Major, l.Minor}] = true
			for _, v := range []uint64{l.ReadBPS, l.WriteBPS, l.ReadIOPS, l.WriteIOPS} {
				if v == Unlimited {
					return invalidf("IO limit device %s: use 0, not max, for no limit", l.Device())
				}
			}
		}
	}
	if d := r.Devices; d != nil {
		if err := d.Validate(); err != nil {
			return err
		}
	}
	seen := map[Bytes]bool{}
	for _, h := range r.HugeTLB {
		if h.PageSize == 0 || h.PageSize&(h.PageSize-1) != 0 || h.PageSize < 64*KiB || h.PageSize.IsUnlimited() {
			return invalidf("huge page size %s: not a power of two of at least 64KiB", h.PageSize)
		}
		if seen[h.PageSize] {
			return invalidf("huge page size %s: listed twice", h.PageSize)
		}
		seen[h.PageSize] = true
	}
	return nil
}

func (m *CPUMax) period() time.Duration {
	if m.Period == 0 {
		return DefaultCPUPeriod
	}
	return m.Period
}

// EffectivePeriod is Period, or DefaultCPUPeriod when Period is 0.
func (m *CPUMax) EffectivePeriod() time.Duration { return m.period() }

// Normalize returns a deep copy of r with every value in the form the
// kernel stores and read-back returns: memory limits rounded down to
// pageSize, huge page limits to their page size, CPU caps to whole
// microseconds of quota with the period made explicit, CPU sets sorted, IO
// limits sorted by device with unlimited ones dropped. Every driver's
// read-back equals the Normalize of what was applied.
func (r *Resources) Normalize(pageSize uint64) *Resources {
	if r == nil {
		return nil
	}
	out := r.Clone()
	if m := out.Memory; m != nil {
		for _, f := range []*Bytes{m.Max, m.High, m.Low, m.Min, m.Swap} {
			if f != nil {
				*f = RoundToPage(*f, pageSize)
			}
		}
	}
	if c := out.CPU; c != nil && c.Max != nil {
		c.Max.Period = c.Max.period()
		if c.Max.CPUs != 0 {
			c.Max.CPUs = QuotaToCPUs(CPUsToQuota(c.Max.CPUs, c.Max.Period), c.Max.Period)
		}
	}
	if c := out.CPU; c != nil {
		c.Cpus = sortedSet(c.Cpus)
		c.Mems = sortedSet(c.Mems)
	}
	if io := out.IO; io != nil && io.Limits != nil {
		// A device with no figure limited has no throttle to read back.
		io.Limits = slices.DeleteFunc(io.Limits, func(l IOLimit) bool {
			return l.ReadBPS == 0 && l.WriteBPS == 0 && l.ReadIOPS == 0 && l.WriteIOPS == 0
		})
		SortIOLimits(io.Limits)
	}
	if out.HugeTLB != nil {
		for i := range out.HugeTLB {
			out.HugeTLB[i].Limit = RoundToPage(out.HugeTLB[i].Limit, uint64(out.HugeTLB[i].PageSize))
		}
		sort.Slice(out.HugeTLB, func(i, j int) bool { return out.HugeTLB[i].PageSize < out.HugeTLB[j].PageSize })
	}
	return out
}

// sortedSet sorts and de-duplicates a set built by hand; nil stays nil.
func sortedSet(c CPUSet) CPUSet {
	if c == nil {
		return nil
	}
	slices.Sort(c)
	return slices.Compact(c)
}

// RoundToPage rounds b down to a multiple of pageSize; Unlimited stays.
func RoundToPage(b Bytes, pageSize uint64) Bytes {
	if b.IsUnlimited() || pageSize == 0 {
		return b
	}
	return b - b%Bytes(pageSize)
}

// Clone returns a deep copy.
func (r *Resources) Clone() *Resources {
	if r == nil {
		return nil
	}
	out := &Resources{}
	if r.Memory != nil {
		m := *r.Memory
		m.Max, m.High, m.Low, m.Min, m.Swap = clonePtr(m.Max), clonePtr(m.High), clonePtr(m.Low), clonePtr(m.Min), clonePtr(m.Swap)
		out.Memory = &m
	}
	if r.CPU != nil {
		c := *r.CPU
		c.Weight = clonePtr(c.Weight)
		c.Max = clonePtr(c.Max)
		c.Cpus = slices.Clone(c.Cpus)
		c.Mems = slices.Clone(c.Mems)
		out.CPU = &c
	}
	if r.IO != nil {
		io := *r.IO
		io.Weight = clonePtr(io.Weight)
		io.Limits = slices.Clone(io.Limits)
		out.IO = &io
	}
	if r.Pids != nil {
		out.Pids = &Pids{Max: clonePtr(r.Pids.Max)}
	}
	if r.Devices != nil {
		out.Devices = &Devices{Default: r.Devices.Default, Rules: slices.Clone(r.Devices.Rules)}
	}
	out.HugeTLB = slices.Clone(r.HugeTLB)
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Merge returns base with every field set in update replacing base's: the
// state a group is in after Apply(update) from base.
func Merge(base, update *Resources) *Resources {
	out := base.Clone()
	if out == nil {
		out = &Resources{}
	}
	u := update.Clone()
	if u == nil {
		return out
	}
	if u.Memory != nil {
		if out.Memory == nil {
			out.Memory = &Memory{}
		}
		setIf(&out.Memory.Max, u.Memory.Max)
		setIf(&out.Memory.High, u.Memory.High)
		setIf(&out.Memory.Low, u.Memory.Low)
		setIf(&out.Memory.Min, u.Memory.Min)
		setIf(&out.Memory.Swap, u.Memory.Swap)
	}
	if u.CPU != nil {
		if out.CPU == nil {
			out.CPU = &CPU{}
		}
		setIf(&out.CPU.Weight, u.CPU.Weight)
		setIf(&out.CPU.Max, u.CPU.Max)
		if u.CPU.Cpus != nil {
			out.CPU.Cpus = u.CPU.Cpus
		}
		if u.CPU.Mems != nil {
			out.CPU.Mems = u.CPU.Mems
		}
	}
	if u.IO != nil {
		if out.IO == nil {
			out.IO = &IO{}
		}
		setIf(&out.IO.Weight, u.IO.Weight)
		if u.IO.Limits != nil {
			out.IO.Limits = u.IO.Limits
		}
	}
	if u.Pids != nil {
		if out.Pids == nil {
			out.Pids = &Pids{}
		}
		setIf(&out.Pids.Max, u.Pids.Max)
	}
	if u.Devices != nil {
		out.Devices = u.Devices
	}
	if u.HugeTLB != nil {
		out.HugeTLB = u.HugeTLB
	}
	return out
}

func setIf[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// Fields lists the features a request touches, in a fixed order; drivers
// use it to refuse unsupported fields before changing anything.
func (r *Resources) Fields() []Feature {
	if r == nil {
		return nil
	}
	var fs []Feature
	add := func(set bool, f Feature) {
		if set {
			fs = append(fs, f)
		}
	}
	if m := r.Memory; m != nil {
		add(m.Max != nil, MemoryMax)
		add(m.High != nil, MemoryHigh)
		add(m.Low != nil, MemoryLow)
		add(m.Min != nil, MemoryMin)
		add(m.Swap != nil, MemorySwap)
	}
	if c := r.CPU; c != nil {
		add(c.Weight != nil, CPUWeight)
		add(c.Max != nil, CPUMaxFeature)
		add(c.Cpus != nil, CPUSetCPUs)
		add(c.Mems != nil, CPUSetMems)
	}
	if io := r.IO; io != nil {
		add(io.Weight != nil, IOWeight)
		add(io.Limits != nil, IOLimits)
	}
	if r.Pids != nil {
		add(r.Pids.Max != nil, PidsMax)
	}
	add(r.Devices != nil, DevicesFeature)
	add(r.HugeTLB != nil, HugeTLB)
	return fs
}

// Only returns a copy of r that sets feature f alone, as r sets it: a
// request of one field (drivers apply and check features one at a time
// with it). It is empty when r leaves f unset.
func (r *Resources) Only(f Feature) *Resources {
	out := &Resources{}
	if r == nil {
		return out
	}
	m, c, io := r.Memory, r.CPU, r.IO
	switch {
	case f == MemoryMax && m != nil && m.Max != nil:
		out.Memory = &Memory{Max: m.Max}
	case f == MemoryHigh && m != nil && m.High != nil:
		out.Memory = &Memory{High: m.High}
	case f == MemoryLow && m != nil && m.Low != nil:
		out.Memory = &Memory{Low: m.Low}
	case f == MemoryMin && m != nil && m.Min != nil:
		out.Memory = &Memory{Min: m.Min}
	case f == MemorySwap && m != nil && m.Swap != nil:
		out.Memory = &Memory{Swap: m.Swap}
	case f == CPUWeight && c != nil && c.Weight != nil:
		out.CPU = &CPU{Weight: c.Weight}
	case f == CPUMaxFeature && c != nil && c.Max != nil:
		out.CPU = &CPU{Max: c.Max}
	case f == CPUSetCPUs && c != nil && c.Cpus != nil:
		out.CPU = &CPU{Cpus: c.Cpus}
	case f == CPUSetMems && c != nil && c.Mems != nil:
		out.CPU = &CPU{Mems: c.Mems}
	case f == IOWeight && io != nil && io.Weight != nil:
		out.IO = &IO{Weight: io.Weight}
	case f == IOLimits && io != nil && io.Limits != nil:
		out.IO = &IO{Limits: io.Limits}
	case f == PidsMax && r.Pids != nil && r.Pids.Max != nil:
		out.Pids = &Pids{Max: r.Pids.Max}
	case f == DevicesFeature:
		out.Devices = r.Devices
	case f == HugeTLB:
		out.HugeTLB = r.HugeTLB
	}
	return out.Clone()
}

// String renders the set fields compactly, for logs and messages.
func (r *Resources) String() string {
	if r == nil {
		return "{}"
	}
	var parts []string
	add := func(name string, v any) { parts = append(parts, fmt.Sprintf("%s=%v", name, v)) }
	if m := r.Memory; m != nil {
		for _, f := range []struct {
			n string
			v *Bytes
		}{{"memory.max", m.Max}, {"memory.high", m.High}, {"memory.low", m.Low}, {"memory.min", m.Min}, {"memory.swap", m.Swap}} {
			if f.v != nil {
				add(f.n, *f.v)
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Weight != nil {
			add("cpu.weight", *c.Weight)
		}
		if c.Max != nil {
			add("cpu.max", fmt.Sprintf("%g/%v", c.Max.CPUs, c.Max.period()))
		}
		if c.Cpus != nil {
			add("cpu.cpus", c.Cpus)
		}
		if c.Mems != nil {
			add("cpu.mems", c.Mems)
		}
	}
	if io := r.IO; io != nil {
		if io.Weight != nil {
			add("io.weight", *io.Weight)
		}
		if io.Limits != nil {
			add("io.limits", io.Limits)
		}
	}
	if r.Pids != nil && r.Pids.Max != nil {
		add("pids.max", *r.Pids.Max)
	}
	if d := r.Devices; d != nil {
		rules := make([]string, len(d.Rules))
		for i, x := range d.Rules {
			rules[i] = x.String()
		}
		add("devices", string(d.Default)+"["+strings.Join(rules, ", ")+"]")
	}
	if r.HugeTLB != nil {
		add("hugetlb", r.HugeTLB)
	}
	return "{" + strings.Join(parts, " ") + "}"
}
