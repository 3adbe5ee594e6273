package systemd

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/cgsem/cgsem/semantic"
)

// layout is how the systemd instance has its cgroups, which decides what
// its properties do: on cgroup v1 systemd translates some properties to v1
// files and silently ignores others.
type layout int

const (
	layoutUnified layout = iota + 1 // cgroup2 at /sys/fs/cgroup
	layoutHybrid                    // v1 controllers, cgroup2 at /sys/fs/cgroup/unified
	layoutLegacy                    // v1 only
)

func (l layout) String() string {
	switch l {
	case layoutUnified:
		return "unified"
	case layoutHybrid:
		return "hybrid"
	case layoutLegacy:
		return "legacy"
	}
	return "unknown"
}

// host is what the property mapping knows about the systemd instance and
// its machine. It is plain data, read once when the driver opens, so the
// mapping is a pure function of it.
type host struct {
	layout  layout
	version int
	// controllers are the controllers systemd can use: on cgroup2 those
	// its root group offers (cgroup.controllers), on v1 the hierarchies
	// mounted ("memory", "cpu", "cpuacct", "pids", "devices", "blkio",
	// "cpuset", "freezer").
	controllers map[string]bool
	// blkioWeight: the v1 blkio hierarchy has a weight file
	// (blkio.bfq.weight or blkio.weight) for systemd to write IOWeight= to.
	blkioWeight bool
	// freeze: the kernel has cgroup.freeze, which systemd's FreezeUnit
	// needs (cgroup2 only).
	freeze bool
	// pressure: the cgroup2 hierarchy has PSI files.
	pressure bool
	// cpus and mems are the CPUs and memory nodes the kernel lets a
	// cgroup2 group name (the hierarchy root's cpuset.cpus.effective and
	// cpuset.mems.effective); nil when unknown. systemd takes any
	// AllowedCPUs= and only logs the kernel's refusal, so the driver
	// refuses a member outside them itself.
	cpus, mems semantic.CPUSet
	pageSize   uint64
	majors     majorNames
}

// propertyVersion is the systemd release that introduced each property the
// driver sets or reads; a request needing a newer one is refused.
var propertyVersion = map[string]int{
	"MemoryMax": 231, "MemoryHigh": 231, "MemoryLow": 231, "MemoryMin": 240, "MemorySwapMax": 232,
	"CPUWeight": 231, "CPUQuotaPerSecUSec": 213, "CPUQuotaPeriodUSec": 242,
	"AllowedCPUs": 244, "AllowedMemoryNodes": 244,
	"IOWeight": 230, "IOReadBandwidthMax": 230, "IOWriteBandwidthMax": 230, "IOReadIOPSMax": 230, "IOWriteIOPSMax": 230,
	"TasksMax": 227, "DevicePolicy": 208, "DeviceAllow": 208,
	"FreezeUnit": 246,
}

// featureProperties are the properties each resource feature is said with.
var featureProperties = map[semantic.Feature][]string{
	semantic.MemoryMax:      {"MemoryMax"},
	semantic.MemoryHigh:     {"MemoryHigh"},
	semantic.MemoryLow:      {"MemoryLow"},
	semantic.MemoryMin:      {"MemoryMin"},
	semantic.MemorySwap:     {"MemorySwapMax"},
	semantic.CPUWeight:      {"CPUWeight"},
	semantic.CPUMaxFeature:  {"CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec"},
	semantic.CPUSetCPUs:     {"AllowedCPUs"},
	semantic.CPUSetMems:     {"AllowedMemoryNodes"},
	semantic.IOWeight:       {"IOWeight"},
	semantic.IOLimits:       {"IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax"},
	semantic.PidsMax:        {"TasksMax"},
	semantic.DevicesFeature: {"DevicePolicy", "DeviceAllow"},
}

// Conversions the capabilities name.
const (
	convCPUWeightV1 = "systemd writes cpu.shares = weight × 1024 / 100 truncated; read back from CPUWeight= exactly"
	convCPUQuota    = "CPUQuotaPerSecUSec = CPUs × 1s rounded to 10ms (systemd persists CPUQuota= in whole percent), " +
		"kernel quota = CPUQuotaPerSecUSec × period / 1s; a value these steps keep is applied as is, " +
		"others only with AllowApproximate"
	convIOWeightV1 = semantic.ConvIOWeightToBlkio + "; exact for 2..200, others only with AllowApproximate"
)

func exact(f semantic.Feature, conv string) semantic.Capability {
	return semantic.Capability{Feature: f, Support: semantic.Exact, Conversion: conv}
}

func unsupported(f semantic.Feature, why string) semantic.Capability {
	return semantic.Capability{Feature: f, Support: semantic.Unsupported, Reason: why}
}

// capabilities is the driver's verdict per feature on this host.
func (h *host) capabilities() semantic.Capabilities {
	caps := semantic.Capabilities{}
	set := func(c semantic.Capability) { caps[c.Feature] = c }
	v1 := h.layout != layoutUnified
	need := func(f semantic.Feature, controller string, conv string) {
		switch {
		case !h.controllers[controller] && v1:
			set(unsupported(f, fmt.Sprintf("no v1 %s hierarchy is mounted for systemd", controller)))
		case !h.controllers[controller]:
			set(unsupported(f, fmt.Sprintf("the %s controller is not available in systemd's cgroup2 root", controller)))
		default:
			set(exact(f, conv))
		}
	}
	v2only := func(f semantic.Feature, controller, prop string) {
		if v1 {
			set(unsupported(f, fmt.Sprintf("systemd applies %s= only on the unified cgroup hierarchy; this one is %s", prop, h.layout)))
			return
		}
		need(f, controller, "")
	}
	need(semantic.MemoryMax, "memory", "")
	v2only(semantic.MemoryHigh, "memory", "MemoryHigh")
	v2only(semantic.MemoryLow, "memory", "MemoryLow")
	v2only(semantic.MemoryMin, "memory", "MemoryMin")
	v2only(semantic.MemorySwap, "memory", "MemorySwapMax")
	if v1 {
		need(semantic.CPUWeight, "cpu", convCPUWeightV1)
	} else {
		need(semantic.CPUWeight, "cpu", "")
	}
	need(semantic.CPUMaxFeature, "cpu", convCPUQuota)
	if caps[semantic.CPUMaxFeature].Support == semantic.Exact {
		set(semantic.Capability{Feature: semantic.CPUMaxFeature, Support: semantic.Approximate, Conversion: convCPUQuota})
	}
	v2only(semantic.CPUSetCPUs, "cpuset", "AllowedCPUs")
	v2only(semantic.CPUSetMems, "cpuset", "AllowedMemoryNodes")
	switch {
	case v1 && !h.controllers["blkio"]:
		set(unsupported(semantic.IOWeight, "no v1 blkio hierarchy is mounted for systemd"))
	case v1 && !h.blkioWeight:
		set(unsupported(semantic.IOWeight, "the blkio hierarchy has no blkio.weight or blkio.bfq.weight (no proportional IO scheduler) for systemd to write IOWeight= to"))
	case v1:
		set(semantic.Capability{Feature: semantic.IOWeight, Support: semantic.Approximate, Conversion: convIOWeightV1})
	default:
		need(semantic.IOWeight, "io", "")
	}
	if v1 {
		set(unsupported(semantic.IOLimits, "on cgroup v1 systemd applies IO{Read,Write}BandwidthMax= but ignores IO{Read,Write}IOPSMax=, so a limit would be half applied"))
	} else {
		need(semantic.IOLimits, "io", "")
	}
	need(semantic.PidsMax, "pids", "")
	if v1 {
		need(semantic.DevicesFeature, "devices", "")
	} else {
		set(exact(semantic.DevicesFeature, ""))
	}
	if c := caps[semantic.DevicesFeature]; c.Support == semantic.Exact {
		c.Reason = "DevicePolicy=strict with DeviceAllow=; lists with deny rules that carve exceptions, whole majors that /proc/devices does not name uniquely, and wildcard majors with a fixed minor are refused"
		set(c)
	}
	set(unsupported(semantic.HugeTLB, "systemd has no property for huge page limits"))
	// Versions: a feature needing a property this systemd lacks.
	for f, props := range featureProperties {
		for _, p := range props {
			if v := propertyVersion[p]; h.version < v && caps.Supports(f) {
				set(unsupported(f, fmt.Sprintf("systemd %d lacks %s= (since %d)", h.version, p, v)))
			}
		}
	}
	switch {
	case v1:
		set(unsupported(semantic.Freeze, "systemd freezes units only on the unified cgroup hierarchy (cgroup.freeze); this one is "+h.layout.String()))
	case h.version < propertyVersion["FreezeUnit"]:
		set(unsupported(semantic.Freeze, fmt.Sprintf("systemd %d lacks FreezeUnit (since 246)", h.version)))
	case !h.freeze:
		set(unsupported(semantic.Freeze, "the kernel has no cgroup.freeze"))
	default:
		set(exact(semantic.Freeze, "FreezeUnit/ThawUnit"))
	}
	set(exact(semantic.Kill, "KillUnit SIGKILL on every scope below"))
	set(unsupported(semantic.Threads, "systemd moves whole processes only"))
	set(exact(semantic.StartInside, "the child stops at its exec (ptrace) until its scope has it"))
	if h.layout == layoutLegacy {
		set(unsupported(semantic.EventsPopulated, "no cgroup2 hierarchy to watch cgroup.events on"))
	} else {
		set(exact(semantic.EventsPopulated, "cgroup.events"))
	}
	switch {
	case caps.Supports(semantic.Freeze):
		set(exact(semantic.EventsFrozen, "cgroup.events"))
	default:
		set(unsupported(semantic.EventsFrozen, "freeze is unsupported"))
	}
	switch {
	case !h.controllers["memory"]:
		set(unsupported(semantic.EventsOOM, "no memory controller"))
	case v1:
		set(exact(semantic.EventsOOM, "memory.oom_control eventfd: OOM events only; v1 counts a kill in the victim's own group, which ends with its scope, so there are no OOM-kill events or counts"))
	default:
		set(exact(semantic.EventsOOM, "memory.events"))
	}
	if h.pressure {
		set(exact(semantic.StatsPressure, ""))
	} else {
		set(unsupported(semantic.StatsPressure, "no cgroup2 pressure files"))
	}
	return caps
}

// prop is one unit property as D-Bus carries it in a(sv), with the
// feature it serves (for plans and errors; not sent).
type prop struct {
	Name    string
	Value   dbus.Variant
	feature semantic.Feature
}

// wire strips props to what D-Bus carries.
func wire(props []prop) []property {
	out := make([]property, len(props))
	for i, p := range props {
		out[i] = property{p.Name, p.Value}
	}
	return out
}

// property is the a(sv) element.
type property struct {
	Name  string
	Value dbus.Variant
}

// infinity is systemd's "no limit" and "not set" for u64 properties.
const infinity = math.MaxUint64

const quotaStep = 10000 // µs of CPU per second: systemd persists CPUQuota= in whole percent

// cpuQuota converts a cap to CPUQuotaPerSecUSec for period. lossless is
// false when systemd would keep, or the kernel receive, another value than
// semantic's Normalize gives.
func cpuQuota(cpus float64, period time.Duration) (perSec uint64, lossless bool) {
	if cpus == 0 {
		return infinity, true
	}
	steps := math.Round(cpus * 1e6 / quotaStep)
	perSec = uint64(max(steps, 1)) * quotaStep
	p := uint64(period.Microseconds())
	want := uint64(semantic.CPUsToQuota(cpus, period).Microseconds())
	return perSec, perSec*p%1e6 == 0 && perSec*p/1e6 == want
}

// onHost refuses a set with a member the host lacks (the kernel's EINVAL
// for cpuset.cpus or cpuset.mems), unless the host's set is unknown.
func onHost(f semantic.Feature, what string, set, host semantic.CPUSet) error {
	if host == nil {
		return nil
	}
	for _, id := range set {
		if !slices.Contains(host, id) {
			return semantic.Errorf(semantic.ErrInvalid, "set "+string(f), "",
				"%s %d is not on this host, which has %s", what, id, host)
		}
	}
	return nil
}

// ioWeightLossless reports whether systemd's v1 map keeps an IO weight.
func ioWeightLossless(h *host, w uint64) bool {
	if h.layout == layoutUnified {
		return true
	}
	_, ok := semantic.IOWeightToBlkio(w)
	return ok
}

// encode maps a validated, normalized request to unit properties, in a
// fixed order. approx allows lossy conversions; without it a value that
// would change is refused with ErrNotSupported naming the feature.
func (h *host) encode(req *semantic.Resources, approx bool) ([]prop, error) {
	var out []prop
	add := func(f semantic.Feature, name string, v any) {
		out = append(out, prop{Name: name, Value: dbus.MakeVariant(v), feature: f})
	}
	bytesProp := func(f semantic.Feature, name string, b *semantic.Bytes) {
		if b != nil {
			add(f, name, uint64(*b))
		}
	}
	if m := req.Memory; m != nil {
		bytesProp(semantic.MemoryMax, "MemoryMax", m.Max)
		bytesProp(semantic.MemoryHigh, "MemoryHigh", m.High)
		bytesProp(semantic.MemoryLow, "MemoryLow", m.Low)
		bytesProp(semantic.MemoryMin, "MemoryMin", m.Min)
		bytesProp(semantic.MemorySwap, "MemorySwapMax", m.Swap)
	}
	if c := req.CPU; c != nil {
		if c.Weight != nil {
			add(semantic.CPUWeight, "CPUWeight", *c.Weight)
		}
		if m := c.Max; m != nil {
			perSec, lossless := cpuQuota(m.CPUs, m.EffectivePeriod())
			if !lossless && !approx {
				return nil, semantic.NotSupported(Name, semantic.CPUMaxFeature, fmt.Sprintf(
					"%g CPUs per %v is not a whole percent of a CPU per second, or its quota is not a whole microsecond (%s); allow approximations to apply %d µs per second",
					m.CPUs, m.EffectivePeriod(), convCPUQuota, perSec))
			}
			if m.CPUs != 0 && perSec*uint64(m.EffectivePeriod().Microseconds()) < uint64(semantic.MinCPUQuota.Microseconds())*1e6 {
				return nil, semantic.NotSupported(Name, semantic.CPUMaxFeature, fmt.Sprintf(
					"%g CPUs rounds to %d µs per second, below 1ms per %v period", m.CPUs, perSec, m.EffectivePeriod()))
			}
			add(semantic.CPUMaxFeature, "CPUQuotaPerSecUSec", perSec)
			add(semantic.CPUMaxFeature, "CPUQuotaPeriodUSec", uint64(m.EffectivePeriod().Microseconds()))
		}
		if c.Cpus != nil {
			if err := onHost(semantic.CPUSetCPUs, "CPU", c.Cpus, h.cpus); err != nil {
				return nil, err
			}
			add(semantic.CPUSetCPUs, "AllowedCPUs", cpuMask(c.Cpus))
		}
		if c.Mems != nil {
			if err := onHost(semantic.CPUSetMems, "memory node", c.Mems, h.mems); err != nil {
				return nil, err
			}
			add(semantic.CPUSetMems, "AllowedMemoryNodes", cpuMask(c.Mems))
		}
	}
	if io := req.IO; io != nil {
		if io.Weight != nil {
			if !approx && !ioWeightLossless(h, *io.Weight) {
				return nil, semantic.NotSupported(Name, semantic.IOWeight, fmt.Sprintf(
					"IO weight %d is clamped on cgroup v1 (%s); allow approximations to apply it", *io.Weight, convIOWeightV1))
			}
			add(semantic.IOWeight, "IOWeight", *io.Weight)
		}
		if io.Limits != nil {
			var rb, wb, ri, wi []ioLimit
			or := func(v uint64) uint64 {
				if v == 0 {
					return infinity
				}
				return v
			}
			for _, l := range io.Limits {
				dev := fmt.Sprintf("/dev/block/%d:%d", l.Major, l.Minor)
				rb = append(rb, ioLimit{dev, or(l.ReadBPS)})
				wb = append(wb, ioLimit{dev, or(l.WriteBPS)})
				ri = append(ri, ioLimit{dev, or(l.ReadIOPS)})
				wi = append(wi, ioLimit{dev, or(l.WriteIOPS)})
			}
			if len(io.Limits) > 0 {
				add(semantic.IOLimits, "IOReadBandwidthMax", rb)
				add(semantic.IOLimits, "IOWriteBandwidthMax", wb)
				add(semantic.IOLimits, "IOReadIOPSMax", ri)
				add(semantic.IOLimits, "IOWriteIOPSMax", wi)
			}
		}
	}
	if p := req.Pids; p != nil && p.Max != nil {
		add(semantic.PidsMax, "TasksMax", uint64(*p.Max))
	}
	if d := req.Devices; d != nil {
		policy, allow, err := deviceProperties(d, h.majors)
		if err != nil {
			return nil, semantic.NotSupported(Name, semantic.DevicesFeature, err.Error())
		}
		add(semantic.DevicesFeature, "DevicePolicy", policy)
		// A non-empty DeviceAllow= adds to the list; an empty one clears
		// it. Clearing first, in the same call, replaces it.
		add(semantic.DevicesFeature, "DeviceAllow", []deviceAllow{})
		if len(allow) > 0 {
			add(semantic.DevicesFeature, "DeviceAllow", allow)
		}
	}
	return out, nil
}

// ioLimit is one IO*Max= entry: a(st).
type ioLimit struct {
	Path  string
	Limit uint64
}

// cpuMask renders a set as systemd's byte-array bitmask: bit i of byte i/8.
func cpuMask(s semantic.CPUSet) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	out := make([]byte, slices.Max(s)/8+1)
	for _, c := range s {
		out[c/8] |= 1 << (c % 8)
	}
	return out
}

// maskSet reads a bitmask back.
func maskSet(b []byte) semantic.CPUSet {
	var out semantic.CPUSet
	for i, v := range b {
		for bit := range 8 {
			if v&(1<<bit) != 0 {
				out = append(out, i*8+bit)
			}
		}
	}
	return out
}

// inheritedSet reads what a slice without a set of its own gets, from
// its group's nearest cpuset.cpus.effective or cpuset.mems.effective.
type inheritedSet func(file string) semantic.CPUSet

// decode reads the properties of a slice (GetAll of its Slice interface)
// back into resources, for every feature caps supports. resolve finds the
// device a node path in an IO limit or DeviceAllow= names; inherit reads
// the CPUs and nodes of a slice with no AllowedCPUs= or
// AllowedMemoryNodes=.
func (h *host) decode(props map[string]dbus.Variant, caps semantic.Capabilities, resolve nodeResolver, inherit inheritedSet) *semantic.Resources {
	u64 := func(name string, unset uint64) uint64 {
		if v, ok := props[name].Value().(uint64); ok {
			return v
		}
		return unset
	}
	bytesOf := func(name string) *semantic.Bytes {
		v := semantic.RoundToPage(semantic.Bytes(u64(name, infinity)), h.pageSize)
		return &v
	}
	weight := func(name string) *uint64 {
		v := u64(name, infinity)
		if v == infinity || v < semantic.MinWeight || v > semantic.MaxWeight {
			v = semantic.DefaultWeight
		}
		return &v
	}
	r := &semantic.Resources{}
	has := caps.Supports
	if has(semantic.MemoryMax) || has(semantic.MemoryHigh) || has(semantic.MemoryLow) || has(semantic.MemoryMin) || has(semantic.MemorySwap) {
		m := &semantic.Memory{}
		if has(semantic.MemoryMax) {
			m.Max = bytesOf("MemoryMax")
		}
		if has(semantic.MemoryHigh) {
			m.High = bytesOf("MemoryHigh")
		}
		if has(semantic.MemoryLow) {
			v := semantic.RoundToPage(semantic.Bytes(u64("MemoryLow", 0)), h.pageSize)
			m.Low = &v
		}
		if has(semantic.MemoryMin) {
			v := semantic.RoundToPage(semantic.Bytes(u64("MemoryMin", 0)), h.pageSize)
			m.Min = &v
		}
		if has(semantic.MemorySwap) {
			m.Swap = bytesOf("MemorySwapMax")
		}
		r.Memory = m
	}
	if has(semantic.CPUWeight) || has(semantic.CPUMaxFeature) || has(semantic.CPUSetCPUs) || has(semantic.CPUSetMems) {
		c := &semantic.CPU{}
		if has(semantic.CPUWeight) {
			c.Weight = weight("CPUWeight")
		}
		if has(semantic.CPUMaxFeature) {
			period := semantic.DefaultCPUPeriod
			if p := u64("CPUQuotaPeriodUSec", infinity); p != infinity {
				period = time.Duration(p) * time.Microsecond
			}
			m := &semantic.CPUMax{Period: period}
			if q := u64("CPUQuotaPerSecUSec", infinity); q != infinity {
				m.CPUs = semantic.QuotaToCPUs(time.Duration(q*uint64(period.Microseconds())/1e6)*time.Microsecond, period)
			}
			c.Max = m
		}
		if has(semantic.CPUSetCPUs) {
			c.Cpus = ownOrInherited(props, "AllowedCPUs", func() semantic.CPUSet { return inherit("cpuset.cpus.effective") })
		}
		if has(semantic.CPUSetMems) {
			c.Mems = ownOrInherited(props, "AllowedMemoryNodes", func() semantic.CPUSet { return inherit("cpuset.mems.effective") })
		}
		r.CPU = c
	}
	if has(semantic.IOWeight) || has(semantic.IOLimits) {
		io := &semantic.IO{}
		if has(semantic.IOWeight) {
			io.Weight = weight("IOWeight")
		}
		if has(semantic.IOLimits) {
			io.Limits = ioLimits(props, resolve)
		}
		r.IO = io
	}
	if has(semantic.PidsMax) {
		v := semantic.Count(u64("TasksMax", infinity))
		r.Pids = &semantic.Pids{Max: &v}
	}
	if has(semantic.DevicesFeature) {
		policy, _ := props["DevicePolicy"].Value().(string)
		r.Devices = devicesFromProperties(policy, deviceAllowOf(props["DeviceAllow"]), h.majors, resolve)
	}
	return r
}

// ownOrInherited reads a set property or, when it is empty (systemd's
// "not set"), what the slice gets from above. Not the unit's Effective*
// property: that is empty until systemd enables cpuset for the slice,
// which it does once any sibling sets one, so an unset slice would read
// differently before and after a sibling's change.
func ownOrInherited(props map[string]dbus.Variant, allowed string, inherited func() semantic.CPUSet) semantic.CPUSet {
	if b, ok := props[allowed].Value().([]byte); ok && len(maskSet(b)) > 0 {
		return maskSet(b)
	}
	if s := inherited(); len(s) > 0 {
		return s
	}
	return semantic.CPUSet{}
}

// deviceAllowOf reads an a(ss) variant.
func deviceAllowOf(v dbus.Variant) []deviceAllow {
	var out []deviceAllow
	if v.Value() == nil {
		return nil
	}
	if err := dbus.Store([]any{v.Value()}, &out); err != nil {
		return nil
	}
	return out
}

// ioLimits merges the four IO*Max= lists into limits per device.
func ioLimits(props map[string]dbus.Variant, resolve nodeResolver) []semantic.IOLimit {
	byDev := map[[2]int64]*semantic.IOLimit{}
	var order [][2]int64
	for _, name := range featureProperties[semantic.IOLimits] {
		var entries []ioLimit
		if v, ok := props[name]; !ok || v.Value() == nil || dbus.Store([]any{v.Value()}, &entries) != nil {
			continue
		}
		for _, e := range entries {
			t, major, minor, ok := parseDevPath(e.Path)
			if !ok {
				t, major, minor, ok = resolve(e.Path)
			}
			if !ok || t != semantic.BlockDevice || e.Limit == infinity {
				continue
			}
			k := [2]int64{major, minor}
			l := byDev[k]
			if l == nil {
				l = &semantic.IOLimit{Major: major, Minor: minor}
				byDev[k] = l
				order = append(order, k)
			}
			switch name {
			case "IOReadBandwidthMax":
				l.ReadBPS = e.Limit
			case "IOWriteBandwidthMax":
				l.WriteBPS = e.Limit
			case "IOReadIOPSMax":
				l.ReadIOPS = e.Limit
			case "IOWriteIOPSMax":
				l.WriteIOPS = e.Limit
			}
		}
	}
	out := []semantic.IOLimit{}
	for _, k := range order {
		out = append(out, *byDev[k])
	}
	semantic.SortIOLimits(out)
	return out
}

// parseVersion reads the leading number of the Manager's Version property
// ("252.38-1~deb12u1", "v255", "255.4-1ubuntu8").
func parseVersion(s string) (int, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	v, err := strconv.Atoi(s[:end])
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("systemd version %q has no leading release number", s)
	}
	return v, nil
}

// planSteps renders properties as plan steps on a unit.
func planSteps(unit string, props []prop) []semantic.PlanStep {
	steps := make([]semantic.PlanStep, 0, len(props))
	for _, p := range props {
		steps = append(steps, semantic.PlanStep{
			Action:  "dbus",
			Target:  unit + " " + p.Name,
			Value:   p.Value.String(),
			Feature: p.feature,
		})
	}
	return steps
}
