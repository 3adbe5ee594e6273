package fake

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// defaults is what a new group holds: the kernel's defaults for every
// field, in normalized form.
func (d *Driver) defaults() *semantic.Resources {
	unlimited := semantic.Bytes(semantic.Unlimited)
	return &semantic.Resources{
		Memory: &semantic.Memory{
			Max: new(unlimited), High: new(unlimited), Swap: new(unlimited),
			Low: new(semantic.Bytes(0)), Min: new(semantic.Bytes(0)),
		},
		CPU: &semantic.CPU{
			Weight: new(uint64(semantic.DefaultWeight)),
			Max:    &semantic.CPUMax{CPUs: 0, Period: semantic.DefaultCPUPeriod},
			Cpus:   slices.Clone(d.hostCPUs),
			Mems:   slices.Clone(d.hostMems),
		},
		IO:      &semantic.IO{Weight: new(uint64(semantic.DefaultWeight)), Limits: []semantic.IOLimit{}},
		Pids:    &semantic.Pids{Max: new(semantic.Count(semantic.Unlimited))},
		Devices: &semantic.Devices{Default: semantic.AllowByDefault},
		HugeTLB: []semantic.HugeTLBLimit{},
	}
}

// applyLocked writes req's fields to n one by one, each a backend change,
// and on the first failure writes back every field already changed.
// req is validated, checked and normalized. Called with d.mu held.
func (d *Driver) applyLocked(ctx context.Context, n *node, req *semantic.Resources) error {
	var undo []*semantic.Resources
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			d.log.Trace("undo write", "group", n.path.Display(), "field", undo[i].Fields()[0], "value", render(undo[i], undo[i].Fields()[0]))
			n.res = semantic.Merge(n.res, undo[i])
		}
	}
	for _, f := range req.Fields() {
		op := "set " + string(f)
		if err := ctxErr(ctx, op, n.path); err != nil {
			rollback()
			return err
		}
		part := req.Only(f)
		if err := d.change(op, n.path, "group", n.path.Display(), "field", f, "value", render(part, f)); err != nil {
			rollback()
			return err
		}
		if err := d.kernelCheck(part, f); err != nil {
			rollback()
			return semantic.Wrap(Name, op, n.path.Display(), err)
		}
		undo = append(undo, n.res.Only(f))
		n.res = semantic.Merge(n.res, part)
	}
	return nil
}

// kernelCheck refuses what the kernel refuses at write time although
// Validate accepts it: CPUs and memory nodes the host does not have.
func (d *Driver) kernelCheck(part *semantic.Resources, f semantic.Feature) error {
	var want, host semantic.CPUSet
	var what string
	switch f {
	case semantic.CPUSetCPUs:
		want, host, what = part.CPU.Cpus, d.hostCPUs, "CPUs"
	case semantic.CPUSetMems:
		want, host, what = part.CPU.Mems, d.hostMems, "memory nodes"
	default:
		return nil
	}
	for _, c := range want {
		if _, found := slices.BinarySearch(host, c); !found {
			return fmt.Errorf("%s %s are not all on this host (it has %s): %w", what, want, host, unix.EINVAL)
		}
	}
	return nil
}

// project returns the fields of r whose features the driver supports.
func (d *Driver) project(r *semantic.Resources) *semantic.Resources {
	out := &semantic.Resources{}
	for _, f := range semantic.ResourceFeatures {
		if d.supports(f) {
			out = semantic.Merge(out, r.Only(f))
		}
	}
	return out
}

// render shows field f of r as a cgroup v2 file would hold it, for plans
// and logs.
func render(r *semantic.Resources, f semantic.Feature) string {
	switch f {
	case semantic.MemoryMax:
		return r.Memory.Max.KernelString()
	case semantic.MemoryHigh:
		return r.Memory.High.KernelString()
	case semantic.MemoryLow:
		return r.Memory.Low.KernelString()
	case semantic.MemoryMin:
		return r.Memory.Min.KernelString()
	case semantic.MemorySwap:
		return r.Memory.Swap.KernelString()
	case semantic.CPUWeight:
		return strconv.FormatUint(*r.CPU.Weight, 10)
	case semantic.CPUMaxFeature:
		m := r.CPU.Max
		period := m.EffectivePeriod()
		quota := "max"
		if m.CPUs != 0 {
			quota = strconv.FormatInt(semantic.CPUsToQuota(m.CPUs, period).Microseconds(), 10)
		}
		return quota + " " + strconv.FormatInt(period.Microseconds(), 10)
	case semantic.CPUSetCPUs:
		return r.CPU.Cpus.String()
	case semantic.CPUSetMems:
		return r.CPU.Mems.String()
	case semantic.IOWeight:
		return strconv.FormatUint(*r.IO.Weight, 10)
	case semantic.IOLimits:
		lines := make([]string, len(r.IO.Limits))
		for i, l := range r.IO.Limits {
			lines[i] = fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s", l.Device(),
				rate(l.ReadBPS), rate(l.WriteBPS), rate(l.ReadIOPS), rate(l.WriteIOPS))
		}
		return strings.Join(lines, "; ")
	case semantic.PidsMax:
		return r.Pids.Max.String()
	case semantic.DevicesFeature:
		parts := []string{string(r.Devices.Default)}
		for _, rule := range r.Devices.Rules {
			parts = append(parts, rule.String())
		}
		return strings.Join(parts, "; ")
	case semantic.HugeTLB:
		parts := make([]string, len(r.HugeTLB))
		for i, h := range r.HugeTLB {
			parts[i] = h.PageSize.String() + "=" + h.Limit.KernelString()
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// rate renders an IO limit figure as io.max does: 0 (no limit) is "max".
func rate(v uint64) string {
	if v == 0 {
		return "max"
	}
	return strconv.FormatUint(v, 10)
}
