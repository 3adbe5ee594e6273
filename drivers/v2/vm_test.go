package v2_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// TestVMIOThrottle proves io.max holds: the same direct write to the VM's
// RAM block device, from a group without a limit and from one limited to
// 2 MiB/s, takes at least twice the limit's lower bound (8 MiB at 2 MiB/s
// is 4 s, less the kernel's first slice) and several times as long. It
// runs in the VM lane (test/vm), which has the io controller and
// /dev/ram0; elsewhere it skips.
func TestVMIOThrottle(t *testing.T) {
	dev := os.Getenv("CGSEM_VM_BLOCKDEV")
	if os.Getenv("CGSEM_VM") != "1" || dev == "" {
		t.Skip("needs the VM lane's block device (test/vm sets CGSEM_VM=1 and CGSEM_VM_BLOCKDEV)")
	}
	h := newHarness(t, nil)
	if !h.has("io") {
		t.Skipf("no io controller below %s", h.own)
	}
	const (
		total = 8 << 20
		rate  = 2 << 20
	)
	_, maj, min, err := semantic.StatDevice(dev)
	require.NoError(t, err)
	d, _ := hostDriver(t, nil)
	ctx := t.Context()
	free := create(t, d, "free", nil)
	capped := create(t, d, "capped", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: maj, Minor: min, WriteBPS: rate}}}})

	write := func(g semantic.Group) time.Duration {
		t.Helper()
		p := newHelper(t, "write", dev, strconv.Itoa(total))
		require.NoError(t, g.Start(ctx, p.cmd))
		p.started()
		p.send("go")
		f := strings.Fields(p.expect("wrote "))
		require.Equal(t, strconv.Itoa(total), f[1], "bytes written")
		ns, err := strconv.ParseInt(f[3], 10, 64)
		require.NoError(t, err)
		return time.Duration(ns)
	}
	unlimited := write(free)
	limited := write(capped)
	t.Logf("8 MiB written directly to %s in %v without a limit, in %v under wbps=2MiB", dev, unlimited, limited)
	require.Greater(t, limited, 2*time.Second, "a direct write under io.max wbps=2MiB")
	require.Greater(t, limited, 4*unlimited, "the limited write against the same write unlimited")

	st, err := capped.Stats(ctx)
	require.NoError(t, err)
	var written uint64
	for _, s := range st.IO {
		if s.Major == maj && s.Minor == min && s.WriteBytes != nil {
			written = *s.WriteBytes
		}
	}
	require.GreaterOrEqual(t, written, uint64(total), "io.stat of the limited group counts its writes")
}

// TestControllerStats checks the figures controllers provide, where the
// group has them: none before a limit enables memory and pids for it,
// then usage and the limit, the group's descendants counted. The held
// descriptors follow the group's controllers as they change.
func TestControllerStats(t *testing.T) {
	h := newHarness(t, nil)
	if !h.has("memory") || !h.has("pids") {
		t.Skipf("no memory and pids controllers below %s (the VM lane has them)", h.own)
	}
	d, _ := hostDriver(t, nil)
	ctx := t.Context()
	top := create(t, d, "top", nil)
	leaf := create(t, d, "top/leaf", nil)
	p := newHelper(t, "sleep").start()
	require.NoError(t, leaf.AddProcess(ctx, p.pid()))

	st, err := top.Stats(ctx)
	require.NoError(t, err)
	require.Nil(t, st.Memory, "memory figures before the memory controller serves the group")
	require.Nil(t, st.Pids, "a pids count before the pids controller serves the group")

	limit := semantic.Count(50)
	require.NoError(t, top.Apply(ctx, &semantic.Resources{
		Memory: &semantic.Memory{Max: ptr(semantic.Bytes(256 << 20))},
		Pids:   &semantic.Pids{Max: &limit},
	}))
	// The process joined before memory was enabled; its later pages count.
	st, err = top.Stats(ctx)
	require.NoError(t, err)
	require.NotNil(t, st.Pids)
	require.NotNil(t, st.Pids.Current)
	require.GreaterOrEqual(t, *st.Pids.Current, uint64(1), "tasks of the leaf count in its parent")
	require.Equal(t, &limit, st.Pids.Limit)
	require.NotNil(t, st.Memory)
	for name, v := range map[string]*uint64{"usage": st.Memory.Usage, "peak": st.Memory.Peak, "anon": st.Memory.Anon, "oom": st.Memory.OOM, "oom_kill": st.Memory.OOMKill} {
		require.NotNil(t, v, "memory %s", name)
	}
	require.Zero(t, *st.Memory.OOMKill)
}
