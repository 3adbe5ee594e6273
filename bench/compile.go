package main

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/semantic"
)

var compileSizes = []int{1, 10, 50, 500}

// compileWorkloads times turning a device list into a BPF program, with no
// kernel involved: cgsem's devfilter.Compile and containerd's
// cgroup2.DeviceFilter (opencontainers' compiler is not exported).
func compileWorkloads(ctx context.Context, b *bench) []section {
	s := section{
		Title: "device filter compile",
		Desc:  "Compile a deny-by-default device list of N rules to a BPF_PROG_TYPE_CGROUP_DEVICE program (no kernel call).",
	}
	s.Table = [][]string{{"rules", "cgsem median", "cgsem p90", "cgsem insns", "containerd median", "containerd insns", "cgsem budget"}}
	for _, n := range compileSizes {
		if ctx.Err() != nil {
			break
		}
		devs := ruleList(n)
		var cgInsns, ctInsns int
		iters := max(50, int(float64(20000/n)*b.factor))
		cg := impl{name: "cgsem", op: func(context.Context, int) error {
			p, err := devfilter.Compile(devs)
			if err == nil {
				cgInsns = p.Len()
			}
			return err
		}}
		spec := toSpec(devs)
		ct := impl{name: "containerd", op: func(context.Context, int) error {
			insns, _, err := cgroup2.DeviceFilter(spec)
			ctInsns = len(insns)
			return err
		}}
		res := run(ctx, plan{warm: iters / 10, rounds: 5, per: iters / 5}, []impl{cg, ct})
		cgCells, ctCells := []string{"-", "-", "-"}, []string{"-", "-"}
		if r := res[0]; r.err != nil {
			cgCells[0] = "error: " + r.err.Error()
		} else {
			sum := summarize(r.times)
			cgCells = []string{fmtDur(sum.Median), fmtDur(sum.P90), fmt.Sprint(cgInsns)}
		}
		if r := res[1]; r.err != nil {
			ctCells[0] = "error: " + r.err.Error()
		} else {
			ctCells = []string{fmtDur(summarize(r.times).Median), fmt.Sprint(ctInsns)}
		}
		row := append(append([]string{fmt.Sprint(n)}, cgCells...), ctCells...)
		budget := ""
		if n == 50 {
			limit := 50 * time.Microsecond
			budget = "ok < " + fmtDur(limit)
			if res[0].err != nil {
				budget = "< " + fmtDur(limit)
			} else if m := summarize(res[0].times).Median; m >= limit {
				budget = "**OVER** < " + fmtDur(limit)
				s.Over = append(s.Over, fmt.Sprintf("cgsem 50 rules: %s (budget < %s)", fmtDur(m), fmtDur(limit)))
			}
		}
		s.Table = append(s.Table, append(row, budget))
	}
	s.Notes = append(s.Notes, "rules: a mix of single char devices, whole majors (wildcard minor), block devices and some deny rules inside allowed ranges; the same list for both compilers")
	b.progress(s)
	return []section{s}
}

// ruleList builds a deny-by-default list of n distinct, realistic rules.
func ruleList(n int) *semantic.Devices {
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	for i := range n {
		r := semantic.DeviceRule{Allow: true, Type: semantic.CharDevice, Major: int64(1 + i/32), Minor: int64(i % 32), Access: semantic.AllAccess}
		switch {
		case i%7 == 2: // a whole major, read and write
			r.Major, r.Minor, r.Access = int64(200+i%50), semantic.Wildcard, semantic.Read|semantic.Write
		case i%7 == 4: // a block device, read only
			r.Type, r.Access = semantic.BlockDevice, semantic.Read
		case i%7 == 6: // no mknod on something allowed earlier
			r.Allow, r.Access = false, semantic.Mknod
		}
		d.Rules = append(d.Rules, r)
	}
	return d
}

// toSpec renders a device list as OCI rules, the default first.
func toSpec(d *semantic.Devices) []specs.LinuxDeviceCgroup {
	// containerd wants every number present, -1 for a wildcard, as OCI
	// runtimes hand it over.
	all := int64(-1)
	out := []specs.LinuxDeviceCgroup{{Allow: d.Default == semantic.AllowByDefault, Type: "a", Major: &all, Minor: &all, Access: "rwm"}}
	for _, r := range d.Rules {
		out = append(out, specs.LinuxDeviceCgroup{Allow: r.Allow, Type: r.Type.String(),
			Major: ptr(r.Major), Minor: ptr(r.Minor), Access: r.Access.String()})
	}
	return out
}
