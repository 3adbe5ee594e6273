package v2

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestParseKernelRelease(t *testing.T) {
	for in, want := range map[string]kernelVersion{
		"6.18.44-fc-v657":      {6, 18},
		"6.1.0-56-cloud-amd64": {6, 1},
		"5.14":                 {5, 14},
		"4.19.0+":              {4, 19},
		"5.2-rc1":              {5, 2},
		"":                     {},
		"six.one":              {},
		"6":                    {},
	} {
		require.Equal(t, want, parseKernelRelease(in), "%q", in)
	}
	require.True(t, kernelVersion{5, 14}.atLeast(5, 14))
	require.True(t, kernelVersion{6, 0}.atLeast(5, 14))
	require.False(t, kernelVersion{5, 13}.atLeast(5, 14))
	require.False(t, kernelVersion{4, 20}.atLeast(5, 2))
}

func TestCapabilities(t *testing.T) {
	every := []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
	allFiles := map[string]bool{}
	for _, f := range probeFiles {
		allFiles[f] = true
	}
	without := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for k, v := range allFiles {
			m[k] = v
		}
		for _, n := range names {
			m[n] = false
		}
		return m
	}
	huge := []semantic.Bytes{2 * semantic.MiB}
	type verdict map[semantic.Feature]string // feature -> "" (exact) or a word of the reason
	for _, c := range []struct {
		name string
		h    hostFacts
		want verdict
	}{
		{
			name: "HybridUnifiedNoControllers",
			h:    hostFacts{root: "/sys/fs/cgroup/unified/x", files: map[string]bool{"cgroup.freeze": true, "cgroup.kill": true}, hugeSizes: huge, kernel: kernelVersion{6, 18}, pressure: true},
			want: verdict{
				semantic.MemoryMax: "memory controller is not available", semantic.MemorySwap: "memory controller", semantic.CPUWeight: "cpu controller",
				semantic.CPUSetCPUs: "cpuset controller", semantic.IOLimits: "io controller", semantic.PidsMax: "pids controller",
				semantic.HugeTLB: "hugetlb controller", semantic.DevicesFeature: "",
				semantic.Freeze: "", semantic.Kill: "", semantic.StartInside: "", semantic.EventsPopulated: "", semantic.EventsFrozen: "",
				semantic.EventsOOM: "memory controller", semantic.Threads: "threaded=true", semantic.StatsPressure: "",
			},
		},
		{
			name: "PureV2Everything",
			h:    hostFacts{root: "/sys/fs/cgroup/x", controllers: every, files: allFiles, hugeSizes: huge, kernel: kernelVersion{6, 1}, pressure: true},
			want: func() verdict {
				v := verdict{semantic.Threads: "threaded"}
				for _, f := range semantic.AllFeatures() {
					if f != semantic.Threads {
						v[f] = ""
					}
				}
				return v
			}(),
		},
		{
			name: "KernelConfigurationFiles",
			h: hostFacts{root: "/r", controllers: every, files: without("memory.swap.max", "cpu.max", "io.weight"),
				hugeSizes: nil, kernel: kernelVersion{6, 1}},
			want: verdict{
				semantic.MemorySwap: "swap accounting", semantic.CPUMaxFeature: "CFS bandwidth", semantic.IOWeight: "blk-iocost",
				semantic.MemoryMax: "", semantic.CPUWeight: "", semantic.IOLimits: "", semantic.HugeTLB: "no huge page sizes",
				semantic.StatsPressure: "PSI is off",
			},
		},
		{
			name: "TopOfHierarchyOldKernelUnknownFiles",
			h:    hostFacts{root: "/sys/fs/cgroup", controllers: every, hugeSizes: huge, kernel: kernelVersion{5, 4}, pressure: true},
			want: verdict{
				semantic.MemoryMax: "", semantic.MemorySwap: "", semantic.CPUMaxFeature: "",
				semantic.Freeze: "", semantic.EventsFrozen: "", semantic.Kill: "needs Linux 5.14 (this is 5.4)", semantic.StartInside: "needs Linux 5.7",
			},
		},
		{
			name: "AncientKernel",
			h:    hostFacts{root: "/r", controllers: every, kernel: kernelVersion{4, 19}},
			want: verdict{semantic.Freeze: "needs Linux 5.2", semantic.Kill: "needs Linux 5.14", semantic.StartInside: "CLONE_INTO_CGROUP needs Linux 5.7"},
		},
		{
			name: "DevicesRefused",
			h:    hostFacts{root: "/r", controllers: every, files: allFiles, kernel: kernelVersion{6, 1}, devices: errors.New("operation not permitted")},
			want: verdict{semantic.DevicesFeature: "operation not permitted"},
		},
		{
			name: "Threaded",
			h:    hostFacts{root: "/r", controllers: every, files: allFiles, hugeSizes: huge, kernel: kernelVersion{6, 1}, threaded: true},
			want: verdict{
				semantic.Threads: "", semantic.CPUWeight: "", semantic.CPUSetCPUs: "", semantic.PidsMax: "",
				semantic.MemoryMax: "threaded subtree", semantic.IOWeight: "threaded subtree", semantic.HugeTLB: "threaded subtree",
				semantic.EventsOOM: "threaded subtree",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			caps := capabilities(c.h)
			for _, f := range semantic.AllFeatures() {
				got := caps.Get(f)
				require.NotEqual(t, semantic.Approximate, got.Support, "%s: v2 converts nothing", f)
				if got.Support == semantic.Unsupported {
					require.NotEmpty(t, got.Reason, "%s is unsupported without a reason", f)
				}
			}
			for f, want := range c.want {
				got := caps.Get(f)
				if want == "" {
					require.Equal(t, semantic.Exact, got.Support, "%s: %s", f, got.Reason)
					continue
				}
				require.Equal(t, semantic.Unsupported, got.Support, "%s", f)
				require.True(t, strings.Contains(got.Reason, want), "%s: reason %q lacks %q", f, got.Reason, want)
			}
		})
	}
}
