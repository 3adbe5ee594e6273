package main

import (
	"errors"
	"flag"
	"strconv"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// resourceFlags collects the resource flags of create, set, plan and run
// into a semantic.Resources. Each flag's value is parsed and range-checked
// when it is set, so a bad value is reported with the flag that carried it.
type resourceFlags struct {
	mem       semantic.Memory
	cpuWeight *uint64
	cpus      *float64
	period    *time.Duration
	cpuset    semantic.CPUSet
	mems      semantic.CPUSet
	ioWeight  *uint64
	ioLimits  []semantic.IOLimit
	pids      *semantic.Count
	devPolicy semantic.DevicePolicy
	// devRules holds --allow-device and --deny-device in command-line
	// order: the list is ordered and the last matching rule wins.
	devRules []semantic.DeviceRule
	hugetlb  []semantic.HugeTLBLimit
}

var resourceFlagNames = []string{
	"memory", "memory-high", "memory-low", "memory-min", "swap",
	"cpu-weight", "cpus", "cpu-period", "cpuset", "mems",
	"io-weight", "io-limit", "pids",
	"devices", "allow-device", "deny-device", "hugetlb",
}

func (r *resourceFlags) register(fs *flag.FlagSet) {
	bytes := func(dst **semantic.Bytes) func(string) error {
		return func(s string) error {
			b, err := semantic.ParseBytes(s)
			if err != nil {
				return reason(err)
			}
			*dst = &b
			return nil
		}
	}
	fs.Func("memory", "hard memory limit `BYTES` (512MiB, 1.5G, 4096, max); above it the group is OOM-killed", bytes(&r.mem.Max))
	fs.Func("memory-high", "memory throttle limit `BYTES`", bytes(&r.mem.High))
	fs.Func("memory-low", "best-effort memory protection `BYTES`", bytes(&r.mem.Low))
	fs.Func("memory-min", "hard memory protection `BYTES`", bytes(&r.mem.Min))
	fs.Func("swap", "swap allowed in addition to memory, `BYTES`", bytes(&r.mem.Swap))

	fs.Func("cpu-weight", "relative CPU share `WEIGHT`, 1..10000 (default 100)", func(s string) error {
		w, err := parseWeight(s, &semantic.Resources{CPU: &semantic.CPU{}}, func(res *semantic.Resources, w *uint64) { res.CPU.Weight = w })
		r.cpuWeight = w
		return err
	})
	fs.Func("cpus", "CPU bandwidth cap in `CPUS` (1.5, 0.25, max)", func(s string) error {
		v, err := semantic.ParseCPUs(s)
		if err != nil {
			return reason(err)
		}
		r.cpus = &v
		return nil
	})
	fs.Func("cpu-period", "bandwidth `PERIOD` for --cpus: a duration (100ms) or microseconds (100000)", func(s string) error {
		d, err := parsePeriod(s)
		if err != nil {
			return err
		}
		r.period = &d
		return nil
	})
	fs.Func("cpuset", "run only on `CPUS` (0-3,7)", func(s string) error { return parseSet(s, &r.cpuset) })
	fs.Func("mems", "allocate only on memory `NODES` (0-1)", func(s string) error { return parseSet(s, &r.mems) })

	fs.Func("io-weight", "relative IO share `WEIGHT`, 1..10000 (default 100)", func(s string) error {
		w, err := parseWeight(s, &semantic.Resources{IO: &semantic.IO{}}, func(res *semantic.Resources, w *uint64) { res.IO.Weight = w })
		r.ioWeight = w
		return err
	})
	fs.Func("io-limit", "throttle a device: `DEV:KEY=N,...` with DEV a block device path or MAJOR:MINOR and KEY rbps, wbps, riops or wiops (repeatable)", func(s string) error {
		l, err := semantic.ParseIOLimit(s)
		if err != nil {
			return reason(err)
		}
		r.ioLimits = append(r.ioLimits, l)
		return nil
	})
	fs.Func("pids", "most tasks the group may hold, a `COUNT` or max", func(s string) error {
		n, err := semantic.ParseCount(s)
		if err != nil {
			return reason(err)
		}
		r.pids = &n
		return nil
	})

	fs.Func("devices", "device access `POLICY` for devices no rule names: deny or allow; the rules given replace the group's whole list", func(s string) error {
		p := semantic.DevicePolicy(s)
		if p != semantic.DenyByDefault && p != semantic.AllowByDefault {
			return errors.New(`want "deny" or "allow"`)
		}
		r.devPolicy = p
		return nil
	})
	rule := func(allow bool) func(string) error {
		return func(s string) error {
			d, err := semantic.ParseDeviceRule(s, allow)
			if err != nil {
				return reason(err)
			}
			r.devRules = append(r.devRules, d)
			return nil
		}
	}
	fs.Func("allow-device", "allow a device `RULE` (\"c 1:3 rwm\", \"b *:* r\", /dev/null, /dev/null:rw); repeatable, ordered with --deny-device", rule(true))
	fs.Func("deny-device", "deny a device `RULE`, same forms as --allow-device; the last matching rule wins", rule(false))
	fs.Func("hugetlb", "huge page limit `SIZE=BYTES` (2MiB=1GiB); repeatable", func(s string) error {
		h, err := semantic.ParseHugeTLB(s)
		if err != nil {
			return reason(err)
		}
		r.hugetlb = append(r.hugetlb, h)
		return nil
	})
}

// resources returns the request the flags describe, nil if none was given.
func (r *resourceFlags) resources() (*semantic.Resources, error) {
	res := &semantic.Resources{}
	if m := r.mem; m.Max != nil || m.High != nil || m.Low != nil || m.Min != nil || m.Swap != nil {
		res.Memory = &m
	}
	if r.period != nil && r.cpus == nil {
		return nil, usagef("--cpu-period needs --cpus (give --cpus max to set the period without a cap)")
	}
	if r.cpuWeight != nil || r.cpus != nil || r.cpuset != nil || r.mems != nil {
		res.CPU = &semantic.CPU{Weight: r.cpuWeight, Cpus: r.cpuset, Mems: r.mems}
		if r.cpus != nil {
			res.CPU.Max = &semantic.CPUMax{CPUs: *r.cpus}
			if r.period != nil {
				res.CPU.Max.Period = *r.period
			}
		}
	}
	if r.ioWeight != nil || r.ioLimits != nil {
		res.IO = &semantic.IO{Weight: r.ioWeight, Limits: r.ioLimits}
	}
	if r.pids != nil {
		res.Pids = &semantic.Pids{Max: r.pids}
	}
	switch {
	case r.devPolicy != "":
		res.Devices = &semantic.Devices{Default: r.devPolicy, Rules: r.devRules}
	case r.devRules != nil:
		return nil, usagef("device rules need --devices deny|allow: the rules replace the group's whole device list, which needs a default")
	}
	res.HugeTLB = r.hugetlb
	if len(res.Fields()) == 0 {
		return nil, nil
	}
	// What no single flag can see: a quota below the kernel's minimum, a
	// device or page size given twice.
	if err := res.Validate(); err != nil {
		return nil, usagef("resource flags: %v", reason(err))
	}
	return res, nil
}

// reason strips a semantic parse error down to its cause, which already
// names the value; the flag package adds the flag's name.
func reason(err error) error {
	var se *semantic.Error
	if errors.As(err, &se) && se.Op == "validate" && se.Err != nil {
		return se.Err
	}
	return errors.New(message(err))
}

// parseWeight parses a 1..10000 weight and checks it with the same
// validation a driver applies, through set placing it in res.
func parseWeight(s string, res *semantic.Resources, set func(*semantic.Resources, *uint64)) (*uint64, error) {
	w, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, errors.New("want a whole number 1..10000")
	}
	set(res, &w)
	if err := res.Validate(); err != nil {
		return nil, reason(err)
	}
	return &w, nil
}

// parsePeriod reads a Go duration ("100ms") or, as the kernel writes
// cpu.max, a number of microseconds ("100000").
func parsePeriod(s string) (time.Duration, error) {
	var d time.Duration
	if us, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(us) * time.Microsecond
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("want a duration such as 100ms, or microseconds such as 100000")
	}
	if d <= 0 {
		// Zero would mean "the default period" to the model: say so instead.
		return 0, errors.New("want a positive period; leave the flag out for the default 100ms")
	}
	res := semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{Period: d}}}
	if err := res.Validate(); err != nil {
		return 0, reason(err)
	}
	return d, nil
}

func parseSet(s string, dst *semantic.CPUSet) error {
	set, err := semantic.ParseCPUSet(s)
	if err != nil {
		return reason(err)
	}
	if len(set) == 0 {
		return errors.New("empty; a group needs at least one")
	}
	*dst = set
	return nil
}
