package v2_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/fake"
	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
	"github.com/cgsem/cgsem/test/reliability"
)

// The reliability checks of package test/reliability, run on this driver
// beneath the test process's own cgroup2 group. reliabilityTarget only
// reads the host's cgroup view, and does not skip: a re-executed child
// (which may run as nobody, where newHarness's root gate would skip)
// reaches the same test and must find the same Target, with nothing made
// for it.

// v2SettingsFiles hold every setting the driver writes to a file; the
// fault matrix compares them byte for byte before and after a failed
// apply. A group has only the files of the controllers it is given, so
// on a host whose cgroup2 hands down none only cgroup.subtree_control is
// there. Device lists live in a BPF program and an extended attribute,
// not in a file: they are compared through the driver's read-back.
var v2SettingsFiles = []string{
	"memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max",
	"cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems",
	"io.weight", "io.max", "pids.max",
	"hugetlb.2MB.max", "hugetlb.1GB.max",
	"cgroup.subtree_control", "cgroup.freeze",
}

// reliabilityHost is newHarness without its gate: the host as this
// process sees it, or nil when its own cgroup2 group is not visible
// (Target.Require skips then, in the parent).
func reliabilityHost(t *testing.T) *host {
	hs := testenv.LoadHost(t)
	own, ok, _ := hs.SelfDir("")
	if !ok {
		return nil
	}
	h := &host{own: own}
	for _, e := range hs.Self {
		if e.IsV2() {
			h.cgroup = e.Path
		}
	}
	for _, m := range hs.Mounts {
		if m.FSType == "cgroup2" && strings.HasPrefix(own, m.MountPoint) && len(m.MountPoint) > len(h.mount) {
			h.mount = m.MountPoint
		}
	}
	if b, err := os.ReadFile(filepath.Join(own, "cgroup.subtree_control")); err == nil {
		h.controllers = strings.Fields(string(b))
	}
	return h
}

// countingInjector is the conformance injector that also counts every
// consultation, so the fault matrix can check that a failed apply stopped
// at the failed change.
type countingInjector struct {
	injector
	n atomic.Int64
}

func (c *countingInjector) hook(op, name, value string) error {
	c.n.Add(1)
	return c.injector.hook(op, name, value)
}

func reliabilityTarget(t *testing.T) reliability.Target {
	h := reliabilityHost(t)
	tg := reliability.Target{
		Require: func(t *testing.T) {
			testenv.RequireCgroup2(t)
			if h == nil || h.mount == "" {
				t.Skip("needs cgroup2: no cgroup2 mount shows this process's own group")
			}
		},
		Open: func(opts semantic.Options) (semantic.Driver, error) { return v2.New(opts) },
		Dirs: func(d semantic.Driver, p semantic.Path) []string { return []string{d.(*v2.Driver).Dir(p)} },
		// Changes to the kernel go through one seam: cgroupfs's writes,
		// mkdirs and rmdirs, and the device program attach.
		SettingsFiles: v2SettingsFiles,
		Delegate:      delegateV2,
		// cgroup2 lets a delegated user move processes only within its
		// subtree.
		Contained: true,
		// The driver keeps the leaf rule whatever the host enables (see
		// checkLeaf).
		LeafRule: true,
		// Files of a group a delegated user creates are that user's, so
		// every controller setting works inside the subtree; a device
		// program needs CAP_SYS_ADMIN (loading and attaching BPF), which
		// delegation cannot give.
		Delegated: slices.DeleteFunc(slices.Clone(semantic.ResourceFeatures),
			func(f semantic.Feature) bool { return f == semantic.DevicesFeature }),
	}
	if h == nil {
		return tg
	}
	tg.BusyRoot = len(h.controllers) > 0
	var (
		mu        sync.Mutex
		injectors = map[semantic.Driver]*countingInjector{}
	)
	injectorOf := func(d semantic.Driver) *countingInjector {
		mu.Lock()
		defer mu.Unlock()
		return injectors[d]
	}
	rootDir := func(d semantic.Driver) string { return d.(*v2.Driver).Dir(semantic.Root) }
	hc := h.harness()
	hc.NewDriver = func(t *testing.T) semantic.Driver {
		in := &countingInjector{}
		d, _ := h.newDriver(t, v2.WithFaults(in.hook))
		mu.Lock()
		injectors[d] = in
		mu.Unlock()
		t.Cleanup(func() {
			mu.Lock()
			delete(injectors, d)
			mu.Unlock()
		})
		return d
	}
	hc.InjectFault = func(d semantic.Driver, nth int, err error) bool {
		in := injectorOf(d)
		if in == nil {
			return false
		}
		in.arm(nth, err)
		return true
	}
	hc.Observer = devicesObserver{observer{dirOf: rootDir}}
	hc.Leaks = func(d semantic.Driver) []string {
		leaks, err := testenv.Leaks(rootDir(d))
		if err != nil {
			return []string{err.Error()}
		}
		return leaks
	}
	tg.Harness = hc
	tg.Oracle = func(t *testing.T, real semantic.Driver) semantic.Driver {
		var unsupported []semantic.Feature
		caps := real.Capabilities()
		for _, f := range semantic.AllFeatures() {
			if caps.Get(f).Support != semantic.Exact {
				unsupported = append(unsupported, f)
			}
		}
		d := fake.New(fake.Options{HostCPUs: hc.CPUs, HostMems: hc.Mems, Unsupported: unsupported})
		t.Cleanup(func() { d.Close() })
		return leafOracle{d}
	}
	tg.Changes = func(d semantic.Driver) int64 { return injectorOf(d).n.Load() }
	tg.NewRoot = func(t *testing.T) semantic.Options {
		s := testenv.NewScratch(t, "")
		return semantic.Options{Root: filepath.Join(h.cgroup, s.Name), Settings: map[string]string{"mount": h.mount}}
	}
	return tg
}

// delegateV2 hands the root to uid as cgroup2 delegation does
// (Documentation/admin-guide/cgroup-v2.rst, "Delegation Containment"):
// the directory, so the owner can make and remove groups below it, and
// the files that move processes and threads and enable controllers for
// its children. Groups the owner makes below are its own: the kernel
// gives a new cgroup's files to its creator.
func delegateV2(t *testing.T, d semantic.Driver, uid, gid int) {
	dir := d.(*v2.Driver).Dir(semantic.Root)
	for _, name := range []string{"", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"} {
		require.NoError(t, os.Chown(filepath.Join(dir, name), uid, gid))
	}
}

func TestReliabilityFaultMatrix(t *testing.T) {
	reliability.FaultMatrix(t, reliabilityTarget(t))
}

func TestReliabilityDifferential(t *testing.T) {
	reliability.Differential(t, reliabilityTarget(t))
}

func TestReliabilityConcurrency(t *testing.T) {
	reliability.Concurrency(t, reliabilityTarget(t))
}

func TestReliabilityRestart(t *testing.T) {
	reliability.Restart(t, reliabilityTarget(t))
}

func TestReliabilitySymlinks(t *testing.T) {
	reliability.Symlinks(t, reliabilityTarget(t))
}

func TestReliabilityNonRoot(t *testing.T) {
	reliability.NonRoot(t, reliabilityTarget(t))
}

// devicesObserver is the conformance observer that also sees a group's
// device list: the list the driver recorded on the directory, taken only
// once the kernel confirms that the one program attached to the group is
// the recorded one and runs exactly that list's compiled instructions. A
// group with no program attached grants everything.
type devicesObserver struct{ observer }

func (o devicesObserver) Resources(t *testing.T, d semantic.Driver, p semantic.Path, fs []semantic.Feature) *semantic.Resources {
	r := o.observer.Resources(t, d, p, fs)
	if slices.Contains(fs, semantic.DevicesFeature) {
		r.Devices = o.devices(t, o.dir(d, p))
	}
	return r
}

func (o devicesObserver) devices(t *testing.T, dir string) *semantic.Devices {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err, "observer")
	defer unix.Close(fd)
	ids, err := devfilter.Query(fd)
	require.NoError(t, err, "observer: query %s", dir)
	if len(ids) == 0 {
		return &semantic.Devices{Default: semantic.AllowByDefault}
	}
	require.Len(t, ids, 1, "observer: programs on %s", dir)
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(dir, "trusted.cgsem.devices", buf)
	require.NoError(t, err, "observer: a program is attached to %s, but no list is recorded", dir)
	rec := parseDevicesRecord(t, dir, string(buf[:n]))
	require.Equal(t, ids[0], rec.Program, "observer: the program attached to %s is not the recorded one", dir)
	prog, err := devfilter.Compile(rec.Devices)
	require.NoError(t, err, "observer: recorded list of %s", dir)
	runs, err := devfilter.Runs(ids[0], prog)
	require.NoError(t, err, "observer")
	require.True(t, runs, "observer: program %d on %s does not run the recorded list %v", ids[0], dir, rec.Devices)
	return rec.Devices
}

// devicesRecord is the observer's own reading of the driver's record: a
// line "program ID", a line "default POLICY", then one "allow|deny RULE"
// line per rule.
type devicesRecord struct {
	Program uint32
	Devices *semantic.Devices
}

func parseDevicesRecord(t *testing.T, dir, text string) devicesRecord {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 2, "observer: record of %s: %q", dir, text)
	var rec devicesRecord
	_, err := fmt.Sscanf(lines[0], "program %d", &rec.Program)
	require.NoError(t, err, "observer: record of %s: %q", dir, lines[0])
	def, ok := strings.CutPrefix(lines[1], "default ")
	require.True(t, ok, "observer: record of %s: %q", dir, lines[1])
	rec.Devices = &semantic.Devices{Default: semantic.DevicePolicy(def)}
	for _, line := range lines[2:] {
		verb, spec, _ := strings.Cut(line, " ")
		rule, err := semantic.ParseDeviceRule(spec, verb == "allow")
		require.NoError(t, err, "observer: record of %s: %q", dir, line)
		require.Contains(t, []string{"allow", "deny"}, verb, "observer: record of %s: %q", dir, line)
		rec.Devices.Rules = append(rec.Devices.Rules, rule)
	}
	return rec
}

// leafOracle is the fake with cgroup v2's leaf rule, as this driver keeps
// it on every host (see checkLeaf): below the root a group with child
// groups takes no process, and a group holding processes gets no child.
// The fake has no such rule, and the differential sequences break it
// freely; the checks come in the driver's order (request, then rule, then
// existence; a non-positive pid before the rule).
type leafOracle struct{ semantic.Driver }

func busy(op string, p semantic.Path, why string) error {
	return &semantic.Error{Driver: fake.Name, Op: op, Group: p.Display(), Kind: semantic.ErrBusy, Err: errors.New(why)}
}

func (o leafOracle) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	if parent := p.Parent(); !p.IsRoot() && !parent.IsRoot() {
		if pg, err := o.Driver.Open(ctx, parent); err == nil {
			pids, err := pg.Processes(ctx)
			if err != nil {
				return nil, err
			}
			if len(pids) > 0 {
				if _, err := pg.Plan(ctx, res); res != nil && err != nil {
					return nil, err
				}
				return nil, busy("create", p, "the parent holds processes (the leaf rule)")
			}
		}
	}
	g, err := o.Driver.Create(ctx, p, res)
	if err != nil {
		return nil, err
	}
	return leafGroup{g, o.Driver}, nil
}

func (o leafOracle) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	g, err := o.Driver.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	return leafGroup{g, o.Driver}, nil
}

type leafGroup struct {
	semantic.Group
	d semantic.Driver
}

// leaf refuses a process for a group below the root with children.
func (g leafGroup) leaf(ctx context.Context, op string) error {
	if g.Path().IsRoot() {
		return nil
	}
	kids, err := g.d.Children(ctx, g.Path())
	if err != nil || len(kids) == 0 {
		return nil // the fake reports a missing group itself
	}
	return busy(op, g.Path(), fmt.Sprintf("the group has children %v (the leaf rule)", kids))
}

func (g leafGroup) AddProcess(ctx context.Context, pid int) error {
	if pid > 0 {
		if err := g.leaf(ctx, "add process"); err != nil {
			return err
		}
	}
	return g.Group.AddProcess(ctx, pid)
}

func (g leafGroup) Start(ctx context.Context, cmd *exec.Cmd) error {
	if err := g.leaf(ctx, "start"); err != nil {
		return err
	}
	return g.Group.Start(ctx, cmd)
}
