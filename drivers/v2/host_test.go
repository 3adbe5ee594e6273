package v2_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/semantic"
)

// hostDriver opens a driver on a fresh scratch group beneath the test's
// own cgroup2 group, and deletes whatever the test left below it (killing
// its processes) before the scratch's own leak check.
func hostDriver(t *testing.T, settings map[string]string, opts ...v2.Option) (*v2.Driver, string) {
	t.Helper()
	d, dir := newHarness(t, settings).newDriver(t, opts...)
	t.Cleanup(func() {
		ctx := context.Background()
		kids, err := d.Children(ctx, semantic.Root)
		if err != nil {
			// A test that closed the driver tidied up itself; the
			// scratch's leak check still looks.
			return
		}
		for _, k := range kids {
			g, err := d.Open(ctx, k)
			if err == nil {
				err = g.Delete(ctx, &semantic.DeleteOptions{Recursive: true, Kill: true})
			}
			if err != nil {
				t.Errorf("tidy %s: %v", k, err)
			}
		}
	})
	return d, dir
}

func create(t *testing.T, d semantic.Driver, path string, res *semantic.Resources) semantic.Group {
	t.Helper()
	g, err := d.Create(t.Context(), semantic.MustPath(path), res)
	require.NoError(t, err, "create %s", path)
	return g
}

func procsOf(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	require.NoError(t, err)
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

func TestLeafRule(t *testing.T) {
	d, dir := hostDriver(t, nil)
	ctx := t.Context()
	inner := create(t, d, "inner", nil)
	leaf := create(t, d, "inner/leaf", nil)
	p := newHelper(t, "sleep").start()

	err := inner.AddProcess(ctx, p.pid())
	require.ErrorIs(t, err, semantic.ErrBusy, "a process into a group with children")
	require.ErrorContains(t, err, "leaf rule")
	require.Empty(t, procsOf(t, filepath.Join(dir, "inner")), "the refused process was moved anyway")

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=sleep")
	err = inner.Start(ctx, cmd)
	require.ErrorIs(t, err, semantic.ErrBusy, "a command started into a group with children")
	require.Nil(t, cmd.Process, "a refused Start started a process")

	require.NoError(t, leaf.AddProcess(ctx, p.pid()))
	_, err = d.Create(ctx, semantic.MustPath("inner/leaf/below"), nil)
	require.ErrorIs(t, err, semantic.ErrBusy, "a child below a group holding processes")
	require.NoDirExists(t, filepath.Join(dir, "inner/leaf/below"))
	_, err = d.Create(ctx, semantic.MustPath("inner/leaf/below/deeper"), nil)
	require.ErrorIs(t, err, semantic.ErrBusy, "levels below a group holding processes")
	require.NoDirExists(t, filepath.Join(dir, "inner/leaf/below"))
	require.Equal(t, []int{p.pid()}, procsOf(t, filepath.Join(dir, "inner/leaf")))

	// The root is the caller's business: it takes processes beside its
	// children.
	root, err := d.Open(ctx, semantic.Root)
	require.NoError(t, err)
	require.NoError(t, root.AddProcess(ctx, p.pid()))
	require.Equal(t, []int{p.pid()}, procsOf(t, dir))
	require.NoError(t, leaf.AddProcess(ctx, p.pid()))
}

// cgroupFD opens a group directory for BPF queries.
func cgroupFD(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func programs(t *testing.T, dir string) []uint32 {
	t.Helper()
	ids, err := devfilter.Query(cgroupFD(t, dir))
	require.NoError(t, err)
	return ids
}

func devs(def semantic.DevicePolicy, rules ...string) *semantic.Devices {
	d := &semantic.Devices{Default: def}
	for _, r := range rules {
		allow := !strings.HasPrefix(r, "!")
		rule, err := semantic.ParseDeviceRule(strings.TrimPrefix(r, "!"), allow)
		if err != nil {
			panic(err)
		}
		d.Rules = append(d.Rules, rule)
	}
	return d
}

// sameDevices compares two lists by what they grant on a grid of devices.
func sameDevices(t *testing.T, want, got *semantic.Devices) {
	t.Helper()
	require.NotNil(t, got, "no device list read back")
	for _, typ := range []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice} {
		for _, maj := range []int64{0, 1, 4, 5, 8, 136, semantic.MaxMajor} {
			for _, min := range []int64{0, 1, 3, 5, 7, 9, semantic.MaxMinor} {
				require.Equal(t, want.Allowed(typ, maj, min), got.Allowed(typ, maj, min), "%c %d:%d", typ, maj, min)
			}
		}
	}
}

func TestDevicesShareOneProgram(t *testing.T) {
	d, dir := hostDriver(t, nil)
	list := devs(semantic.DenyByDefault, "c 1:3 rwm", "c 1:5 r")
	create(t, d, "a", &semantic.Resources{Devices: list})
	create(t, d, "b", &semantic.Resources{Devices: list})
	create(t, d, "c", &semantic.Resources{Devices: devs(semantic.DenyByDefault, "c 1:3 rwm")})
	a, b, c := programs(t, filepath.Join(dir, "a")), programs(t, filepath.Join(dir, "b")), programs(t, filepath.Join(dir, "c"))
	require.Len(t, a, 1)
	require.Equal(t, a, b, "groups with one list share one loaded program")
	require.NotEqual(t, a, c, "another list is another program")
}

func TestDevicesAllowEverythingDetaches(t *testing.T) {
	d, dir := hostDriver(t, nil)
	g := create(t, d, "g", &semantic.Resources{Devices: devs(semantic.DenyByDefault, "c 1:3 rwm")})
	require.Len(t, programs(t, filepath.Join(dir, "g")), 1)
	all := devs(semantic.AllowByDefault, "c 1:3 r")
	require.NoError(t, g.Apply(t.Context(), &semantic.Resources{Devices: all}))
	require.Empty(t, programs(t, filepath.Join(dir, "g")), "a list that allows everything needs no program")
	r, err := g.Resources(t.Context())
	require.NoError(t, err)
	sameDevices(t, all, r.Devices)
}

// TestDevicesAcrossDrivers stands a second driver on the same root while
// the first is still open (a cgsem command run beside a daemon): each
// reads back the list the other set last, and takes over the other's
// program to change it, so the group never holds two of cgsem's.
func TestDevicesAcrossDrivers(t *testing.T) {
	h := newHarness(t, nil)
	d1, dir := hostDriver(t, nil)
	ctx := t.Context()
	web := filepath.Join(dir, "web")
	first := devs(semantic.DenyByDefault, "c 1:3 rwm", "b 8:* r")
	g1 := create(t, d1, "web", &semantic.Resources{Devices: first})

	d2, err := v2.New(semantic.Options{Root: filepath.Join(h.cgroup, filepath.Base(dir)), Settings: map[string]string{"mount": h.mount}})
	require.NoError(t, err)
	defer d2.Close()
	g2, err := d2.Open(ctx, semantic.MustPath("web"))
	require.NoError(t, err)

	readsBack := func(g semantic.Group, want *semantic.Devices) {
		t.Helper()
		r, err := g.Resources(ctx)
		require.NoError(t, err)
		sameDevices(t, want, r.Devices)
	}
	readsBack(g2, first)
	prev := programs(t, web)
	for i, step := range []struct {
		by, other semantic.Group
		list      *semantic.Devices
	}{
		{g2, g1, devs(semantic.DenyByDefault, "c 1:5 rw")},
		{g1, g2, devs(semantic.DenyByDefault, "c 1:7 r")},
		{g2, g1, devs(semantic.AllowByDefault, "c 1:3 r")},
	} {
		require.NoError(t, step.by.Apply(ctx, &semantic.Resources{Devices: step.list}), "step %d", i)
		now := programs(t, web)
		if step.list.Default == semantic.AllowByDefault {
			require.Empty(t, now, "step %d: a list that allows everything lifts the other's program", i)
		} else {
			require.Len(t, now, 1, "step %d: the other's program was replaced, not joined", i)
			require.NotEqual(t, prev, now, "step %d", i)
		}
		prev = now
		readsBack(step.by, step.list)
		readsBack(step.other, step.list)
	}

	// Closing the first driver leaves the group as it is.
	require.NoError(t, d1.Close())
	readsBack(g2, devs(semantic.AllowByDefault))
	require.NoError(t, g2.Delete(ctx, nil))
}

// TestDevicesForeignProgram checks a program another manager attached is
// never detached, and is not passed off as the driver's list.
func TestDevicesForeignProgram(t *testing.T) {
	d, dir := hostDriver(t, nil)
	ctx := t.Context()
	g := create(t, d, "g", nil)
	fd := cgroupFD(t, filepath.Join(dir, "g"))
	p, err := devfilter.Compile(devs(semantic.AllowByDefault, "!c 1:5 w"))
	require.NoError(t, err)
	l, err := devfilter.Load(ctx, p)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, devfilter.Attach(fd, l))

	r, err := g.Resources(ctx)
	require.NoError(t, err)
	require.Nil(t, r.Devices, "another manager's rules cannot be read back, and are not reported as something else")

	list := devs(semantic.DenyByDefault, "c 1:3 rwm", "c 1:5 rwm")
	require.NoError(t, g.Apply(ctx, &semantic.Resources{Devices: list}))
	ids := programs(t, filepath.Join(dir, "g"))
	require.Len(t, ids, 2)
	require.Contains(t, ids, l.ID())
	r, err = g.Resources(ctx)
	require.NoError(t, err)
	sameDevices(t, list, r.Devices)

	require.NoError(t, g.Apply(ctx, &semantic.Resources{Devices: devs(semantic.AllowByDefault)}))
	require.Equal(t, []uint32{l.ID()}, programs(t, filepath.Join(dir, "g")), "the driver detached a program it did not attach")
}

func TestPlanIsWhatApplyDoes(t *testing.T) {
	h := newHarness(t, nil)
	d, dir := hostDriver(t, nil)
	ctx := t.Context()
	g := create(t, d, "a/b", nil)
	list := devs(semantic.DenyByDefault, "c 1:3 rwm")

	plan, err := g.Plan(ctx, &semantic.Resources{Devices: list})
	require.NoError(t, err)
	require.Equal(t, "attach device program deny; allow c 1:3 rwm\n", plan.String())

	plan, err = g.Plan(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, plan.Steps)

	if !h.has("memory") {
		_, err := g.Plan(ctx, &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(64 << 20))}})
		require.ErrorIs(t, err, semantic.ErrNotSupported)
		require.ErrorContains(t, err, "memory.max")
		t.Skip("no memory controller below the test's cgroup: the controller part runs in the VM lane")
	}
	req := &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.Bytes(64<<20 + 1))}, Pids: &semantic.Pids{Max: ptr(semantic.Count(9))}}
	plan, err = g.Plan(ctx, req)
	require.NoError(t, err)
	require.Equal(t, "write ../../cgroup.subtree_control +memory +pids\n"+
		"write ../cgroup.subtree_control +memory +pids\n"+
		"write memory.max 67108864\n"+
		"write pids.max 9\n", plan.String())
	ctl, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(string(ctl)), "Plan enabled a controller")

	require.NoError(t, g.Apply(ctx, req))
	ctl, err = os.ReadFile(filepath.Join(dir, "a", "cgroup.subtree_control"))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"memory", "pids"}, strings.Fields(string(ctl)))
	plan, err = g.Plan(ctx, req)
	require.NoError(t, err)
	require.Equal(t, "write memory.max 67108864\nwrite pids.max 9\n", plan.String(), "enabled controllers are not enabled again")
}

func ptr[T any](v T) *T { return &v }

func TestThreaded(t *testing.T) {
	d, dir := hostDriver(t, map[string]string{"threaded": "true"})
	ctx := t.Context()
	caps := d.Capabilities()
	require.True(t, caps.Supports(semantic.Threads))
	require.False(t, caps.Supports(semantic.MemoryMax))
	require.Contains(t, caps.Get(semantic.MemoryMax).Reason, "threaded")

	top := create(t, d, "t", nil)
	a, b := create(t, d, "t/a", nil), create(t, d, "t/b", nil)
	for _, g := range []string{"t", "t/a", "t/b"} {
		typ, err := os.ReadFile(filepath.Join(dir, g, "cgroup.type"))
		require.NoError(t, err)
		require.Equal(t, "threaded", strings.TrimSpace(string(typ)), g)
	}
	p := newHelper(t, "sleep").start()
	// No leaf rule in a threaded subtree: t has children and takes a
	// process.
	require.NoError(t, top.AddProcess(ctx, p.pid()))
	require.NoError(t, a.AddProcess(ctx, p.pid()))
	tids := threads(t, p.pid())
	require.Greater(t, len(tids), 1, "a Go process has several threads")
	tid := tids[len(tids)-1]
	require.NoError(t, b.AddThread(ctx, tid))
	got, err := os.ReadFile(filepath.Join(dir, "t/b", "cgroup.threads"))
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(tid), strings.TrimSpace(string(got)))
	for _, g := range []semantic.Group{a, b} {
		pids, err := g.Processes(ctx)
		require.NoError(t, err)
		require.Equal(t, []int{p.pid()}, pids, "%s lists the process of its threads", g.Path())
	}

	outside := newHelper(t, "sleep").start()
	err = b.AddThread(ctx, threads(t, outside.pid())[0])
	require.ErrorIs(t, err, semantic.ErrInvalid, "a thread of a process outside the subtree")
	require.ErrorIs(t, b.AddThread(ctx, 0), semantic.ErrInvalid)

	// A threaded subtree's cgroup.procs cannot be read: Kill finds the
	// threads instead, and a SIGKILL to one ends the process.
	require.NoError(t, top.Kill(ctx))
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("the process in the threaded subtree outlived Kill") // a liveness bound
	}
	require.Equal(t, "signal: killed", p.cmd.ProcessState.String())
}

func TestThreadsNeedTheSetting(t *testing.T) {
	d, _ := hostDriver(t, nil)
	g := create(t, d, "g", nil)
	err := g.AddThread(t.Context(), os.Getpid())
	require.ErrorIs(t, err, semantic.ErrNotSupported)
	require.ErrorContains(t, err, "threaded=true")
}

func TestStatsHeldAcrossCalls(t *testing.T) {
	d, _ := hostDriver(t, nil)
	ctx := t.Context()
	g := create(t, d, "s", nil)
	p := newHelper(t, "sleep").start()
	require.NoError(t, g.AddProcess(ctx, p.pid()))
	var last time.Duration
	for range 3 {
		st, err := g.Stats(ctx)
		require.NoError(t, err)
		require.NotNil(t, st.CPU, "cpu.stat is a core file of every group")
		require.NotNil(t, st.CPU.Usage)
		require.GreaterOrEqual(t, *st.CPU.Usage, last, "cumulative CPU time went back")
		last = *st.CPU.Usage
		if d.Capabilities().Supports(semantic.StatsPressure) {
			require.NotNil(t, st.Pressure)
			require.NotNil(t, st.Pressure.CPU)
		}
		if !d.Capabilities().Supports(semantic.MemoryMax) {
			require.Nil(t, st.Memory, "no memory controller, no memory figures")
		}
	}
	require.NoError(t, g.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
	_, err := g.Stats(ctx)
	require.ErrorIs(t, err, semantic.ErrNotExist)
}

func TestOptions(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		name string
		opts semantic.Options
		kind error
		msg  string
	}{
		{"UnknownSetting", semantic.Options{Settings: map[string]string{"colour": "blue"}}, semantic.ErrInvalid, "unknown setting"},
		{"BadThreaded", semantic.Options{Settings: map[string]string{"threaded": "sometimes"}}, semantic.ErrInvalid, "threaded"},
		{"NotAMount", semantic.Options{Settings: map[string]string{"mount": "/proc"}}, semantic.ErrInvalid, "not a cgroup2 mount point"},
		{"MissingRoot", semantic.Options{Root: filepath.Join(h.cgroup, "cgsem-test-missing"), Settings: map[string]string{"mount": h.mount}}, semantic.ErrNotExist, "cgsem-test-missing"},
		{"DotDotRoot", semantic.Options{Root: "/a/../b", Settings: map[string]string{"mount": h.mount}}, semantic.ErrInvalid, ".."},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := v2.New(c.opts)
			require.ErrorIs(t, err, c.kind)
			require.ErrorContains(t, err, c.msg)
			var se *semantic.Error
			require.ErrorAs(t, err, &se)
			require.Equal(t, v2.Name, se.Driver)
		})
	}
	t.Run("Self", func(t *testing.T) {
		d, err := v2.New(semantic.Options{Root: semantic.RootSelf, Settings: map[string]string{"mount": h.mount}})
		require.NoError(t, err)
		defer d.Close()
		require.Equal(t, h.own, d.Dir(semantic.Root))
		require.Equal(t, h.cgroup, d.CgroupPath(semantic.Root))
	})
}

func TestTraceLogging(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &syncWriter{w: &buf}})
	h := newHarness(t, nil)
	s, dir := h.newDriver(t)
	s.Close()
	d, err := v2.New(semantic.Options{Root: filepath.Join(h.cgroup, filepath.Base(dir)), Logger: log, Settings: map[string]string{"mount": h.mount}})
	require.NoError(t, err)
	defer d.Close()
	ctx := t.Context()
	g, err := d.Create(ctx, semantic.MustPath("logged"), &semantic.Resources{Devices: devs(semantic.DenyByDefault, "c 1:3 rwm")})
	require.NoError(t, err)
	require.NoError(t, g.Freeze(ctx))
	require.NoError(t, g.Thaw(ctx))
	require.NoError(t, g.Delete(ctx, nil))
	out := buf.String()
	for _, want := range []string{
		"[TRACE] v2: mkdir: dir=" + filepath.Join(dir, "logged"),
		"[TRACE] v2.devfilter: loaded device program",
		"attached device program",
		"[TRACE] v2: write: file=" + filepath.Join(dir, "logged", "cgroup.freeze") + " value=1",
		"[TRACE] v2: rmdir: dir=" + filepath.Join(dir, "logged"),
	} {
		require.Contains(t, out, want)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestFaultsSeeEveryChange(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	hook := func(op, name, value string) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, op+" "+name)
		if op == "attach" && strings.HasSuffix(name, "refused") {
			return unix.EPERM
		}
		return nil
	}
	d, dir := hostDriver(t, nil, v2.WithFaults(hook))
	ctx := t.Context()
	list := &semantic.Resources{Devices: devs(semantic.DenyByDefault, "c 1:3 rwm")}
	create(t, d, "x/y", list)
	_, err := d.Create(ctx, semantic.MustPath("x/refused"), list)
	require.ErrorIs(t, err, unix.EPERM)
	require.ErrorIs(t, err, semantic.ErrPermission)
	require.NoDirExists(t, filepath.Join(dir, "x/refused"), "a failed Create left its group")
	require.DirExists(t, filepath.Join(dir, "x"), "a failed Create removed a level it did not make")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"mkdir x", "mkdir x/y", "attach x/y",
		"mkdir x/refused", "attach x/refused", "rmdir x/refused",
	}, seen)
}

// Kill leaves the subtree thawed and the group startable: a group left
// frozen, or one that cgroup.kill marked (the kernel then SIGKILLs every
// child clone3 places into it), would take the next Start's process
// before its first instruction, so the helper below would never say
// "ready".
func TestKillLeavesGroupThawedAndStartable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frozen []string // frozen, in order, before the kill
	}{
		{name: "running"},
		{name: "group frozen", frozen: []string{"k"}},
		{name: "child frozen on its own", frozen: []string{"k/c"}},
		{name: "both frozen", frozen: []string{"k/c", "k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dir := hostDriver(t, nil)
			ctx := t.Context()
			k := create(t, d, "k", nil)
			c := create(t, d, "k/c", nil)
			victim := newHelper(t, "sleep").start()
			require.NoError(t, c.AddProcess(ctx, victim.pid()))
			for _, p := range tc.frozen {
				g, err := d.Open(ctx, semantic.MustPath(p))
				require.NoError(t, err)
				require.NoError(t, g.Freeze(ctx))
			}
			require.NoError(t, k.Kill(ctx))
			select {
			case <-victim.done:
			case <-time.After(time.Minute):
				t.Fatalf("pid %d outlived Kill", victim.pid())
			}
			for _, p := range []string{"k", "k/c"} {
				b, err := os.ReadFile(filepath.Join(dir, p, "cgroup.freeze"))
				require.NoError(t, err)
				require.Equal(t, "0", strings.TrimSpace(string(b)), "cgroup.freeze of %s after Kill", p)
			}
			next := newHelper(t, "sleep")
			require.NoError(t, c.Start(ctx, next.cmd))
			next.started()
			require.Equal(t, []int{next.pid()}, procsOf(t, filepath.Join(dir, "k/c")))
		})
	}
}
