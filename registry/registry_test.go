package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// opened is the driver the test constructors return: it records its name
// and options so a test sees which registration built it and with what.
type opened struct {
	name string
	opts semantic.Options
}

func (d *opened) Name() string                        { return d.name }
func (d *opened) Capabilities() semantic.Capabilities { return nil }
func (d *opened) Close() error                        { return nil }
func (d *opened) Create(context.Context, semantic.Path, *semantic.Resources) (semantic.Group, error) {
	return nil, semantic.NotSupported(d.name, semantic.Freeze, "registry test driver")
}
func (d *opened) Open(context.Context, semantic.Path) (semantic.Group, error) {
	return nil, semantic.NotSupported(d.name, semantic.Freeze, "registry test driver")
}
func (d *opened) Children(context.Context, semantic.Path) ([]semantic.Path, error) {
	return nil, semantic.NotSupported(d.name, semantic.Freeze, "registry test driver")
}

var _ semantic.Driver = (*opened)(nil)

func newDriver(name string) func(semantic.Options) (semantic.Driver, error) {
	return func(o semantic.Options) (semantic.Driver, error) { return &opened{name: name, opts: o}, nil }
}

// reg builds a registration whose probe answers ok with a reason naming
// the driver, so a test can tell whose verdict it reads.
func reg(name string, prio int, ok bool) registry.Registration {
	return registry.Registration{
		Name:     name,
		Priority: prio,
		Probe:    func() (bool, string) { return ok, fmt.Sprintf("%s says %v", name, ok) },
		New:      newDriver(name),
	}
}

// fresh returns an empty registry that ignores the process environment.
func fresh(env map[string]string) *registry.Registry {
	return &registry.Registry{Getenv: func(k string) string { return env[k] }}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name  string
		first *registry.Registration
		reg   registry.Registration
		msg   string
	}{
		{"nil constructor", nil, registry.Registration{Name: "x", Probe: func() (bool, string) { return true, "" }},
			"cgsem/registry: Register of a driver with no name or no constructor"},
		{"empty name", nil, registry.Registration{New: newDriver("x")},
			"cgsem/registry: Register of a driver with no name or no constructor"},
		{"duplicate", &registry.Registration{Name: "v2", New: newDriver("v2")}, registry.Registration{Name: "v2", New: newDriver("other")},
			"cgsem/registry: Register called twice for driver v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fresh(nil)
			if tt.first != nil {
				r.Register(*tt.first)
			}
			before := r.Drivers()
			msg, panicked := registerPanic(r, tt.reg)
			require.True(t, panicked, "Register must panic")
			assert.Equal(t, tt.msg, msg)
			assert.Equal(t, before, r.Drivers(), "a refused registration leaves the registry as it was")
			if tt.first != nil {
				d, err := r.Open(tt.first.Name, semantic.Options{})
				require.NoError(t, err)
				assert.Equal(t, tt.first.Name, d.Name(), "the first registration stays")
			}
		})
	}
}

// registerPanic calls Register and returns what it panicked with.
func registerPanic(r *registry.Registry, reg registry.Registration) (msg string, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			msg, panicked = fmt.Sprint(v), true
		}
	}()
	r.Register(reg)
	return "", false
}

func TestRegisterWithoutProbe(t *testing.T) {
	r := fresh(nil)
	r.Register(registry.Registration{Name: "fake", New: newDriver("fake")})
	assert.Equal(t, []string{"fake"}, r.Drivers())
}

func TestDrivers(t *testing.T) {
	var zero registry.Registry
	assert.Empty(t, zero.Drivers(), "the zero Registry is empty and usable")

	r := fresh(nil)
	for _, n := range []string{"v2", "systemd", "fake", "v1", "acme"} {
		r.Register(reg(n, 0, false))
	}
	assert.Equal(t, []string{"acme", "fake", "systemd", "v1", "v2"}, r.Drivers())
}

func TestOpen(t *testing.T) {
	r := fresh(nil)
	r.Register(reg("v2", 20, true))
	r.Register(reg("v1", 10, true))

	d, err := r.Open("v1", semantic.Options{Root: "self"})
	require.NoError(t, err)
	assert.Equal(t, "v1", d.Name())
	assert.Equal(t, "self", d.(*opened).opts.Root, "options reach the constructor")

	_, err = r.Open("v3", semantic.Options{})
	require.Error(t, err)
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.EqualError(t, err, `cgsem: open driver on "v3": unknown driver (forgotten import?); registered: v1, v2`)

	_, err = fresh(nil).Open("v1", semantic.Options{})
	assert.EqualError(t, err, `cgsem: open driver on "v1": unknown driver (forgotten import?); registered: none`)
}

func TestOpenConstructorError(t *testing.T) {
	r := fresh(nil)
	boom := errors.New("no cgroup2 mount")
	r.Register(registry.Registration{Name: "v2", New: func(semantic.Options) (semantic.Driver, error) { return nil, boom }})
	_, err := r.Open("v2", semantic.Options{})
	assert.ErrorIs(t, err, boom)
}

func TestProbeOrder(t *testing.T) {
	tests := []struct {
		name   string
		regs   []registry.Registration
		picked string
		order  []string
	}{
		{"highest priority that accepts",
			[]registry.Registration{reg("v1", 10, true), reg("systemd", 30, false), reg("v2", 20, true)},
			"v2", []string{"systemd", "v2", "v1"}},
		{"tie goes to the smaller name",
			[]registry.Registration{reg("v2", 20, true), reg("acme", 20, true), reg("v1", 10, true)},
			"acme", []string{"acme", "v2", "v1"}},
		{"tie order ignores a refusing driver",
			[]registry.Registration{reg("acme", 20, false), reg("v2", 20, true)},
			"v2", []string{"acme", "v2"}},
		{"negative priorities last",
			[]registry.Registration{reg("low", -5, true), reg("zero", 0, false)},
			"low", []string{"zero", "low"}},
		{"nil probe never picked",
			[]registry.Registration{{Name: "fake", Priority: 100, New: newDriver("fake")}, reg("v1", 10, true)},
			"v1", []string{"fake", "v1"}},
		{"nothing fits",
			[]registry.Registration{reg("v1", 10, false), reg("v2", 20, false)},
			"", []string{"v2", "v1"}},
		{"empty registry", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fresh(nil)
			byName := map[string]registry.Registration{}
			for _, x := range tt.regs {
				r.Register(x)
				byName[x.Name] = x
			}
			sel := r.Probe()
			assert.Equal(t, tt.picked, sel.Picked)
			assert.False(t, sel.Forced)
			var order []string
			for _, v := range sel.Verdicts {
				order = append(order, v.Name)
				x := byName[v.Name]
				assert.Equal(t, x.Priority, v.Priority, v.Name)
				if x.Probe == nil {
					assert.False(t, v.OK)
					assert.Equal(t, "never auto-selected; force it by name", v.Reason)
					continue
				}
				ok, why := x.Probe()
				assert.Equal(t, ok, v.OK, v.Name)
				assert.Equal(t, why, v.Reason, "every verdict carries its probe's reason")
			}
			assert.Equal(t, tt.order, order)
		})
	}
}

func TestProbeRunsEveryProbe(t *testing.T) {
	r := fresh(nil)
	var calls atomic.Int32
	for _, n := range []string{"a", "b", "c"} {
		r.Register(registry.Registration{Name: n, Priority: 1, New: newDriver(n),
			Probe: func() (bool, string) { calls.Add(1); return true, "fits" }})
	}
	sel := r.Probe()
	assert.Equal(t, "a", sel.Picked)
	assert.Equal(t, int32(3), calls.Load(), "drivers after the pick are still probed, so each verdict is explained")
	assert.Len(t, sel.Verdicts, 3)
}

func TestForcedDriver(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		picked  string
		openErr string
	}{
		{"not set: auto-selection", "", "v2", ""},
		{"forces a lower priority", "v1", "v1", ""},
		{"forces a refusing driver", "systemd", "systemd", ""},
		{"forces a driver with no probe", "fake", "fake", ""},
		{"unknown name", "v9", "v9", "forgotten import?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fresh(map[string]string{registry.EnvDriver: tt.env})
			r.Register(reg("systemd", 30, false))
			r.Register(reg("v2", 20, true))
			r.Register(reg("v1", 10, true))
			r.Register(registry.Registration{Name: "fake", New: newDriver("fake")})

			sel := r.Probe()
			assert.Equal(t, tt.picked, sel.Picked)
			assert.Equal(t, tt.env != "", sel.Forced)
			assert.Len(t, sel.Verdicts, 4, "a forced selection still explains every driver")

			d, sel2, err := r.Auto(semantic.Options{})
			assert.Equal(t, sel, sel2)
			if tt.openErr != "" {
				assert.ErrorIs(t, err, semantic.ErrNotExist)
				assert.ErrorContains(t, err, tt.openErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.picked, d.Name())
		})
	}
}

func TestForcedDriverFromProcessEnvironment(t *testing.T) {
	// A Registry without Getenv reads the real environment.
	t.Setenv(registry.EnvDriver, "v1")
	r := &registry.Registry{}
	r.Register(reg("v2", 20, true))
	r.Register(reg("v1", 10, true))
	sel := r.Probe()
	assert.Equal(t, "v1", sel.Picked)
	assert.True(t, sel.Forced)
}

func TestAutoNothingFits(t *testing.T) {
	r := fresh(nil)
	r.Register(reg("systemd", 30, false))
	r.Register(reg("v2", 20, false))
	r.Register(reg("v1", 10, false))
	r.Register(registry.Registration{Name: "fake", New: newDriver("fake")})

	d, sel, err := r.Auto(semantic.Options{})
	assert.Nil(t, d)
	require.Error(t, err)
	assert.ErrorIs(t, err, registry.ErrNoDriver)
	assert.ErrorIs(t, err, semantic.ErrNotSupported)
	assert.Equal(t, "", sel.Picked)
	require.Len(t, sel.Verdicts, 4)
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "cgsem: select driver: no driver fits this host:\n"), msg)
	for _, want := range []string{"systemd says false", "v2 says false", "v1 says false", "fake", "never auto-selected"} {
		assert.Contains(t, msg, want)
	}
}

func TestAutoEmpty(t *testing.T) {
	_, _, err := fresh(nil).Auto(semantic.Options{})
	assert.ErrorIs(t, err, registry.ErrNoDriver)
}

func TestAutoPicks(t *testing.T) {
	r := fresh(nil)
	r.Register(reg("v2", 20, true))
	r.Register(reg("v1", 10, true))
	d, sel, err := r.Auto(semantic.Options{Root: "/machine.slice"})
	require.NoError(t, err)
	assert.Equal(t, "v2", d.Name())
	assert.Equal(t, "/machine.slice", d.(*opened).opts.Root)
	assert.Equal(t, "v2", sel.Picked)
}

func TestSelectionString(t *testing.T) {
	tests := []struct {
		name string
		sel  registry.Selection
		want string
	}{
		{"picked", registry.Selection{Picked: "v2", Verdicts: []registry.Verdict{
			{Name: "systemd", Priority: 30, Reason: "PID 1 is not systemd"},
			{Name: "v2", Priority: 20, OK: true, Reason: "/sys/fs/cgroup is cgroup2"},
		}}, "picked \"v2\": highest priority whose probe accepts this host\n" +
			"  systemd    priority  30  no  PID 1 is not systemd\n" +
			"  v2         priority  20  yes /sys/fs/cgroup is cgroup2\n"},
		{"forced", registry.Selection{Picked: "v1", Forced: true}, "driver \"v1\" forced by CGSEM_DRIVER\n"},
		{"none", registry.Selection{Verdicts: []registry.Verdict{{Name: "v1", Priority: 10, Reason: "no v1 mounts"}}},
			"no driver fits this host\n  v1         priority  10  no  no v1 mounts\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.sel.String())
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	r := fresh(nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("d%02d", i)
			r.Register(reg(name, i, i%2 == 0))
			_ = r.Probe()
			_ = r.Drivers()
			_, _ = r.Open(name, semantic.Options{})
		}()
	}
	wg.Wait()
	assert.Len(t, r.Drivers(), 16)
	assert.Equal(t, "d14", r.Probe().Picked)
}

func TestDefaultRegistryReadOnly(t *testing.T) {
	// Only reads: tests never change the default registry.
	_, err := registry.Open("cgsem-test-no-such-driver", semantic.Options{})
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	assert.ErrorContains(t, err, "forgotten import?")
	assert.IsIncreasing(t, append([]string{""}, registry.Drivers()...))
}

func TestDefaultRegistryAutoWithoutDrivers(t *testing.T) {
	// This test binary imports no driver, so the default registry is empty.
	t.Setenv(registry.EnvDriver, "")
	require.Empty(t, registry.Drivers())
	sel := registry.Probe()
	assert.Equal(t, "", sel.Picked)
	_, _, err := registry.Auto(semantic.Options{})
	assert.ErrorIs(t, err, registry.ErrNoDriver)
}
