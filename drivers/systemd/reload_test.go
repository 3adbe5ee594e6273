package systemd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// TestDaemonReloadKeepsSettings: limits set at Create and by a later
// Apply survive `systemctl daemon-reload`, which rebuilds every unit from
// its files: systemd has them in the transient unit file and its drop-ins,
// and writes them to the kernel again.
func TestDaemonReloadKeepsSettings(t *testing.T) {
	in := startContainer(t, sdns.ModeHybrid)
	d, root := outsideDriver(t, in)
	ctx := t.Context()
	req := &semantic.Resources{
		Memory:  &semantic.Memory{Max: ptr(semantic.Bytes(64<<20 + 5))},
		CPU:     &semantic.CPU{Weight: ptr[uint64](250)},
		Pids:    &semantic.Pids{Max: ptr(semantic.Count(9))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w), allow(c, 136, wild, r|w)}},
	}
	p := semantic.MustPath("app/web-1")
	g, err := d.Create(ctx, p, req)
	require.NoError(t, err)
	slice, err := d.names.slice(p)
	require.NoError(t, err)
	cg := d.sliceCgroupOf(slice)

	kernel := func(ctrl, name string) string {
		b, err := os.ReadFile(filepath.Join(in.HostPath(ctrl, cg), name))
		require.NoError(t, err, "%s/%s of %s", ctrl, name, cg)
		return strings.TrimSpace(string(b))
	}
	check := func(when string, want *semantic.Resources) {
		t.Helper()
		got, err := g.Resources(ctx)
		require.NoError(t, err, when)
		wantN := want.Normalize(d.host.pageSize)
		assert.Equal(t, *wantN.Memory.Max, *got.Memory.Max, "%s: read-back memory max", when)
		assert.Equal(t, *wantN.CPU.Weight, *got.CPU.Weight, "%s: read-back CPU weight", when)
		assert.Equal(t, *wantN.Pids.Max, *got.Pids.Max, "%s: read-back pids max", when)
		requireSameAccess(t, wantN.Devices, got.Devices)
		assert.Equal(t, wantN.Memory.Max.KernelString(), kernel("memory", "memory.limit_in_bytes"), "%s: memory.limit_in_bytes", when)
		assert.Equal(t, wantN.Pids.Max.String(), kernel("pids", "pids.max"), "%s: pids.max", when)
		assert.Equal(t, "2560", kernel("cpu", "cpu.shares"), "%s: cpu.shares (250 × 1024 / 100)", when)
		rules, err := statfile.ParseDevicesList([]byte(kernel("devices", "devices.list")))
		require.NoError(t, err)
		requireSameAccess(t, wantN.Devices, &semantic.Devices{Default: semantic.DenyByDefault, Rules: rules})
	}
	check("after create", req)
	transient := filepath.Join(in.RootDir(), "run/systemd/transient", slice)
	body, err := os.ReadFile(transient)
	require.NoError(t, err, "the transient unit file")
	assert.Contains(t, string(body), "MemoryMax=67108864", "the transient file holds the page-rounded limit")

	reload := func() {
		t.Helper()
		out, err := in.Run(ctx, "systemctl", "daemon-reload")
		require.NoError(t, err, "daemon-reload: %s", out)
	}
	reload()
	check("after daemon-reload", req)

	// A later Apply goes into a drop-in of the transient unit, which a
	// reload reads again too.
	upd := &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(11))}, Memory: &semantic.Memory{Max: ptr(semantic.Bytes(96 << 20))}}
	require.NoError(t, g.Apply(ctx, upd))
	req = semantic.Merge(req, upd)
	check("after apply", req)
	// Unit names hold backslashes: no glob.
	dropins, err := os.ReadDir(filepath.Join(in.RootDir(), "run/systemd/transient", slice+".d"))
	require.NoError(t, err)
	assert.NotEmpty(t, dropins, "the apply's drop-ins are in the transient directory")
	reload()
	check("after apply and daemon-reload", req)

	top, err := d.Open(ctx, semantic.MustPath("app"))
	require.NoError(t, err)
	require.NoError(t, top.Delete(ctx, &semantic.DeleteOptions{Recursive: true}))
	_, err = os.Stat(transient)
	assert.ErrorIs(t, err, os.ErrNotExist, "the transient unit file goes with the unit")
	_, err = os.Stat(filepath.Join(in.RootDir(), "run/systemd/transient", slice+".d"))
	assert.ErrorIs(t, err, os.ErrNotExist, "and its drop-ins")
	_ = root
}
