package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/semantic"
)

// Target is a driver as the reliability checks see it. Harness.NewDriver
// is required; every other field is optional, and a check that needs a
// missing one skips saying which.
type Target struct {
	// Harness gives fresh drivers on fresh roots, the fault seam, the
	// independent observer, the leak check and the host's CPU and memory
	// node sets and block device.
	Harness conformance.Harness

	// Require skips the test when the host cannot run the driver (root,
	// hierarchies). It runs in the parent process only, before anything
	// else.
	Require func(t *testing.T)

	// NewRoot makes a fresh, empty root and returns the Options that open
	// a driver on it, registering with t.Cleanup what removes it (and
	// checks it for leaks). Open opens a driver on such Options, in this
	// process or in a child. Restart, Symlinks and NonRoot need both.
	NewRoot func(t *testing.T) semantic.Options
	Open    func(opts semantic.Options) (semantic.Driver, error)

	// Dirs lists the backend directories of group p (one per hierarchy;
	// p may be semantic.Root), for the checks that read or tamper with
	// them directly.
	Dirs func(d semantic.Driver, p semantic.Path) []string

	// SettingsFiles are the attribute files that hold a group's settings
	// (as named inside a group's directory). FaultMatrix reads them from
	// every directory Dirs lists and compares them byte for byte.
	SettingsFiles []string

	// RetriesEINTR says the fault seam sits below the driver's EINTR retry
	// (cgroupfs's Faults hook): an injected EINTR is retried like a real
	// one and the apply succeeds. Without it the EINTR column is skipped.
	RetriesEINTR bool

	// Changes counts the backend changes the fault seam has seen on d so
	// far (each consultation, retries included), or is nil. With it,
	// FaultMatrix also checks that a failed apply stopped at the failed
	// write and that an EINTR was retried through the seam.
	Changes func(d semantic.Driver) int64

	// Delegate hands the subtree below d's root to uid and gid as cgroup
	// delegation does (the root's directories and the files that move
	// processes). d is a privileged driver opened on that root.
	Delegate func(t *testing.T, d semantic.Driver, uid, gid int)
	// Delegated lists the resource features an owner of a delegated
	// subtree can set; NonRoot checks that each works and that the others
	// fail with ErrPermission.
	Delegated []semantic.Feature
	// Contained says a delegated user may move a process only between
	// groups of its subtree (cgroup2's "Delegation Containment": a
	// migration, clone3's CLONE_INTO_CGROUP included, needs write access
	// to cgroup.procs of the common ancestor of source and destination).
	// NonRoot's delegated child then runs from a group inside the
	// subtree, made for it beside the ones it makes, as a delegated
	// service manager runs inside its own subtree.
	Contained bool

	// LeafRule says the driver keeps cgroup v2's no-internal-processes
	// rule below its root: a group with child groups takes no process
	// (ErrBusy), and a group holding processes gets no child (ErrBusy).
	// Concurrency's model predicts those refusals with it.
	LeafRule bool
	// BusyRoot says the root takes no process once a group below uses a
	// controller, and gets no controller enabled while it holds one
	// (cgroup2 with controllers handed down: the kernel's rule at the
	// driver's root, which the driver leaves to the caller).
	// Differential then adds processes only below the root.
	BusyRoot bool
	// FrozenKillBusy says a task frozen by an ancestor does not die of
	// SIGKILL until that ancestor thaws (cgroup v1's freezer), so the
	// driver refuses Kill, and Delete with Kill, of a populated group below
	// a frozen ancestor with ErrBusy, changing nothing. Differential then
	// expects that refusal from the driver alone (the oracle would kill);
	// without it the driver must kill there as the oracle does.
	FrozenKillBusy bool

	// Oracle returns the fake driver configured as the reference for this
	// target (same page size, host sets, and unsupported features).
	// Differential needs it.
	Oracle func(t *testing.T, real semantic.Driver) semantic.Driver
}

func (tg *Target) require(t *testing.T) {
	t.Helper()
	if tg.Require != nil {
		tg.Require(t)
	}
}

// newDriver is Harness.NewDriver with two cleanups, registered after the
// harness's own (so they run first): one deletes every group the test
// left below the root, killing what is inside, then the harness's leak
// check reports anything a failed Delete left.
func (tg *Target) newDriver(t *testing.T) semantic.Driver {
	t.Helper()
	d := tg.Harness.NewDriver(t)
	require.NotNil(t, d, "Harness.NewDriver returned nil")
	if leaks := tg.Harness.Leaks; leaks != nil {
		t.Cleanup(func() {
			if l := leaks(d); len(l) > 0 {
				t.Errorf("left below the root after tidying: %q", l)
			}
		})
	}
	t.Cleanup(func() { tidy(t, d) })
	return d
}

// tidy deletes every group below d's root.
func tidy(t *testing.T, d semantic.Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	kids, err := d.Children(ctx, semantic.Root)
	if err != nil {
		t.Errorf("tidy: children of the root: %v", err)
		return
	}
	for _, k := range kids {
		g, err := d.Open(ctx, k)
		if err == nil {
			err = g.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true})
		}
		if err != nil && !errors.Is(err, semantic.ErrNotExist) {
			t.Errorf("tidy: delete %s: %v", k, err)
		}
	}
}

// deadline is how long any one check may run its operations before a
// hang counts as a deadlock.
const deadline = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// changes is Changes, or -1 without it.
func (tg *Target) changes(d semantic.Driver) int64 {
	if tg.Changes == nil {
		return -1
	}
	return tg.Changes(d)
}

func (tg *Target) pageSize() uint64 {
	if tg.Harness.PageSize != 0 {
		return tg.Harness.PageSize
	}
	return uint64(os.Getpagesize())
}

func (tg *Target) cpus() semantic.CPUSet {
	if tg.Harness.CPUs != nil {
		return tg.Harness.CPUs
	}
	return semantic.CPUSet{0}
}

func (tg *Target) mems() semantic.CPUSet {
	if tg.Harness.Mems != nil {
		return tg.Harness.Mems
	}
	return semantic.CPUSet{0}
}

func exact(caps semantic.Capabilities, f semantic.Feature) bool {
	return caps.Get(f).Support == semantic.Exact
}

// fullPair returns two requests that each set every exact resource
// feature the driver has, with every value different between them (where
// the host leaves a choice), so applying one over the other writes every
// field. skipped says which features are left out and why.
func (tg *Target) fullPair(caps semantic.Capabilities) (a, b *semantic.Resources, skipped []string) {
	const MiB = semantic.MiB
	a, b = &semantic.Resources{}, &semantic.Resources{}
	mem := func(r *semantic.Resources) *semantic.Memory {
		if r.Memory == nil {
			r.Memory = &semantic.Memory{}
		}
		return r.Memory
	}
	cpu := func(r *semantic.Resources) *semantic.CPU {
		if r.CPU == nil {
			r.CPU = &semantic.CPU{}
		}
		return r.CPU
	}
	io := func(r *semantic.Resources) *semantic.IO {
		if r.IO == nil {
			r.IO = &semantic.IO{}
		}
		return r.IO
	}
	for _, f := range semantic.ResourceFeatures {
		if !exact(caps, f) {
			skipped = append(skipped, fmt.Sprintf("%s: %s", f, caps.Get(f).Support))
			continue
		}
		switch f {
		case semantic.MemoryMax:
			// b raises the limit, so a driver that orders memory and
			// memsw writes has both orders exercised between a and b.
			mem(a).Max, mem(b).Max = ptr(256*MiB+123), ptr(512*MiB)
		case semantic.MemoryHigh:
			mem(a).High, mem(b).High = ptr(192*MiB), ptr(384*MiB+77)
		case semantic.MemoryLow:
			mem(a).Low, mem(b).Low = ptr(64*MiB), ptr(32*MiB+5)
		case semantic.MemoryMin:
			mem(a).Min, mem(b).Min = ptr(8*MiB), ptr(16*MiB+3)
		case semantic.MemorySwap:
			mem(a).Swap, mem(b).Swap = ptr(128*MiB), ptr(256*MiB+9)
		case semantic.CPUWeight:
			cpu(a).Weight, cpu(b).Weight = ptr[uint64](200), ptr[uint64](300)
		case semantic.CPUMaxFeature:
			cpu(a).Max = &semantic.CPUMax{CPUs: 0.5}
			cpu(b).Max = &semantic.CPUMax{CPUs: 1.5, Period: 50 * time.Millisecond}
		case semantic.CPUSetCPUs:
			all := tg.cpus()
			cpu(a).Cpus, cpu(b).Cpus = all[:1], all
			if len(all) < 2 {
				skipped = append(skipped, "cpu.cpus: the host gives one CPU, so no value differs (written only by Create)")
			}
		case semantic.CPUSetMems:
			all := tg.mems()
			cpu(a).Mems, cpu(b).Mems = all[:1], all
			if len(all) < 2 {
				skipped = append(skipped, "cpu.mems: the host has one memory node, so no value differs (written only by Create)")
			}
		case semantic.IOWeight:
			io(a).Weight, io(b).Weight = ptr[uint64](50), ptr[uint64](150)
		case semantic.IOLimits:
			dev := tg.Harness.IODevice
			if dev == nil {
				skipped = append(skipped, "io.limits: the harness names no block device")
				continue
			}
			io(a).Limits = []semantic.IOLimit{{Major: dev[0], Minor: dev[1], ReadBPS: uint64(MiB), WriteIOPS: 100}}
			io(b).Limits = []semantic.IOLimit{{Major: dev[0], Minor: dev[1], WriteBPS: 2 * uint64(MiB), ReadIOPS: 50}}
		case semantic.PidsMax:
			a.Pids, b.Pids = &semantic.Pids{Max: ptr[semantic.Count](100)}, &semantic.Pids{Max: ptr[semantic.Count](200)}
		case semantic.DevicesFeature:
			a.Devices = &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
				{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
				{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 5, Access: semantic.AllAccess},
			}}
			b.Devices = &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
				{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.Read | semantic.Write},
				{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 8, Access: semantic.Read},
				{Allow: true, Type: semantic.BlockDevice, Major: 7, Minor: 0, Access: semantic.Read},
			}}
		case semantic.HugeTLB:
			sizes := tg.Harness.HugePageSizes
			if len(sizes) == 0 {
				skipped = append(skipped, "hugetlb: the harness names no huge page size")
				continue
			}
			a.HugeTLB = []semantic.HugeTLBLimit{{PageSize: sizes[0], Limit: 4 * sizes[0]}}
			b.HugeTLB = []semantic.HugeTLBLimit{{PageSize: sizes[0], Limit: 8 * sizes[0]}}
		}
	}
	return a, b, skipped
}

// diffResources compares two read-backs on the features listed, returning
// "" when they agree. Device lists are compared by what they grant, on a
// grid of devices, since drivers store equivalent lists differently.
func diffResources(want, got *semantic.Resources, features []semantic.Feature) string {
	if want == nil || got == nil {
		if want == got {
			return ""
		}
		return fmt.Sprintf("read-back %v, want %v", got, want)
	}
	var diffs []string
	for _, f := range features {
		if f == semantic.DevicesFeature {
			if d := diffDevices(want.Devices, got.Devices); d != "" {
				diffs = append(diffs, d)
			}
			continue
		}
		w, g := fieldOf(want, f), fieldOf(got, f)
		if !reflect.DeepEqual(w, g) {
			diffs = append(diffs, fmt.Sprintf("%s: got %s, want %s", f, show(g), show(w)))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(diffs)
}

// fieldOf extracts one feature's value from a normalized read-back, nil
// when absent; empty and nil sets and lists are the same.
func fieldOf(r *semantic.Resources, f semantic.Feature) any {
	m, c, io := r.Memory, r.CPU, r.IO
	if m == nil {
		m = &semantic.Memory{}
	}
	if c == nil {
		c = &semantic.CPU{}
	}
	if io == nil {
		io = &semantic.IO{}
	}
	deref := func(p any) any {
		v := reflect.ValueOf(p)
		if v.IsNil() {
			return nil
		}
		return v.Elem().Interface()
	}
	switch f {
	case semantic.MemoryMax:
		return deref(m.Max)
	case semantic.MemoryHigh:
		return deref(m.High)
	case semantic.MemoryLow:
		return deref(m.Low)
	case semantic.MemoryMin:
		return deref(m.Min)
	case semantic.MemorySwap:
		return deref(m.Swap)
	case semantic.CPUWeight:
		return deref(c.Weight)
	case semantic.CPUMaxFeature:
		if c.Max == nil {
			return nil
		}
		return fmt.Sprintf("%.6f/%v", c.Max.CPUs, c.Max.EffectivePeriod())
	case semantic.CPUSetCPUs:
		return c.Cpus.String()
	case semantic.CPUSetMems:
		return c.Mems.String()
	case semantic.IOWeight:
		return deref(io.Weight)
	case semantic.IOLimits:
		var out []string
		for _, l := range io.Limits {
			if l.ReadBPS|l.WriteBPS|l.ReadIOPS|l.WriteIOPS != 0 {
				out = append(out, l.String())
			}
		}
		slices.Sort(out)
		return fmt.Sprint(out)
	case semantic.PidsMax:
		if r.Pids == nil {
			return nil
		}
		return deref(r.Pids.Max)
	case semantic.HugeTLB:
		var out []string
		for _, h := range r.HugeTLB {
			out = append(out, fmt.Sprintf("%v=%v", h.PageSize, h.Limit))
		}
		slices.Sort(out)
		return fmt.Sprint(out)
	}
	return nil
}

func show(v any) string {
	if v == nil {
		return "absent"
	}
	return fmt.Sprint(v)
}

// diffDevices compares two device lists by the access they grant on every
// device of a grid: both types, every number the rules name, its
// neighbours, and a few common and extreme numbers.
func diffDevices(want, got *semantic.Devices) string {
	if want == nil || got == nil {
		if want == nil && got == nil {
			return ""
		}
		return fmt.Sprintf("devices %s, want %s", showDevices(got), showDevices(want))
	}
	majors := []int64{0, 1, 4, 5, 7, 8, 10, 136, 254, semantic.MaxMajor}
	minors := []int64{0, 1, 3, 5, 7, 8, 9, 64, semantic.MaxMinor}
	for _, d := range []*semantic.Devices{want, got} {
		for _, r := range d.Rules {
			if r.Major != semantic.Wildcard {
				majors = append(majors, r.Major, min(r.Major+1, semantic.MaxMajor))
			}
			if r.Minor != semantic.Wildcard {
				minors = append(minors, r.Minor, min(r.Minor+1, semantic.MaxMinor))
			}
		}
	}
	for _, typ := range []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice} {
		for _, maj := range majors {
			for _, mnr := range minors {
				if w, g := want.Allowed(typ, maj, mnr), got.Allowed(typ, maj, mnr); w != g {
					return fmt.Sprintf("devices %s grant %q on %c %d:%d, want %q (from %s)",
						showDevices(got), g, typ, maj, mnr, w, showDevices(want))
				}
			}
		}
	}
	return ""
}

func showDevices(d *semantic.Devices) string {
	if d == nil {
		return "absent"
	}
	return (&semantic.Resources{Devices: d}).String()
}

// readSettings reads the listed files from every directory, verbatim,
// keyed by path; a file a directory lacks is left out (co-mounted or
// absent controllers).
func readSettings(dirs []string, files []string) (map[string]string, error) {
	out := map[string]string{}
	for _, dir := range dirs {
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[filepath.Join(dir, f)] = string(b)
		}
	}
	return out, nil
}

// kindOf is the error kind err wraps, for comparing drivers: the
// semantic kind, "ok" for nil, or "no kind" for an error that wraps none.
func kindOf(err error) string {
	if err == nil {
		return "ok"
	}
	if k := semantic.Classify(err); k != nil {
		return k.Error()
	}
	return "no kind"
}
