package systemd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// TestHybridBehaviours checks, inside a hybrid container, what the suite
// does not: the device list refusal on v1, a unit name still held by a
// unit on its way out, and an approximate CPU cap.
func TestHybridBehaviours(t *testing.T) {
	if os.Getenv(insideEnv) == "" {
		in := startContainer(t, sdns.ModeHybrid)
		runInside(t, in, t.Name())
		return
	}
	open := func(t *testing.T, approx bool) (*Driver, *dbus.Conn) {
		conn := connect(t, "unix:path=/run/dbus/system_bus_socket")
		root := newRootSlice(t, conn)
		d, err := Open(semantic.Options{Root: root, AllowApproximate: approx,
			Logger: hclog.New(&hclog.LoggerOptions{Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		return d, conn
	}
	t.Run("DevicesOfSliceWithDeviceChildren", func(t *testing.T) {
		d, _ := open(t, false)
		ctx := t.Context()
		null := &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w)}}
		zero := &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 5, r)}}
		p, err := d.Create(ctx, semantic.MustPath("p"), &semantic.Resources{Devices: null})
		require.NoError(t, err)
		// A childless slice takes a new list.
		require.NoError(t, p.Apply(ctx, &semantic.Resources{Devices: zero}))
		require.NoError(t, p.Apply(ctx, &semantic.Resources{Devices: null}))
		// A child with a list of its own has a devices group below p's.
		_, err = d.Create(ctx, semantic.MustPath("p/c"), &semantic.Resources{Devices: null})
		require.NoError(t, err)
		err = p.Apply(ctx, &semantic.Resources{Devices: zero})
		require.ErrorIs(t, err, semantic.ErrNotSupported)
		assert.Contains(t, err.Error(), "devices")
		got, err := p.Resources(ctx)
		require.NoError(t, err)
		requireSameAccess(t, null, got.Devices)
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/devices", d.sliceCgroupOf(mustSlice(d, p.Path())), "devices.list"))
		require.NoError(t, err)
		rules, err := statfile.ParseDevicesList(b)
		require.NoError(t, err)
		requireSameAccess(t, null, &semantic.Devices{Default: semantic.DenyByDefault, Rules: rules})
		// The list it has is still accepted.
		require.NoError(t, p.Apply(ctx, &semantic.Resources{Devices: null}))
		require.NoError(t, p.Delete(ctx, &semantic.DeleteOptions{Recursive: true}))
	})
	t.Run("NameHeldByUnitOnItsWayOut", func(t *testing.T) {
		d, conn := open(t, false)
		ctx := t.Context()
		p := semantic.MustPath("held")
		unit := mustSlice(d, p)
		mgr := conn.Object(busName, managerPath)
		var job dbus.ObjectPath
		require.NoError(t, mgr.Call(managerIface+".StartTransientUnit", 0, unit, "fail",
			[]property{{"TasksMax", dbus.MakeVariant(uint64(3))}}, []struct {
				Name  string
				Props []property
			}{}).Store(&job))
		waitUnit(t, conn, unit, true)
		var path dbus.ObjectPath
		require.NoError(t, mgr.Call(managerIface+".GetUnit", 0, unit).Store(&path))
		// A reference keeps the stopped unit loaded until it is dropped.
		require.NoError(t, conn.Object(busName, path).Call(unitIface+".Ref", 0).Err)
		require.NoError(t, mgr.Call(managerIface+".StopUnit", 0, unit, "fail").Store(&job))
		waitUnit(t, conn, unit, false)
		// Closed as the reference is dropped, not once the reply is read:
		// the driver may see the unit go and start the new one before this
		// goroutine is scheduled again, and that is no early return.
		releasing := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(300 * time.Millisecond)
			close(releasing)
			conn.Object(busName, path).Call(unitIface+".Unref", 0)
		}()
		defer func() { <-done }()
		g, err := d.Create(ctx, p, nil)
		require.NoError(t, err, "Create waits out the old unit")
		select {
		case <-releasing:
		default:
			t.Fatal("Create returned while the old unit was still referenced")
		}
		got, err := g.Resources(ctx)
		require.NoError(t, err)
		assert.Equal(t, semantic.Count(semantic.Unlimited), *got.Pids.Max, "the new unit does not inherit the old one's settings")
		require.NoError(t, g.Delete(ctx, nil))
	})
	t.Run("CancelledWhileWaitingForName", func(t *testing.T) {
		d, conn := open(t, false)
		p := semantic.MustPath("held2")
		unit := mustSlice(d, p)
		mgr := conn.Object(busName, managerPath)
		var job dbus.ObjectPath
		require.NoError(t, mgr.Call(managerIface+".StartTransientUnit", 0, unit, "fail", []property{}, []struct {
			Name  string
			Props []property
		}{}).Store(&job))
		waitUnit(t, conn, unit, true)
		var path dbus.ObjectPath
		require.NoError(t, mgr.Call(managerIface+".GetUnit", 0, unit).Store(&path))
		require.NoError(t, conn.Object(busName, path).Call(unitIface+".Ref", 0).Err)
		defer conn.Object(busName, path).Call(unitIface+".Unref", 0)
		require.NoError(t, mgr.Call(managerIface+".StopUnit", 0, unit, "fail").Store(&job))
		waitUnit(t, conn, unit, false)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := d.Create(ctx, p, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded, "the wait ends with the caller's context, not a timer")
	})
	t.Run("ApproximateCPUCap", func(t *testing.T) {
		strict, _ := open(t, false)
		ctx := t.Context()
		third := &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3}}}
		_, err := strict.Create(ctx, semantic.MustPath("cap"), third)
		require.ErrorIs(t, err, semantic.ErrNotSupported, "a lossy cap is refused without AllowApproximate")
		assert.Contains(t, err.Error(), "cpu.max")
		exactCap := &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.25, Period: 50 * time.Millisecond}}}
		g, err := strict.Create(ctx, semantic.MustPath("cap"), exactCap)
		require.NoError(t, err, "a cap systemd keeps is applied without AllowApproximate")
		cg := filepath.Join("/sys/fs/cgroup/cpu", strict.sliceCgroupOf(mustSlice(strict, g.Path())))
		assert.Equal(t, "12500", readTrim(t, filepath.Join(cg, "cpu.cfs_quota_us")))
		assert.Equal(t, "50000", readTrim(t, filepath.Join(cg, "cpu.cfs_period_us")))
		require.NoError(t, g.Delete(ctx, nil))

		approx, _ := open(t, true)
		g, err = approx.Create(ctx, semantic.MustPath("cap"), third)
		require.NoError(t, err)
		got, err := g.Resources(ctx)
		require.NoError(t, err)
		assert.InDelta(t, 0.33, got.CPU.Max.CPUs, 1e-9, "a third of a CPU is applied as 33%")
		cg = filepath.Join("/sys/fs/cgroup/cpu", approx.sliceCgroupOf(mustSlice(approx, g.Path())))
		assert.Equal(t, "33000", readTrim(t, filepath.Join(cg, "cpu.cfs_quota_us")))
		require.NoError(t, g.Delete(ctx, nil))
	})
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
