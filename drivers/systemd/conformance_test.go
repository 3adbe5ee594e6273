package systemd

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// TestConformanceHybrid runs the conformance suite against systemd in
// hybrid mode (v1 controllers, cgroup2 for tracking), with the suite and
// its processes inside systemd's namespaces, so the pids it hands over are
// systemd's own. Enforced here: memory, pids, devices, a CPU cap, kill.
func TestConformanceHybrid(t *testing.T) {
	if os.Getenv(insideEnv) != "" {
		conformance.Run(t, systemdHarness(t))
		return
	}
	in := startContainer(t, sdns.ModeHybrid)
	out := runInside(t, in, t.Name())
	logSkips(t, out)
}

// TestConformanceUnified runs it with systemd on a cgroup2-only layout. On
// a hybrid host the container's cgroup2 group has no controllers, so
// there are no limits to set, but freeze, kill, events and the unit
// lifecycle are all systemd's and are checked.
func TestConformanceUnified(t *testing.T) {
	if os.Getenv(insideEnv) != "" {
		conformance.Run(t, systemdHarness(t))
		return
	}
	in := startContainer(t, sdns.ModeUnified)
	out := runInside(t, in, t.Name())
	logSkips(t, out)
}

// logSkips reports why subtests were skipped inside, reason by reason.
func logSkips(t *testing.T, l *testLog) {
	skips := l.skips()
	for _, r := range slices.Sorted(maps.Keys(skips)) {
		t.Logf("skipped inside (%d): %s: %s", len(skips[r]), r, strings.Join(skips[r], ", "))
	}
}

// TestConformanceHost runs the suite against the systemd of this host,
// where it is PID 1 (the systemd VM lane): on its system bus, below root
// slices of the test's own.
func TestConformanceHost(t *testing.T) {
	if os.Getenv(insideEnv) == "" {
		testenv.RequireRoot(t)
		testenv.RequireSystemd(t)
	}
	conformance.Run(t, systemdHarness(t))
}

// vmConcurrencyDeadline is how long the concurrency subtests wait for
// their workers in the VM lanes: a liveness bound, ten times the default.
const vmConcurrencyDeadline = 10 * time.Minute

// systemdHarness is the suite's harness on a systemd reached on the system
// bus: each subtest gets a driver on a fresh root slice. What it enforces
// is what the driver declares: systemd writes each supported property to
// the kernel, and the suite checks that the kernel then holds to it.
func systemdHarness(t *testing.T) conformance.Harness {
	if conformance.IsHelper() {
		// A helper process: Run turns it into the helper at once.
		return conformance.Harness{NewDriver: func(*testing.T) semantic.Driver { return nil }}
	}
	const bus = "unix:path=/run/dbus/system_bus_socket"
	probe, err := Open(semantic.Options{})
	require.NoError(t, err)
	caps, layout := probe.Capabilities(), probe.host.layout
	require.NoError(t, probe.Close())
	var enforces []semantic.Feature
	for _, f := range []semantic.Feature{semantic.MemoryMax, semantic.PidsMax, semantic.DevicesFeature,
		semantic.CPUMaxFeature, semantic.Freeze, semantic.Kill} {
		if caps.Supports(f) {
			enforces = append(enforces, f)
		}
	}
	t.Logf("systemd on %s cgroups; the suite enforces %v", layout, enforces)
	obs := &observer{layout: layout}
	h := conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			conn := connect(t, bus)
			root := newRootSlice(t, conn)
			d, err := Open(semantic.Options{Root: root, Logger: hclog.New(&hclog.LoggerOptions{
				Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, d.Close()) })
			obs.register(d, conn)
			return d
		},
		InjectFault: func(d semantic.Driver, nth int, err error) bool {
			sd, ok := d.(*Driver)
			if ok {
				sd.injectFault(nth, err)
			}
			return ok
		},
		Observer: obs,
		Enforces: enforces,
		Leaks: func(d semantic.Driver) []string {
			sd := d.(*Driver)
			left, err := unitsBelow(obs.conn(sd), sd.names.root)
			if err != nil {
				return []string{err.Error()}
			}
			cg := filepath.Join(obs.trackingRoot(), sd.sliceCgroupOf(sd.names.root))
			if ents, err := os.ReadDir(cg); err == nil {
				for _, e := range ents {
					if e.IsDir() {
						left = append(left, "cgroup "+e.Name())
					}
				}
			}
			return left
		},
		InGroup: func(d semantic.Driver, p semantic.Path, procCgroup string) bool {
			want := obs.scopeCgroup(d.(*Driver), p)
			for line := range strings.SplitSeq(procCgroup, "\n") {
				if rest, ok := strings.CutPrefix(line, "0::"); ok {
					return rest == want
				}
			}
			return false
		},
	}
	if os.Getenv("CGSEM_VM") != "" {
		// The VM lanes emulate their CPU (TCG) on a shared machine: there
		// eight workers' hundreds of systemd jobs, each a few D-Bus round
		// trips and cgroup writes by an emulated PID 1, took over the
		// suite's default minute without being stuck.
		h.ConcurrencyDeadline = vmConcurrencyDeadline
	}
	if layout == layoutUnified {
		h.CPUs = setFile(t, "/sys/fs/cgroup/cpuset.cpus.effective")
		h.Mems = setFile(t, "/sys/fs/cgroup/cpuset.mems.effective")
		if caps.Supports(semantic.IOLimits) {
			h.IODevice = wholeDisk()
		}
	}
	return h
}

// setFile reads a CPU or node list; nil when there is none.
func setFile(t *testing.T, path string) semantic.CPUSet {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s, err := semantic.ParseCPUSet(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	if len(s) == 0 {
		return nil
	}
	return s
}

// wholeDisk finds a block device that is a whole disk (systemd applies an
// IO limit of a partition to its disk), not a loop or RAM device.
func wholeDisk() *[2]int64 {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", n, "dev"))
		if err != nil {
			continue
		}
		var major, minor int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err == nil {
			return &[2]int64{major, minor}
		}
	}
	return nil
}

// observer reads what systemd and the kernel hold, independently of the
// driver: unit state over its own bus connection, group membership and
// limits from the cgroup files.
type observer struct {
	layout layout
	mu     sync.Mutex
	conns  map[*Driver]*dbus.Conn
}

func (o *observer) register(d *Driver, conn *dbus.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conns == nil {
		o.conns = map[*Driver]*dbus.Conn{}
	}
	o.conns[d] = conn
}

func (o *observer) conn(d *Driver) *dbus.Conn {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conns[d]
}

// trackingRoot is where systemd keeps its units' groups.
func (o *observer) trackingRoot() string {
	switch o.layout {
	case layoutHybrid:
		return "/sys/fs/cgroup/unified"
	case layoutLegacy:
		return "/sys/fs/cgroup/systemd"
	}
	return "/sys/fs/cgroup"
}

func (o *observer) sliceCgroup(d *Driver, p semantic.Path) string {
	s, err := d.names.slice(p)
	if err != nil {
		return ""
	}
	return d.sliceCgroupOf(s)
}

func (o *observer) scopeCgroup(d *Driver, p semantic.Path) string {
	scope, err := d.names.scope(p)
	if err != nil {
		return ""
	}
	return o.sliceCgroup(d, p) + "/" + cgroupName(scope)
}

// Exists asks systemd whether the slice is active and checks its group is
// there exactly then.
func (o *observer) Exists(t *testing.T, d semantic.Driver, p semantic.Path) bool {
	t.Helper()
	sd := d.(*Driver)
	s, err := sd.names.slice(p)
	require.NoError(t, err)
	var us []unitStatus
	require.NoError(t, o.conn(sd).Object(busName, managerPath).Call(managerIface+".ListUnitsByPatterns", 0, []string{}, []string{s}).Store(&us))
	active := slices.ContainsFunc(us, func(u unitStatus) bool { return u.Name == s && isActive(u.ActiveState) })
	_, err = os.Stat(filepath.Join(o.trackingRoot(), o.sliceCgroup(sd, p)))
	dir := err == nil
	if active != dir {
		t.Errorf("observer: slice %s active %v, but its cgroup exists %v", s, active, dir)
	}
	return active
}

// Processes reads the scope's cgroup.procs. A scope systemd removes
// during the read (it stops once its last process died) fails the read
// with ENODEV: it held no process then.
func (o *observer) Processes(t *testing.T, d semantic.Driver, p semantic.Path) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.trackingRoot(), o.scopeCgroup(d.(*Driver), p), "cgroup.procs"))
	if gone(err) {
		return nil
	}
	require.NoError(t, err)
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		n, err := strconv.Atoi(f)
		require.NoError(t, err)
		pids = append(pids, n)
	}
	slices.Sort(pids)
	return pids
}

// Resources reads the files systemd wrote for the slice: the v1
// controllers' in hybrid and legacy mode, cgroup2's in unified mode (where
// the device list is a BPF program, not a file, and is not observed).
func (o *observer) Resources(t *testing.T, d semantic.Driver, p semantic.Path, feats []semantic.Feature) *semantic.Resources {
	t.Helper()
	cg := o.sliceCgroup(d.(*Driver), p)
	read := func(ctrl, name string) []byte {
		dir := filepath.Join("/sys/fs/cgroup", ctrl, cg)
		if o.layout == layoutUnified {
			dir = filepath.Join("/sys/fs/cgroup", cg)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if gone(err) {
			return nil
		}
		require.NoError(t, err)
		return b
	}
	limit := func(ctrl, name string) *uint64 {
		b := read(ctrl, name)
		if b == nil {
			return nil
		}
		v, err := statfile.ParseLimit(b)
		require.NoError(t, err)
		// v1 shows "no limit" as the page counter's maximum.
		if o.layout != layoutUnified && ctrl == "memory" && v >= 1<<62 {
			v = semantic.Unlimited
		}
		return &v
	}
	bytesOf := func(v *uint64) *semantic.Bytes {
		if v == nil {
			return nil
		}
		return ptr(semantic.Bytes(*v))
	}
	r := &semantic.Resources{}
	mem := func() *semantic.Memory {
		if r.Memory == nil {
			r.Memory = &semantic.Memory{}
		}
		return r.Memory
	}
	cpu := func() *semantic.CPU {
		if r.CPU == nil {
			r.CPU = &semantic.CPU{}
		}
		return r.CPU
	}
	if o.layout != layoutUnified {
		for _, f := range feats {
			switch f {
			case semantic.MemoryMax:
				if v := limit("memory", "memory.limit_in_bytes"); v != nil {
					mem().Max = bytesOf(v)
				}
			case semantic.PidsMax:
				if v := limit("pids", "pids.max"); v != nil {
					r.Pids = &semantic.Pids{Max: ptr(semantic.Count(*v))}
				}
			case semantic.CPUWeight:
				if v := limit("cpu", "cpu.shares"); v != nil {
					cpu().Weight = ptr(semantic.SharesToWeight(*v))
				}
			case semantic.DevicesFeature:
				if b := read("devices", "devices.list"); b != nil {
					rules, err := statfile.ParseDevicesList(b)
					require.NoError(t, err)
					r.Devices = &semantic.Devices{Default: semantic.DenyByDefault, Rules: rules}
				}
			}
		}
		return r
	}
	for _, f := range feats {
		switch f {
		case semantic.MemoryMax:
			mem().Max = bytesOf(limit("", "memory.max"))
		case semantic.MemoryHigh:
			mem().High = bytesOf(limit("", "memory.high"))
		case semantic.MemoryLow:
			mem().Low = bytesOf(limit("", "memory.low"))
		case semantic.MemoryMin:
			mem().Min = bytesOf(limit("", "memory.min"))
		case semantic.MemorySwap:
			mem().Swap = bytesOf(limit("", "memory.swap.max"))
		case semantic.CPUWeight:
			cpu().Weight = limit("", "cpu.weight")
		case semantic.PidsMax:
			if v := limit("", "pids.max"); v != nil {
				r.Pids = &semantic.Pids{Max: ptr(semantic.Count(*v))}
			}
		case semantic.CPUSetCPUs:
			if b := read("", "cpuset.cpus"); b != nil && strings.TrimSpace(string(b)) != "" {
				cpu().Cpus = setOf(t, b)
			}
		case semantic.CPUSetMems:
			if b := read("", "cpuset.mems"); b != nil && strings.TrimSpace(string(b)) != "" {
				cpu().Mems = setOf(t, b)
			}
		case semantic.CPUMaxFeature:
			if b := read("", "cpu.max"); b != nil {
				quota, period, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
				require.True(t, ok, "cpu.max %q", b)
				p, err := strconv.ParseInt(period, 10, 64)
				require.NoError(t, err)
				m := &semantic.CPUMax{Period: time.Duration(p) * time.Microsecond}
				if quota != "max" {
					q, err := strconv.ParseInt(quota, 10, 64)
					require.NoError(t, err)
					m.CPUs = semantic.QuotaToCPUs(time.Duration(q)*time.Microsecond, m.Period)
				}
				cpu().Max = m
			}
		case semantic.IOWeight:
			if b := read("", "io.weight"); b != nil {
				fields := strings.Fields(string(b))
				require.GreaterOrEqual(t, len(fields), 2, "io.weight %q", b)
				v, err := strconv.ParseUint(fields[1], 10, 64)
				require.NoError(t, err)
				r.IO = &semantic.IO{Weight: &v}
			}
		}
	}
	return r
}

// gone reports a read of a group that is not there, or was removed while
// it was read (ENODEV); the observer's own test, apart from the driver's.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

func setOf(t *testing.T, b []byte) semantic.CPUSet {
	s, err := semantic.ParseCPUSet(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return s
}

// TestObserverSeesLimits checks the observer against a real group, so a
// broken observer cannot pass the suite by seeing nothing.
func TestObserverSeesLimits(t *testing.T) {
	if os.Getenv(insideEnv) != "" {
		observerSeesLimits(t)
		return
	}
	in := startContainer(t, sdns.ModeHybrid)
	runInside(t, in, t.Name())
}

func observerSeesLimits(t *testing.T) {
	h := systemdHarness(t)
	d := h.NewDriver(t)
	p := semantic.MustPath("obs/leaf")
	req := &semantic.Resources{
		Memory:  &semantic.Memory{Max: ptr(semantic.Bytes(64 << 20))},
		CPU:     &semantic.CPU{Weight: ptr[uint64](250)},
		Pids:    &semantic.Pids{Max: ptr(semantic.Count(9))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w)}},
	}
	g, err := d.Create(t.Context(), p, req)
	require.NoError(t, err)
	require.True(t, h.Observer.Exists(t, d, p))
	got := h.Observer.Resources(t, d, p, req.Fields())
	require.NotNil(t, got.Memory)
	assert.Equal(t, semantic.Bytes(64<<20), *got.Memory.Max)
	require.NotNil(t, got.CPU)
	assert.Equal(t, uint64(250), *got.CPU.Weight)
	require.NotNil(t, got.Pids)
	assert.Equal(t, semantic.Count(9), *got.Pids.Max)
	require.NotNil(t, got.Devices)
	requireSameAccess(t, req.Devices, got.Devices)
	require.NoError(t, d.(*Driver).Close())
	d2, err := Open(semantic.Options{Root: d.(*Driver).names.root})
	require.NoError(t, err)
	defer d2.Close()
	g2, err := d2.Open(t.Context(), semantic.MustPath("obs"))
	require.NoError(t, err)
	require.NoError(t, g2.Delete(t.Context(), &semantic.DeleteOptions{Recursive: true}))
	_ = g
	require.False(t, h.Observer.Exists(t, d, p))
}
