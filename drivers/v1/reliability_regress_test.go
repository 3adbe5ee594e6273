package v1

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// Bugs the reliability checks found, pinned on the kernel. Each step is an
// Apply on one group, in order; a step either lands (and the group reads
// back want, through the driver and in the raw file) or is refused with
// its kind and changes nothing.
func TestReliabilityRegressions(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	dev := hostHarness(t).IODevice
	MiB := semantic.MiB
	// What a v1 memory counter reads when unlimited.
	unlimited := strconv.FormatUint(d.memMax, 10)
	limit := func(l semantic.IOLimit) *semantic.Resources {
		l.Major, l.Minor = dev[0], dev[1]
		return &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{l}}}
	}
	mem := func(max, swap *semantic.Bytes) *semantic.Resources {
		return &semantic.Resources{Memory: &semantic.Memory{Max: max, Swap: swap}}
	}
	type step struct {
		req  *semantic.Resources
		kind error // nil: applies
		// file and content are what the group's file holds afterwards.
		file, content string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			// The differential test found it: Normalize drops a device
			// whose figures are all 0, so the request to remove its
			// limits planned no write at all.
			name: "all-zero IO limit removes the device's limits",
			steps: []step{
				{req: limit(semantic.IOLimit{ReadBPS: 1 << 20, WriteIOPS: 100}), file: "blkio.throttle.read_bps_device", content: "254:0 1048576"},
				{req: limit(semantic.IOLimit{}), file: "blkio.throttle.read_bps_device", content: ""},
				{req: limit(semantic.IOLimit{}), file: "blkio.throttle.write_iops_device", content: ""},
			},
		},
		{
			// memsw is memory + swap: with memory unlimited a swap limit
			// read back max. It is refused now, as the design asks of a
			// value a backend cannot hold.
			name: "swap limit without memory limit",
			steps: []step{
				{req: mem(nil, ptr(64*MiB)), kind: semantic.ErrNotSupported, file: "memory.memsw.limit_in_bytes", content: unlimited},
				{req: mem(ptr(256*MiB), ptr(64*MiB)), file: "memory.memsw.limit_in_bytes", content: "335544320"},
				{req: mem(ptr(semantic.Bytes(semantic.Unlimited)), nil), kind: semantic.ErrNotSupported, file: "memory.limit_in_bytes", content: "268435456"},
				{req: mem(ptr(semantic.Bytes(semantic.Unlimited)), ptr(semantic.Bytes(semantic.Unlimited))), file: "memory.memsw.limit_in_bytes", content: unlimited},
				{req: mem(nil, ptr(semantic.Bytes(0))), kind: semantic.ErrNotSupported, file: "memory.limit_in_bytes", content: unlimited},
			},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := mustCreate(t, d, "regress"+string(rune('a'+i)), nil)
			for k, st := range tc.steps {
				before, err := g.Resources(t.Context())
				require.NoError(t, err)
				err = g.Apply(t.Context(), st.req)
				if st.kind != nil {
					require.ErrorIs(t, err, st.kind, "step %d", k)
					require.ErrorContains(t, err, string(st.req.Fields()[len(st.req.Fields())-1]), "step %d names the field", k)
					after, err := g.Resources(t.Context())
					require.NoError(t, err)
					require.Equal(t, before, after, "step %d: a refused request changes nothing", k)
				} else {
					require.NoError(t, err, "step %d", k)
					got, err := g.Resources(t.Context())
					require.NoError(t, err)
					want := semantic.Merge(before, st.req).Normalize(d.pageSize)
					require.Equal(t, want, got, "step %d", k)
				}
				h := d.byCtrl[strings.SplitN(st.file, ".", 2)[0]]
				raw, err := os.ReadFile(filepath.Join(h.dir, g.Path().String(), st.file))
				require.NoError(t, err)
				require.Equal(t, st.content, strings.TrimSpace(string(raw)), "step %d: %s", k, st.file)
			}
		})
	}
}
