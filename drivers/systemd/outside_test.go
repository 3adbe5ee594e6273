package systemd

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/semantic"
)

// outsideDriver opens the driver from here on the container's bus, on a
// fresh root slice.
func outsideDriver(t *testing.T, in *sdns.Instance) (*Driver, string) {
	t.Helper()
	conn := connect(t, in.BusAddress())
	root := newRootSlice(t, conn)
	d, err := Open(semantic.Options{Root: root, Settings: map[string]string{"bus": in.BusAddress()},
		Logger: hclog.New(&hclog.LoggerOptions{Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close()) })
	return d, root
}

// TestFromOutsideNamespaces drives a systemd whose pid and mount
// namespaces are not this process's, through its bus address: the driver
// reads its cgroups through the bus daemon's /proc/PID/root, forks the
// commands it starts into systemd's pid namespace, and translates pids.
func TestFromOutsideNamespaces(t *testing.T) {
	in := startContainer(t, sdns.ModeHybrid)
	d, _ := outsideDriver(t, in)
	ctx := t.Context()
	require.False(t, d.view.samePids(), "systemd's pids are not ours")
	require.NotEmpty(t, d.view.root, "systemd's files are reached through its root")

	g, err := d.Create(ctx, semantic.MustPath("out"), &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(20))}})
	require.NoError(t, err)

	t.Run("StartInside", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", "cat /proc/self/cgroup; echo --; exec cat")
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, g.Start(ctx, cmd))
		defer func() {
			stdin.Close()
			assert.NoError(t, cmd.Wait())
		}()
		sc := bufio.NewScanner(stdout)
		var first []string
		for sc.Scan() && sc.Text() != "--" {
			first = append(first, sc.Text())
		}
		scope, _ := d.names.scope(g.Path())
		assert.Contains(t, strings.Join(first, "\n"), "0::/"+in.Name()+d.sliceCgroupOf(mustSlice(d, g.Path()))+"/"+scope,
			"the shell's first act saw itself in the scope (the path is as this process's cgroup namespace shows it)")
		pids, err := g.Processes(ctx)
		require.NoError(t, err)
		assert.Equal(t, []int{cmd.Process.Pid}, pids, "Processes lists pids as this process knows them")
		ns, err := nsPIDs(cmd.Process.Pid)
		require.NoError(t, err)
		assert.Len(t, ns, 2, "the child lives in systemd's pid namespace")
	})

	t.Run("ProcessOfOtherNamespaceRefused", func(t *testing.T) {
		cmd := exec.Command("sleep", "60")
		require.NoError(t, cmd.Start())
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		other, err := d.Create(ctx, semantic.MustPath("out2"), nil)
		require.NoError(t, err)
		err = other.AddProcess(ctx, cmd.Process.Pid)
		require.ErrorIs(t, err, semantic.ErrNotSupported)
		assert.ErrorIs(t, err, errOutsidePidns)
		pids, err := other.Processes(ctx)
		require.NoError(t, err)
		assert.Empty(t, pids)
		require.NoError(t, other.Delete(ctx, nil))
	})

	t.Run("ProcessOfSystemdsNamespace", func(t *testing.T) {
		p, err := in.Exec(ctx, sdns.Command{Args: []string{"sleep", "60"}})
		require.NoError(t, err)
		defer func() { p.Kill(); p.Wait() }()
		host, err := p.HostPID(ctx)
		require.NoError(t, err)
		g3, err := d.Create(ctx, semantic.MustPath("out3"), nil)
		require.NoError(t, err)
		require.NoError(t, g3.AddProcess(ctx, host), "the first process starts the scope")
		pids, err := g3.Processes(ctx)
		require.NoError(t, err)
		assert.Equal(t, []int{host}, pids)
		// A second process goes through AttachProcessesToUnit, which
		// systemd refuses to a caller it cannot see in its namespace.
		p2, err := in.Exec(ctx, sdns.Command{Args: []string{"sleep", "60"}})
		require.NoError(t, err)
		defer func() { p2.Kill(); p2.Wait() }()
		host2, err := p2.HostPID(ctx)
		require.NoError(t, err)
		err = g3.AddProcess(ctx, host2)
		if err != nil {
			require.ErrorIs(t, err, semantic.ErrNotSupported, "the refusal is classified")
			t.Logf("second process from outside: %v", err)
		}
		require.NoError(t, g3.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("the killed process did not end")
		}
	})

	st, err := g.Stats(ctx)
	require.NoError(t, err)
	require.NotNil(t, st.Pids)
	require.NoError(t, g.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
	_, err = d.Open(ctx, g.Path())
	require.ErrorIs(t, err, semantic.ErrNotExist)
}

// TestOpenRefusals checks what Open refuses before it changes anything.
func TestOpenRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		opts semantic.Options
		kind error
	}{
		{"UnknownSetting", semantic.Options{Settings: map[string]string{"colour": "blue"}}, semantic.ErrInvalid},
		{"BadBus", semantic.Options{Settings: map[string]string{"bus": "nowhere"}}, semantic.ErrInvalid},
		{"RootSelf", semantic.Options{Root: semantic.RootSelf}, semantic.ErrInvalid},
		{"RootNotASlice", semantic.Options{Root: "/system.slice/cron.service"}, semantic.ErrInvalid},
		{"NoBusThere", semantic.Options{Settings: map[string]string{"bus": "unix:path=/nonexistent/cgsem-test-bus"}}, semantic.ErrNotExist},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.opts)
			require.ErrorIs(t, err, c.kind)
		})
	}
}

// TestRootMustBeActive: the driver does not create its root (systemd
// would create it, and its parents, implicitly, outside the root).
func TestRootMustBeActive(t *testing.T) {
	in := startContainer(t, sdns.ModeHybrid)
	_, err := Open(semantic.Options{Root: escapeSegment("cgsem-test-never-started") + sliceSuffix,
		Settings: map[string]string{"bus": in.BusAddress()}})
	require.ErrorIs(t, err, semantic.ErrNotExist)
}

// TestCreateConfigureDeleteTimes measures a group's whole life through the
// driver against the same D-Bus calls made by hand, both from here.
func TestCreateConfigureDeleteTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	in := startContainer(t, sdns.ModeHybrid)
	d, root := outsideDriver(t, in)
	ctx := t.Context()
	const n = 30
	req := &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(64 << 20))}, Pids: &semantic.Pids{Max: ptr(semantic.Count(50))}}
	upd := &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(60))}}
	driver := timeIt(n, func(i int) error {
		g, err := d.Create(ctx, semantic.MustPath("bench"), req)
		if err != nil {
			return err
		}
		if err := g.Apply(ctx, upd); err != nil {
			return err
		}
		return g.Delete(ctx, nil)
	})
	require.NoError(t, driver.err)
	b := d.bus
	unit := strings.TrimSuffix(root, sliceSuffix) + "-bench.slice"
	floor := timeIt(n, func(i int) error {
		// The same properties the driver sends, so the difference is
		// the driver's own queries and checks.
		props := append(d.sliceProps(semantic.MustPath("bench")), property{"MemoryMax", dbus.MakeVariant(uint64(64 << 20))}, property{"TasksMax", dbus.MakeVariant(uint64(50))})
		if err := b.startTransient(ctx, unit, props); err != nil {
			return err
		}
		if err := b.setProperties(ctx, unit, []property{{"TasksMax", dbus.MakeVariant(uint64(60))}}); err != nil {
			return err
		}
		return b.stop(ctx, unit)
	})
	require.NoError(t, floor.err)
	t.Logf("create+configure+delete of a slice, mean of %d: driver %v, the same StartTransientUnit/SetUnitProperties/StopUnit by hand %v",
		n, driver.mean, floor.mean)
}

type timing struct {
	mean time.Duration
	err  error
}

func timeIt(n int, fn func(int) error) timing {
	start := time.Now()
	for i := range n {
		if err := fn(i); err != nil {
			return timing{err: err}
		}
	}
	return timing{mean: time.Since(start) / time.Duration(n)}
}
