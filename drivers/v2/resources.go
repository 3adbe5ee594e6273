package v2

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// Controllers cgroup v2 names in cgroup.controllers and
// cgroup.subtree_control.
const (
	ctlMemory  = "memory"
	ctlCPU     = "cpu"
	ctlCPUSet  = "cpuset"
	ctlIO      = "io"
	ctlPids    = "pids"
	ctlHugeTLB = "hugetlb"
)

// controllerOf is the controller whose files carry a resource feature;
// devices have none (they are an eBPF program, not a file).
var controllerOf = map[semantic.Feature]string{
	semantic.MemoryMax:     ctlMemory,
	semantic.MemoryHigh:    ctlMemory,
	semantic.MemoryLow:     ctlMemory,
	semantic.MemoryMin:     ctlMemory,
	semantic.MemorySwap:    ctlMemory,
	semantic.CPUWeight:     ctlCPU,
	semantic.CPUMaxFeature: ctlCPU,
	semantic.CPUSetCPUs:    ctlCPUSet,
	semantic.CPUSetMems:    ctlCPUSet,
	semantic.IOWeight:      ctlIO,
	semantic.IOLimits:      ctlIO,
	semantic.PidsMax:       ctlPids,
	semantic.HugeTLB:       ctlHugeTLB,
}

// fileOf is the attribute file of each single-file feature; HugeTLB has
// one file per page size (hugeFile).
var fileOf = map[semantic.Feature]string{
	semantic.MemoryMax:     "memory.max",
	semantic.MemoryHigh:    "memory.high",
	semantic.MemoryLow:     "memory.low",
	semantic.MemoryMin:     "memory.min",
	semantic.MemorySwap:    "memory.swap.max",
	semantic.CPUWeight:     "cpu.weight",
	semantic.CPUMaxFeature: "cpu.max",
	semantic.CPUSetCPUs:    "cpuset.cpus",
	semantic.CPUSetMems:    "cpuset.mems",
	semantic.IOWeight:      "io.weight",
	semantic.IOLimits:      "io.max",
	semantic.PidsMax:       "pids.max",
}

// Plan actions.
const (
	actMkdir  = "mkdir"
	actWrite  = "write"
	actAttach = "attach"
)

// change is one backend change an Apply or a Create makes, in order. Plan
// renders the same list Apply executes, so a plan is exact.
type change struct {
	action string
	// dir is the group the change is made in, relative to the driver's
	// root ("" is the root itself).
	dir string
	// file is the attribute file written; value what is written.
	file, value string
	feature     semantic.Feature
	// key names the line of a multi-line file the write replaces (io.max's
	// "MAJOR:MINOR"), so that restoring writes that line back.
	key string
	// devices is the list an "attach" puts in force.
	devices *semantic.Devices
}

// controllersOf lists the controllers a request needs enabled for the
// group, in a fixed order.
func controllersOf(fs []semantic.Feature) []string {
	var out []string
	for _, f := range fs {
		if c, ok := controllerOf[f]; ok && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// attributeWrites maps a normalized request to the attribute files of the
// group, one write per file (io.max: per device), in Resources' field
// order. ioLimits are the request's IO limits as given, sorted: Normalize
// drops a listed device with no limit, but Apply must still lift that
// device's throttles. devices are left to the caller (an attach, last).
func attributeWrites(req *semantic.Resources, ioLimits []semantic.IOLimit) []change {
	if req == nil {
		return nil
	}
	var out []change
	add := func(f semantic.Feature, value string) {
		out = append(out, change{action: actWrite, file: fileOf[f], value: value, feature: f})
	}
	if m := req.Memory; m != nil {
		for _, x := range []struct {
			f semantic.Feature
			v *semantic.Bytes
		}{
			{semantic.MemoryMax, m.Max}, {semantic.MemoryHigh, m.High}, {semantic.MemoryLow, m.Low},
			{semantic.MemoryMin, m.Min}, {semantic.MemorySwap, m.Swap},
		} {
			if x.v != nil {
				add(x.f, x.v.KernelString())
			}
		}
	}
	if c := req.CPU; c != nil {
		if c.Weight != nil {
			add(semantic.CPUWeight, strconv.FormatUint(*c.Weight, 10))
		}
		if c.Max != nil {
			add(semantic.CPUMaxFeature, cpuMaxString(c.Max))
		}
		if c.Cpus != nil {
			add(semantic.CPUSetCPUs, c.Cpus.String())
		}
		if c.Mems != nil {
			add(semantic.CPUSetMems, c.Mems.String())
		}
	}
	if io := req.IO; io != nil {
		if io.Weight != nil {
			add(semantic.IOWeight, "default "+strconv.FormatUint(*io.Weight, 10))
		}
		for _, l := range ioLimits {
			out = append(out, change{action: actWrite, file: fileOf[semantic.IOLimits], value: ioMaxLine(l),
				feature: semantic.IOLimits, key: l.Device()})
		}
	}
	if p := req.Pids; p != nil && p.Max != nil {
		add(semantic.PidsMax, p.Max.String())
	}
	for _, h := range req.HugeTLB {
		out = append(out, change{action: actWrite, file: hugeFile(h.PageSize), value: h.Limit.KernelString(), feature: semantic.HugeTLB})
	}
	return out
}

// sortedIOLimits returns the request's IO limits sorted by device, nil
// when the request leaves IO limits alone.
func sortedIOLimits(r *semantic.Resources) []semantic.IOLimit {
	if r == nil || r.IO == nil || r.IO.Limits == nil {
		return nil
	}
	out := slices.Clone(r.IO.Limits)
	semantic.SortIOLimits(out)
	return out
}

// cpuMaxString renders a normalized CPU cap as cpu.max takes it:
// "QUOTA PERIOD" in microseconds, QUOTA "max" for no cap.
func cpuMaxString(m *semantic.CPUMax) string {
	p := m.EffectivePeriod()
	q := "max"
	if m.CPUs != 0 {
		q = strconv.FormatInt(semantic.CPUsToQuota(m.CPUs, p).Microseconds(), 10)
	}
	return q + " " + strconv.FormatInt(p.Microseconds(), 10)
}

// ioMaxLine renders one device's throttles as io.max takes them, every
// key present so that a write replaces all four.
func ioMaxLine(l semantic.IOLimit) string {
	v := func(n uint64) string {
		if n == 0 {
			return "max"
		}
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s", l.Device(), v(l.ReadBPS), v(l.WriteBPS), v(l.ReadIOPS), v(l.WriteIOPS))
}

// ioMaxUnlimited is the line that lifts every throttle of a device.
func ioMaxUnlimited(dev string) string {
	return dev + " rbps=max wbps=max riops=max wiops=max"
}

// hugeFile names the limit file of a huge page size as the kernel does
// (mm/hugetlb_cgroup.c: "2MB", "1GB", "64KB").
func hugeFile(size semantic.Bytes) string {
	var s string
	switch {
	case size >= semantic.GiB:
		s = fmt.Sprintf("%dGB", size/semantic.GiB)
	case size >= semantic.MiB:
		s = fmt.Sprintf("%dMB", size/semantic.MiB)
	default:
		s = fmt.Sprintf("%dKB", size/semantic.KiB)
	}
	return "hugetlb." + s + ".max"
}

// parseBytes reads a memory or huge page limit file: a number or "max".
func parseBytes(s string) (semantic.Bytes, error) {
	n, err := statfile.ParseLimit([]byte(s))
	return semantic.Bytes(n), err
}

// parseCPUMax reads cpu.max: "max 100000" or "150000 100000".
func parseCPUMax(s string) (semantic.CPUMax, error) {
	q, p, ok := strings.Cut(strings.TrimSpace(s), " ")
	period, okp := statfile.Uint([]byte(p))
	if !ok || !okp || period == 0 {
		return semantic.CPUMax{}, fmt.Errorf("cpu.max %q: %w", s, statfile.ErrFormat)
	}
	m := semantic.CPUMax{Period: time.Duration(period) * time.Microsecond}
	if q != "max" {
		quota, ok := statfile.Uint([]byte(q))
		if !ok {
			return semantic.CPUMax{}, fmt.Errorf("cpu.max %q: %w", s, statfile.ErrFormat)
		}
		m.CPUs = semantic.QuotaToCPUs(time.Duration(quota)*time.Microsecond, m.Period)
	}
	return m, nil
}

// parseIOWeight reads io.weight's default: "default 100" (per-device
// overrides on further lines are not cgsem's and are ignored).
func parseIOWeight(s string) (uint64, error) {
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "default":
			if n, ok := statfile.Uint([]byte(f[1])); ok {
				return n, nil
			}
		case len(f) == 1:
			if n, ok := statfile.Uint([]byte(f[0])); ok {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("io.weight %q: no default weight: %w", s, statfile.ErrFormat)
}

// parseIOMax reads io.max: one line per throttled device, "max" (no
// limit) read as 0. Devices come sorted, as Normalize sorts them.
func parseIOMax(s string) ([]semantic.IOLimit, error) {
	byDev := map[string]*semantic.IOLimit{}
	var order []string
	var perr error
	err := statfile.ScanNested([]byte(s), func(key, field []byte, value uint64) {
		dev := string(key)
		l := byDev[dev]
		if l == nil {
			maj, min, err := statfile.ParseDevice(key)
			if err != nil {
				perr = err
				return
			}
			l = &semantic.IOLimit{Major: maj, Minor: min}
			byDev[dev] = l
			order = append(order, dev)
		}
		if value == statfile.Max {
			value = 0
		}
		switch string(field) {
		case "rbps":
			l.ReadBPS = value
		case "wbps":
			l.WriteBPS = value
		case "riops":
			l.ReadIOPS = value
		case "wiops":
			l.WriteIOPS = value
		}
	})
	if err = cmp.Or(err, perr); err != nil {
		return nil, fmt.Errorf("io.max: %w", err)
	}
	out := []semantic.IOLimit{}
	for _, dev := range order {
		if l := byDev[dev]; l.ReadBPS|l.WriteBPS|l.ReadIOPS|l.WriteIOPS != 0 {
			out = append(out, *l)
		}
	}
	semantic.SortIOLimits(out)
	return out, nil
}

// ioMaxLineOf returns the line of io.max content for dev, or the line
// that lifts every throttle when dev has none: what restoring dev writes.
func ioMaxLineOf(content, dev string) string {
	for line := range strings.SplitSeq(content, "\n") {
		if f, _, _ := strings.Cut(line, " "); f == dev {
			return strings.TrimSpace(line)
		}
	}
	return ioMaxUnlimited(dev)
}

// fileReader reads one attribute file of a group: ok is false when the
// file does not exist (its controller is not enabled for the group).
type fileReader func(file string) (content string, ok bool, err error)

// readBack reads the settings of every feature in fs from a group's
// files. A feature whose file is absent, because its controller is not
// enabled for the group, reads as the kernel's default for a fresh group,
// which is what it is: the controller imposes nothing there. cpus and
// mems with no set of their own (an empty file, or no cpuset) read as
// what the group gets, from effective (which reads the nearest
// cpuset.cpus.effective or cpuset.mems.effective).
func readBack(read fileReader, fs []semantic.Feature, hugeSizes []semantic.Bytes, effective func(file string) (string, error)) (*semantic.Resources, error) {
	r := &semantic.Resources{}
	mem := func() *semantic.Memory {
		if r.Memory == nil {
			r.Memory = &semantic.Memory{}
		}
		return r.Memory
	}
	cpu := func() *semantic.CPU {
		if r.CPU == nil {
			r.CPU = &semantic.CPU{}
		}
		return r.CPU
	}
	io := func() *semantic.IO {
		if r.IO == nil {
			r.IO = &semantic.IO{}
		}
		return r.IO
	}
	for _, f := range fs {
		file := fileOf[f]
		var content string
		var ok bool
		if file != "" {
			var err error
			if content, ok, err = read(file); err != nil {
				return nil, err
			}
		}
		bad := func(err error) error { return fmt.Errorf("read %s: %w", file, err) }
		switch f {
		case semantic.MemoryMax, semantic.MemoryHigh, semantic.MemoryLow, semantic.MemoryMin, semantic.MemorySwap:
			v := semantic.Bytes(semantic.Unlimited)
			if f == semantic.MemoryLow || f == semantic.MemoryMin {
				v = 0
			}
			if ok {
				var err error
				if v, err = parseBytes(content); err != nil {
					return nil, bad(err)
				}
			}
			switch m := mem(); f {
			case semantic.MemoryMax:
				m.Max = &v
			case semantic.MemoryHigh:
				m.High = &v
			case semantic.MemoryLow:
				m.Low = &v
			case semantic.MemoryMin:
				m.Min = &v
			default:
				m.Swap = &v
			}
		case semantic.CPUWeight:
			w := uint64(semantic.DefaultWeight)
			if ok {
				n, valid := statfile.Uint([]byte(content))
				if !valid {
					return nil, bad(statfile.ErrFormat)
				}
				w = n
			}
			cpu().Weight = &w
		case semantic.CPUMaxFeature:
			m := semantic.CPUMax{Period: semantic.DefaultCPUPeriod}
			if ok {
				var err error
				if m, err = parseCPUMax(content); err != nil {
					return nil, bad(err)
				}
			}
			cpu().Max = &m
		case semantic.CPUSetCPUs, semantic.CPUSetMems:
			if !ok || content == "" {
				var err error
				if content, err = effective(file + ".effective"); err != nil {
					return nil, err
				}
			}
			set, err := semantic.ParseCPUSet(content)
			if err != nil {
				return nil, bad(err)
			}
			if f == semantic.CPUSetCPUs {
				cpu().Cpus = set
			} else {
				cpu().Mems = set
			}
		case semantic.IOWeight:
			w := uint64(semantic.DefaultWeight)
			if ok {
				var err error
				if w, err = parseIOWeight(content); err != nil {
					return nil, bad(err)
				}
			}
			io().Weight = &w
		case semantic.IOLimits:
			ls := []semantic.IOLimit{}
			if ok {
				var err error
				if ls, err = parseIOMax(content); err != nil {
					return nil, bad(err)
				}
			}
			io().Limits = ls
		case semantic.PidsMax:
			n := semantic.Count(semantic.Unlimited)
			if ok {
				v, err := statfile.ParseLimit([]byte(content))
				if err != nil {
					return nil, bad(err)
				}
				n = semantic.Count(v)
			}
			r.Pids = &semantic.Pids{Max: &n}
		case semantic.HugeTLB:
			// Every size the host has is listed, "max" included, so that a
			// limit lifted back to max reads back as such.
			r.HugeTLB = []semantic.HugeTLBLimit{}
			for _, size := range hugeSizes {
				content, ok, err := read(hugeFile(size))
				if err != nil {
					return nil, err
				}
				v := semantic.Bytes(semantic.Unlimited)
				if ok {
					if v, err = parseBytes(content); err != nil {
						return nil, fmt.Errorf("read %s: %w", hugeFile(size), err)
					}
				}
				r.HugeTLB = append(r.HugeTLB, semantic.HugeTLBLimit{PageSize: size, Limit: v})
			}
		}
	}
	return r, nil
}
