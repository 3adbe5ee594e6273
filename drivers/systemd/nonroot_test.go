package systemd

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/semantic"
)

// On systemd, who may change a unit is decided by the bus policy and
// polkit, not by file modes: a caller that is not root and that polkit
// does not authorize (there is no polkit in the container) is refused
// every method that changes a unit. TestNonRootDenied proves that the
// driver, used by such a caller, fails every change with ErrPermission
// and a message naming the method and the unit, and that nothing changed.
//
// It runs in three processes: the test here boots systemd in namespaces
// and runs its copy inside as root (insideEnv); that copy makes the
// groups and runs a third copy as nobody (nonrootSpecEnv), which tries
// every change; the root copy then checks that everything reads back as
// before.

// nonrootSpecEnv carries, to the copy of the test run as nobody, what
// root made and what it read there (a nonrootSpec in JSON).
const nonrootSpecEnv = "CGSEM_SYSTEMD_NONROOT"

// nobodyID is the unprivileged user and group the denied calls run as.
const nobodyID = 65534

// nonrootSpec is root's handover to the unprivileged copy.
type nonrootSpec struct {
	Mode    string // sdns mode: the freezer is cgroup2's, refused on hybrid before any call
	Root    string // the driver's root slice
	HeldPID int    // the process root started in held
	Before  snapshot
}

// The groups root makes: held has a process, idle has none (so Delete
// and AddProcess reach their D-Bus calls rather than a refusal for
// processes, or an attach to a running scope).
var (
	heldPath = semantic.MustPath("held")
	idlePath = semantic.MustPath("idle")
)

func TestNonRootDenied(t *testing.T) {
	if spec := os.Getenv(nonrootSpecEnv); spec != "" {
		deniedAsNobody(t, spec)
		return
	}
	if os.Getenv(insideEnv) != "" {
		deniedInside(t)
		return
	}
	for _, c := range []struct{ name, mode string }{
		{"Hybrid", sdns.ModeHybrid},
		{"Unified", sdns.ModeUnified},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := startContainer(t, c.mode)
			runInside(t, in, "TestNonRootDenied")
		})
	}
}

// snapshot is what root reads of its groups, to compare before and after
// the denied calls: read-backs as JSON, processes, children, the units
// below the root slice whatever their state, and the cgroup directories
// below it in every hierarchy.
type snapshot struct {
	Resources map[string]string
	Processes map[string][]int
	Children  []string
	Units     []string
	Cgroups   []string
}

func takeSnapshot(t *testing.T, d *Driver) snapshot {
	t.Helper()
	ctx := t.Context()
	s := snapshotReads(t, d)
	prefix := strings.TrimSuffix(d.names.root, sliceSuffix)
	us, err := d.bus.listUnits(ctx, prefix+"-*", prefix+scopeSuffix)
	require.NoError(t, err)
	for _, u := range us {
		s.Units = append(s.Units, u.Name+" "+u.ActiveState+"/"+u.SubState)
	}
	slices.Sort(s.Units)
	cg := d.sliceCgroupOf(d.names.root)
	tops := []string{(&observer{layout: d.host.layout}).trackingRoot()}
	if d.host.layout != layoutUnified {
		for ctrl := range d.host.controllers {
			tops = append(tops, filepath.Join("/sys/fs/cgroup", ctrl))
		}
	}
	for _, top := range tops {
		base := filepath.Join(top, cg)
		if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
			// systemd makes a slice's group only in the hierarchies of
			// the controllers it uses; one made later shows below.
			continue
		}
		require.NoError(t, filepath.WalkDir(base, func(path string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				s.Cgroups = append(s.Cgroups, path)
			}
			return nil
		}))
	}
	slices.Sort(s.Cgroups)
	return s
}

// deniedInside runs as root inside the container: it makes the groups,
// hands them to an unprivileged copy of this test, and checks that what
// it tried left everything as it was.
func deniedInside(t *testing.T) {
	require.Zero(t, os.Geteuid(), "the copy inside runs as root")
	ctx := t.Context()
	conn := connect(t, "unix:path=/run/dbus/system_bus_socket")
	root := newRootSlice(t, conn)
	d, err := Open(semantic.Options{Root: root, Logger: hclog.New(&hclog.LoggerOptions{
		Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close()) })
	caps := d.Capabilities()

	held, err := d.Create(ctx, heldPath, rootResources(caps, 50))
	require.NoError(t, err)
	idle, err := d.Create(ctx, idlePath, rootResources(caps, 30))
	require.NoError(t, err)
	cmd := exec.Command("sleep", "3600")
	require.NoError(t, held.Start(ctx, cmd))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The test's context has ended by now.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, held.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
		assert.NoError(t, idle.Delete(ctx, nil))
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("held's process %d did not end with its group", cmd.Process.Pid)
		}
	})

	before := takeSnapshot(t, d)
	units := loadedSlicesAndScopes(t, d)
	require.Equal(t, []int{cmd.Process.Pid}, before.Processes[heldPath.String()], "root's process is in held")
	require.Equal(t, []string{"held", "idle"}, before.Children)
	spec, err := json.Marshal(nonrootSpec{Mode: os.Getenv(insideEnv), Root: root, HeldPID: cmd.Process.Pid, Before: before})
	require.NoError(t, err)

	runAsNobody(t, string(spec))

	after := takeSnapshot(t, d)
	assert.Equal(t, before, after, "the refused calls changed nothing: read-backs, processes, children, units, cgroups")
	for _, u := range loadedSlicesAndScopes(t, d) {
		assert.Contains(t, units, u, "a unit appeared during the refused calls")
	}
	select {
	case err := <-exited:
		t.Fatalf("held's process ended during the refused calls: %v", err)
	default:
	}
}

// loadedSlicesAndScopes names every slice and scope systemd has loaded,
// the driver's root or not: the kinds of unit the driver starts.
func loadedSlicesAndScopes(t *testing.T, d *Driver) []string {
	t.Helper()
	us, err := d.bus.listUnits(t.Context(), "*"+sliceSuffix, "*"+scopeSuffix)
	require.NoError(t, err)
	var out []string
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out
}

// rootResources is what root sets at Create, where supported: values
// other than the defaults and than nobodySample's, so that a change by
// the unprivileged copy would show in the read-back.
func rootResources(caps semantic.Capabilities, tasks semantic.Count) *semantic.Resources {
	r := &semantic.Resources{}
	if caps.Supports(semantic.PidsMax) {
		r.Pids = &semantic.Pids{Max: ptr(tasks)}
	}
	if caps.Supports(semantic.MemoryMax) {
		r.Memory = &semantic.Memory{Max: ptr(256 * semantic.MiB)}
	}
	if caps.Supports(semantic.CPUWeight) {
		r.CPU = &semantic.CPU{Weight: ptr[uint64](200)}
	}
	return r
}

// runAsNobody runs this test binary as nobody with spec, and fails the
// test with the copy's failures when it failed or ran nothing.
func runAsNobody(t *testing.T, spec string) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	args := []string{"-test.run=^TestNonRootDenied$", "-test.v", "-test.count=1"}
	if dl, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(dl).Truncate(time.Second).String())
	}
	cmd := exec.CommandContext(t.Context(), self, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TMPDIR=/tmp",
		nonrootSpecEnv + "=" + spec}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID, Groups: []uint32{}}}
	out, werr := cmd.CombinedOutput()
	text := string(out)
	l := parseTestLog(text)
	t.Logf("as nobody: %s", l.summarize())
	for _, name := range l.order {
		for _, line := range l.lines[name] {
			t.Logf("  %s: %s", name, line)
		}
	}
	if werr != nil {
		t.Fatalf("the run as nobody failed (%v); its failures:\n%s", werr, l.failures(text))
	}
	require.Equal(t, "PASS", l.result["TestNonRootDenied"], "the run as nobody ran the test:\n%s", text)
}

// refusal is one changing call tried as nobody and what it must give.
type refusal struct {
	name string
	call func() error
	// kind is ErrPermission for a call that reaches systemd; a call the
	// driver refuses before it asks anything has the kind of that
	// refusal, and then method is a phrase of its message.
	kind         error
	method, unit string
}

// deniedAsNobody runs as nobody: it opens the driver on root's slice and
// tries every changing call on root's groups. Each must fail: with
// ErrPermission, naming the method systemd refused and the unit, where
// it reaches systemd.
func deniedAsNobody(t *testing.T, specJSON string) {
	var spec nonrootSpec
	require.NoError(t, json.Unmarshal([]byte(specJSON), &spec))
	require.Equal(t, nobodyID, os.Geteuid(), "the denied calls run as nobody")
	ctx := t.Context()
	// AllowApproximate, so that an approximate feature's value reaches
	// systemd rather than being refused for its conversion.
	d, err := Open(semantic.Options{Root: spec.Root, AllowApproximate: true, Logger: hclog.New(&hclog.LoggerOptions{
		Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
	require.NoError(t, err, "an unprivileged user may open the driver: reading the bus is allowed")
	t.Cleanup(func() { assert.NoError(t, d.Close()) })
	caps := d.Capabilities()
	held, err := d.Open(ctx, heldPath)
	require.NoError(t, err)
	idle, err := d.Open(ctx, idlePath)
	require.NoError(t, err)

	unit := func(f func(semantic.Path) (string, error), p string) string {
		u, err := f(semantic.MustPath(p))
		require.NoError(t, err)
		return u
	}
	slice := func(p string) string { return unit(d.names.slice, p) }
	scope := func(p string) string { return unit(d.names.scope, p) }
	create := func(p string) func() error {
		return func() error {
			_, err := d.Create(ctx, semantic.MustPath(p), nil)
			return err
		}
	}
	start := func(g semantic.Group) func() error {
		return func() error {
			cmd := exec.Command("sleep", "60")
			err := g.Start(ctx, cmd)
			if err == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
			return err
		}
	}
	cases := []refusal{
		{name: "CreateTop", call: create("mine"), kind: semantic.ErrPermission, method: "StartTransientUnit", unit: slice("mine")},
		{name: "CreateTwoLevels", call: create("mine/kid"), kind: semantic.ErrPermission, method: "StartTransientUnit", unit: slice("mine")},
		{name: "CreateBelowHeld", call: create("held/mine"), kind: semantic.ErrPermission, method: "StartTransientUnit", unit: slice("held/mine")},
		{name: "AddOwnProcessToHeld", call: func() error { return held.AddProcess(ctx, os.Getpid()) },
			kind: semantic.ErrPermission, method: "AttachProcessesToUnit", unit: scope("held")},
		{name: "AddOwnProcessToIdle", call: func() error { return idle.AddProcess(ctx, os.Getpid()) },
			kind: semantic.ErrPermission, method: "StartTransientUnit", unit: scope("idle")},
		{name: "AddRootsProcessToIdle", call: func() error { return idle.AddProcess(ctx, spec.HeldPID) },
			kind: semantic.ErrPermission, method: "StartTransientUnit", unit: scope("idle")},
		{name: "StartInHeld", call: start(held), kind: semantic.ErrPermission, method: "AttachProcessesToUnit", unit: scope("held")},
		{name: "StartInIdle", call: start(idle), kind: semantic.ErrPermission, method: "StartTransientUnit", unit: scope("idle")},
		{name: "KillHeld", call: func() error { return held.Kill(ctx) }, kind: semantic.ErrPermission, method: "KillUnit", unit: scope("held")},
		{name: "DeleteIdle", call: func() error { return idle.Delete(ctx, nil) }, kind: semantic.ErrPermission, method: "StopUnit", unit: slice("idle")},
		{name: "DeleteHeldKill", call: func() error { return held.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true}) },
			kind: semantic.ErrPermission, method: "KillUnit", unit: scope("held")},
		// A group with processes is refused before anything is asked,
		// to anyone: the refusal says why.
		{name: "DeleteHeldBusy", call: func() error { return held.Delete(ctx, nil) }, kind: semantic.ErrBusy, method: "processes are in it"},
	}
	for _, op := range []struct {
		name   string
		call   func(semantic.Group, context.Context) error
		method string
	}{
		{"Freeze", semantic.Group.Freeze, "FreezeUnit"},
		{"Thaw", semantic.Group.Thaw, "ThawUnit"},
	} {
		c := refusal{name: op.name + "Held", call: func() error { return op.call(held, ctx) }, kind: semantic.ErrPermission, method: op.method, unit: slice("held")}
		if spec.Mode == sdns.ModeHybrid {
			// systemd's freezer is cgroup2's: the driver refuses it on
			// hybrid before asking.
			c.kind, c.method, c.unit = semantic.ErrNotSupported, "freeze", ""
		}
		cases = append(cases, c)
	}
	for _, f := range semantic.ResourceFeatures {
		if !caps.Supports(f) {
			continue
		}
		res, why := nobodySample(f)
		if res == nil {
			t.Errorf("%s is supported here but has no sample to try: %s", f, why)
			continue
		}
		for _, g := range []semantic.Group{held, idle} {
			// held was made without a device list, so on v1 its scope has
			// no group in the devices hierarchy, and a new list reaches
			// systemd rather than the driver's refusal for children.
			cases = append(cases, refusal{name: "Apply/" + string(f) + "/" + g.Path().String(), call: func() error { return g.Apply(ctx, res) },
				kind: semantic.ErrPermission, method: "SetUnitProperties", unit: slice(g.Path().String())})
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			require.Error(t, err, "an unprivileged caller changed something")
			t.Logf("%v", err)
			var se *semantic.Error
			require.True(t, errors.As(err, &se), "a *semantic.Error: %#v", err)
			assert.Equal(t, Name, se.Driver)
			require.ErrorIs(t, err, c.kind)
			assert.Contains(t, err.Error(), c.method)
			if c.kind != semantic.ErrPermission {
				return
			}
			assert.Contains(t, err.Error(), c.unit, "the message names the unit")
			n := dbusErrorName(err)
			assert.True(t, n == errAccessDenied || n == errAuthRequired, "systemd refused for want of permission, not %q", n)
		})
	}

	// Reads need no permission, and see root's groups as root does.
	t.Run("Reads", func(t *testing.T) {
		now := snapshotReads(t, d)
		assert.Equal(t, spec.Before.Resources, now.Resources, "read-backs as root saw them")
		assert.Equal(t, spec.Before.Processes, now.Processes, "processes as root saw them")
		assert.Equal(t, spec.Before.Children, now.Children, "children as root saw them")
		assert.Equal(t, []int{spec.HeldPID}, now.Processes[heldPath.String()], "root's process is still in held")
		st, err := held.Stats(ctx)
		require.NoError(t, err)
		if caps.Supports(semantic.PidsMax) {
			require.NotNil(t, st.Pids)
			require.NotNil(t, st.Pids.Current)
			assert.Equal(t, uint64(1), *st.Pids.Current, "held's one task")
		}
		plan, err := idle.Plan(ctx, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(99))}})
		if caps.Supports(semantic.PidsMax) {
			require.NoError(t, err)
			assert.NotEmpty(t, plan.Steps)
		} else {
			require.ErrorIs(t, err, semantic.ErrNotSupported)
		}
		kids, err := d.Children(ctx, heldPath)
		require.NoError(t, err)
		assert.Empty(t, kids)
	})
}

// snapshotReads is the part of a snapshot the driver reads.
func snapshotReads(t *testing.T, d *Driver) snapshot {
	t.Helper()
	ctx := t.Context()
	s := snapshot{Resources: map[string]string{}, Processes: map[string][]int{}}
	for _, p := range []semantic.Path{heldPath, idlePath} {
		g, err := d.Open(ctx, p)
		require.NoError(t, err)
		res, err := g.Resources(ctx)
		require.NoError(t, err)
		b, err := json.Marshal(res)
		require.NoError(t, err)
		s.Resources[p.String()] = string(b)
		pids, err := g.Processes(ctx)
		require.NoError(t, err)
		slices.Sort(pids)
		s.Processes[p.String()] = pids
	}
	kids, err := d.Children(ctx, semantic.Root)
	require.NoError(t, err)
	for _, k := range kids {
		s.Children = append(s.Children, k.String())
	}
	return s
}

// nobodySample is a request setting only f, to a value root did not set;
// nil with the reason when the host gives none.
func nobodySample(f semantic.Feature) (*semantic.Resources, string) {
	const MiB = semantic.MiB
	cpu0, _ := semantic.ParseCPUSet("0")
	switch f {
	case semantic.MemoryMax:
		return &semantic.Resources{Memory: &semantic.Memory{Max: ptr(128 * MiB)}}, ""
	case semantic.MemoryHigh:
		return &semantic.Resources{Memory: &semantic.Memory{High: ptr(96 * MiB)}}, ""
	case semantic.MemoryLow:
		return &semantic.Resources{Memory: &semantic.Memory{Low: ptr(16 * MiB)}}, ""
	case semantic.MemoryMin:
		return &semantic.Resources{Memory: &semantic.Memory{Min: ptr(8 * MiB)}}, ""
	case semantic.MemorySwap:
		return &semantic.Resources{Memory: &semantic.Memory{Max: ptr(128 * MiB), Swap: ptr(32 * MiB)}}, ""
	case semantic.CPUWeight:
		return &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](300)}}, ""
	case semantic.CPUMaxFeature:
		return &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.5}}}, ""
	case semantic.CPUSetCPUs:
		return &semantic.Resources{CPU: &semantic.CPU{Cpus: cpu0}}, ""
	case semantic.CPUSetMems:
		return &semantic.Resources{CPU: &semantic.CPU{Mems: cpu0}}, ""
	case semantic.IOWeight:
		return &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](150)}}, ""
	case semantic.IOLimits:
		dev := wholeDisk()
		if dev == nil {
			return nil, "no whole disk in /sys/block"
		}
		return &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: dev[0], Minor: dev[1], ReadBPS: uint64(MiB)}}}}, ""
	case semantic.PidsMax:
		return &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(77))}}, ""
	case semantic.DevicesFeature:
		return &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault,
			Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w)}}}, ""
	}
	return nil, "the test has no value for it"
}
