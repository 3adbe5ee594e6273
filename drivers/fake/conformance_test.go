package fake_test

import (
	"context"
	"testing"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// fakeHarness runs the suite on fake drivers made with opts. The fake
// simulates a host with the CPUs and memory nodes of opts, an IO device
// 8:0 and 2MiB and 1GiB huge pages; it kills for real (Kill signals the
// processes), so that is the one enforcement checked.
func fakeHarness(opts fake.Options, enforces ...semantic.Feature) conformance.Harness {
	return conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			d := fake.New(opts)
			t.Cleanup(func() {
				if err := d.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			return d
		},
		InjectFault: func(d semantic.Driver, nth int, err error) bool {
			fd, ok := d.(*fake.Driver)
			if ok {
				fd.InjectFault(nth, err)
			}
			return ok
		},
		Leaks:         fakeLeaks,
		Enforces:      enforces,
		PageSize:      opts.PageSize,
		CPUs:          opts.HostCPUs,
		Mems:          opts.HostMems,
		IODevice:      &[2]int64{8, 0},
		HugePageSizes: []semantic.Bytes{2 * semantic.MiB, semantic.GiB},
	}
}

// fakeLeaks lists every group left below the root, and any process left in
// one: the fake's whole state, since it has no backend beneath it.
func fakeLeaks(d semantic.Driver) []string {
	ctx := context.Background()
	var out []string
	var walk func(p semantic.Path)
	walk = func(p semantic.Path) {
		if g, err := d.Open(ctx, p); err == nil {
			if pids, err := g.Processes(ctx); err == nil && len(pids) > 0 {
				out = append(out, "processes in "+p.Display())
			}
		}
		kids, err := d.Children(ctx, p)
		if err != nil {
			out = append(out, "children of "+p.Display()+": "+err.Error())
			return
		}
		for _, k := range kids {
			out = append(out, k.String())
			walk(k)
		}
	}
	walk(semantic.Root)
	return out
}

func TestConformance(t *testing.T) {
	conformance.Run(t, fakeHarness(fake.Options{
		HostCPUs: semantic.CPUSet{0, 1, 2, 3},
		HostMems: semantic.CPUSet{0, 1},
	}, semantic.Kill))
}

// TestConformanceUnsupported runs the suite with features declared
// unsupported, which exercises its refuse-then-skip path, on a host with
// 64KiB pages and a single CPU and memory node.
func TestConformanceUnsupported(t *testing.T) {
	conformance.Run(t, fakeHarness(fake.Options{
		Unsupported: []semantic.Feature{
			semantic.MemoryHigh, semantic.MemorySwap, semantic.CPUMaxFeature, semantic.IOLimits,
			semantic.DevicesFeature, semantic.HugeTLB, semantic.Freeze, semantic.Kill,
			semantic.Threads, semantic.StartInside, semantic.EventsPopulated, semantic.EventsFrozen,
		},
		PageSize: 64 << 10,
	}))
}
