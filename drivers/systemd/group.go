package systemd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// group is a handle on a path, as a cgroupfs path is: a group deleted and
// created again at the path is the one it addresses.
type group struct {
	d    *Driver
	path semantic.Path
}

var _ semantic.Group = (*group)(nil)

func (d *Driver) group(p semantic.Path) *group { return &group{d: d, path: p} }

func (g *group) Path() semantic.Path { return g.path }

// notRoot refuses an operation on the root slice, which is not the
// driver's to change.
func (g *group) notRoot(op string) error {
	if g.path.IsRoot() {
		return errorf(op, g.path, semantic.ErrInvalid, "the root slice %s is not changed by the driver", g.d.names.root)
	}
	return nil
}

// Apply sets the properties of the request on the slice in one
// SetUnitProperties call. If it fails, the properties it names are set
// back to what they were.
func (g *group) Apply(ctx context.Context, res *semantic.Resources) error {
	const op = "apply"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	props, err := d.prepare(op, g.path, res)
	if err != nil {
		return err
	}
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return err
	}
	if len(props) == 0 {
		return nil
	}
	before, err := d.bus.getAll(ctx, st.Path, sliceIface)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if err := g.checkDevicesChange(ctx, op, props, before); err != nil {
		return err
	}
	if err := d.change("set properties of " + st.Name); err != nil {
		return g.setError(props, err)
	}
	if err := d.bus.setProperties(ctx, st.Name, wire(props)); err != nil {
		// systemd checks every property before it sets any, so a refusal
		// usually changed nothing; a failure half way, or a reply lost to
		// ctx, may have. Either way the old values go back.
		uctx, cancel := d.undoContext(ctx)
		if rerr := d.bus.setProperties(uctx, st.Name, restoreProps(props, before)); rerr != nil {
			d.log.Warn("restore properties after a failed apply", "unit", st.Name, "err", rerr)
		}
		cancel()
		return g.setError(props, err)
	}
	return nil
}

// setError names the properties a failed SetUnitProperties set.
func (g *group) setError(props []prop, err error) error {
	var names []string
	for _, p := range props {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	return wrap("set "+strings.Join(names, ", "), g.path, err)
}

// restoreProps are the values before of the properties props set. A list
// property (DeviceAllow=, IO*Max=) adds to its list, and an empty one
// clears it, so it is cleared and refilled.
func restoreProps(props []prop, before map[string]dbus.Variant) []property {
	var out []property
	seen := map[string]bool{}
	for _, p := range props {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		v, ok := before[p.Name]
		if !ok {
			continue
		}
		switch p.Name {
		case "DeviceAllow":
			out = append(out, property{p.Name, dbus.MakeVariant([]deviceAllow{})})
			if prev := deviceAllowOf(v); len(prev) > 0 {
				out = append(out, property{p.Name, dbus.MakeVariant(prev)})
			}
		case "IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax":
			var prev []ioLimit
			if v.Value() != nil {
				_ = dbus.Store([]any{v.Value()}, &prev)
			}
			out = append(out, property{p.Name, dbus.MakeVariant([]ioLimit{})})
			if len(prev) > 0 {
				out = append(out, property{p.Name, dbus.MakeVariant(prev)})
			}
		default:
			out = append(out, property{p.Name, v})
		}
	}
	return out
}

// checkDevicesChange refuses, on cgroup v1, a change of the device list
// of a slice with child groups in the devices hierarchy: systemd rewrites
// the list with "devices.deny a" first, which the kernel refuses for a
// group with children (EINVAL), and systemd then adds the new entries to
// the old ones, so the group would keep access it should lose. Setting
// the list a slice already has is fine.
func (g *group) checkDevicesChange(ctx context.Context, op string, props []prop, before map[string]dbus.Variant) error {
	d := g.d
	if d.host.layout == layoutUnified {
		return nil
	}
	var policy string
	var allow []deviceAllow
	found := false
	for _, p := range props {
		switch p.Name {
		case "DevicePolicy":
			policy, _ = p.Value.Value().(string)
			found = true
		case "DeviceAllow":
			allow = append(allow, deviceAllowOf(p.Value)...)
		}
	}
	if !found {
		return nil
	}
	oldPolicy, _ := before["DevicePolicy"].Value().(string)
	if policy == oldPolicy && sameAllow(allow, deviceAllowOf(before["DeviceAllow"])) {
		return nil
	}
	cg, _ := before["ControlGroup"].Value().(string)
	if cg == "" {
		cg = d.sliceCgroupOf(mustSlice(d, g.path))
	}
	kids, err := d.cg.subdirs("devices", cg)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if len(kids) > 0 {
		return withGroup(semantic.NotSupported(Name, semantic.DevicesFeature, fmt.Sprintf(
			"on cgroup v1 systemd cannot change the device list of a slice that has child groups in the devices hierarchy (%s): the kernel refuses to reset it, and the old entries would stay; set the list at Create, or before processes and children join",
			strings.Join(kids, ", "))), g.path)
	}
	return nil
}

func mustSlice(d *Driver, p semantic.Path) string {
	s, _ := d.names.slice(p)
	return s
}

// sameAllow compares two DeviceAllow= lists as sets.
func sameAllow(a, b []deviceAllow) bool {
	key := func(l []deviceAllow) []string {
		var out []string
		for _, x := range l {
			out = append(out, x.Path+" "+x.Access)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(key(a), key(b))
}

// Resources reads the slice's properties back.
func (g *group) Resources(ctx context.Context) (*semantic.Resources, error) {
	const op = "read back"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return nil, err
	}
	props, err := d.bus.getAll(ctx, st.Path, sliceIface)
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	cgroup := d.sliceCgroupOf(st.Name)
	inherit := func(file string) semantic.CPUSet { return d.cg.nearestSet(cgroup, file) }
	return d.host.decode(props, d.caps, d.resolveNode, inherit).Normalize(d.host.pageSize), nil
}

// resolveNode stats a device node path in systemd's file system.
func (d *Driver) resolveNode(path string) (semantic.DeviceType, int64, int64, bool) {
	if !strings.HasPrefix(path, "/dev/") {
		return 0, 0, 0, false
	}
	var st unix.Stat_t
	if err := unix.Stat(d.view.path(path), &st); err != nil {
		return 0, 0, 0, false
	}
	t := semantic.CharDevice
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
	case unix.S_IFBLK:
		t = semantic.BlockDevice
	default:
		return 0, 0, 0, false
	}
	return t, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)), true
}

// Plan returns the D-Bus properties Apply would set.
func (g *group) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	const op = "plan"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	props, err := d.prepare(op, g.path, res)
	if err != nil {
		return nil, err
	}
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return nil, err
	}
	return &semantic.Plan{Steps: planSteps(st.Name+" SetUnitProperties", props)}, nil
}

// AddProcess puts a process in the group's scope: it starts the scope
// with the process when it is not running, and attaches the process to it
// otherwise.
func (g *group) AddProcess(ctx context.Context, pid int) error {
	const op = "add process"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if pid <= 0 {
		return errorf(op, g.path, semantic.ErrInvalid, "pid %d", pid)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	spid, err := d.view.systemdPID(pid)
	if err != nil {
		return g.pidError(op, pid, err)
	}
	if _, err := d.active(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.place(ctx, spid); err != nil {
		return g.pidError(op, pid, err)
	}
	return nil
}

// pidError classifies a failure to name or move a process.
func (g *group) pidError(op string, pid int, err error) error {
	switch {
	case errors.Is(err, errOutsidePidns):
		return errorf(op, g.path, semantic.ErrNotSupported, "%w: systemd can only be given processes it sees", err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return errorf(op, g.path, semantic.ErrNotExist, "no process %d", pid)
	case isDBusError(err, "System.Error.EPROTO") && !g.d.view.samePids():
		// systemd checks who asks before it moves a process into a
		// running unit, and cannot see a caller outside its pid namespace.
		return errorf(op, g.path, semantic.ErrNotSupported, "systemd refuses AttachProcessesToUnit from a caller outside its pid namespace: %w", err)
	}
	return wrap(op, g.path, err)
}

// scopeProps are the properties of a group's scope: in the group's slice,
// delegated (systemd's AttachProcessesToUnit moves processes only into a
// delegated unit), collected even when it failed, and with no tasks limit
// of its own (DefaultTasksMax= applies to scopes): the group's limits are
// its slice's.
func (d *Driver) scopeProps(p semantic.Path, slice string, pids []uint32) []property {
	props := []property{
		{"Description", dbus.MakeVariant(descriptionOf(p) + " (processes)")},
		{"Slice", dbus.MakeVariant(slice)},
		{"PIDs", dbus.MakeVariant(pids)},
		{"Delegate", dbus.MakeVariant(true)},
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}
	if d.host.version >= propertyVersion["TasksMax"] {
		props = append(props, property{"TasksMax", dbus.MakeVariant(uint64(infinity))})
	}
	return append(props, d.accounting()...)
}

// place moves a process, named by its pid in systemd's namespace, into
// the group's scope.
func (g *group) place(ctx context.Context, spid uint32) error {
	d := g.d
	slice, err := d.names.slice(g.path)
	if err != nil {
		return err
	}
	scope, err := d.names.scope(g.path)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for retry := false; ; retry = true {
		st, err := d.bus.unitState(ctx, scope)
		if err != nil {
			return err
		}
		if st.ActiveState == "active" {
			if err := d.change("attach to " + scope); err != nil {
				return err
			}
			err := d.bus.attach(ctx, scope, []uint32{spid})
			// The scope may have ended with its last process between the
			// look and the attach: then it is started again, once.
			if err == nil || retry || !isDBusError(err, errNoSuchUnit, errUnitInactive) {
				return err
			}
			continue
		}
		_, err = d.startUnit(ctx, scope, d.scopeProps(g.path, slice, []uint32{spid}), st)
		if err == nil || retry || !errors.Is(err, semantic.ErrExist) {
			return err
		}
	}
}

// AddThread is not supported: systemd moves whole processes.
func (g *group) AddThread(ctx context.Context, tid int) error {
	const op = "add thread"
	if err := g.d.check(ctx, op, g.path); err != nil {
		return err
	}
	if tid <= 0 {
		return errorf(op, g.path, semantic.ErrInvalid, "tid %d", tid)
	}
	return withGroup(semantic.NotSupported(Name, semantic.Threads, g.d.caps.Get(semantic.Threads).Reason), g.path)
}

// Processes lists the pids in the group's scope, as this process sees
// them.
func (g *group) Processes(ctx context.Context) ([]int, error) {
	const op = "list processes"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return nil, err
	}
	slice, err := d.sliceOf(op, g.path)
	if err != nil {
		return nil, err
	}
	cg := d.sliceCgroupOf(slice)
	if err := g.exists(op, cg); err != nil {
		return nil, err
	}
	if g.path.IsRoot() {
		pids, err := d.cg.procs(cg)
		return pids, wrap(op, g.path, err)
	}
	scope, _ := d.names.scope(g.path)
	pids, err := d.cg.procs(cg + "/" + cgroupName(scope))
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	return pids, nil
}

// exists checks the slice's group in the tracking hierarchy: systemd
// removes it when it stops the slice.
func (g *group) exists(op, cg string) error {
	ok, err := g.d.cg.exists(cg)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if !ok {
		return errorf(op, g.path, semantic.ErrNotExist, "no cgroup %s", cg)
	}
	return nil
}

// Freeze freezes the slice and everything in it (FreezeUnit returns once
// the freezer reached the state).
func (g *group) Freeze(ctx context.Context) error { return g.freezer(ctx, "freeze", true) }

// Thaw thaws it.
func (g *group) Thaw(ctx context.Context) error { return g.freezer(ctx, "thaw", false) }

func (g *group) freezer(ctx context.Context, op string, freeze bool) error {
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if !d.caps.Supports(semantic.Freeze) {
		return withGroup(semantic.NotSupported(Name, semantic.Freeze, d.caps.Get(semantic.Freeze).Reason), g.path)
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return err
	}
	call := d.bus.thaw
	if freeze {
		call = d.bus.freeze
	}
	err = call(ctx, st.Name)
	if err != nil && isDBusError(err, errUnitInactive) {
		return errorf(op, g.path, semantic.ErrNotExist, "%s is not active", st.Name)
	}
	return wrap(op, g.path, err)
}

// Kill SIGKILLs every process in the group and below, through each scope
// of the subtree, and returns once the slice's group is empty.
func (g *group) Kill(ctx context.Context) error {
	const op = "kill"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return err
	}
	return wrap(op, g.path, g.kill(ctx, st.Name))
}

// kill signals every scope of the subtree and waits for the slice to
// empty.
func (g *group) kill(ctx context.Context, slice string) error {
	d := g.d
	prefix := strings.TrimSuffix(slice, sliceSuffix)
	scopes, err := d.bus.listUnits(ctx, globEscape(prefix)+scopeSuffix, globEscape(prefix+"-")+"*"+scopeSuffix)
	if err != nil {
		return err
	}
	for _, s := range scopes {
		if s.ActiveState == "inactive" {
			continue
		}
		// A scope whose processes are gone already is no failure.
		if err := d.bus.kill(ctx, s.Name, int32(syscall.SIGKILL)); err != nil && !isDBusError(err, errNoSuchUnit, errNoSuchProcess, errUnitInactive) {
			return err
		}
	}
	// Processes of units that are not the driver's scopes (a service
	// someone placed in the slice): systemd 252 (seen here) kills what is
	// in a slice's units when the slice is killed; a release that does
	// not leaves them, and the wait below ends only with ctx.
	if err := d.bus.kill(ctx, slice, int32(syscall.SIGKILL)); err != nil {
		d.log.Trace("kill slice", "unit", slice, "err", err)
	}
	return d.waitEmpty(ctx, d.sliceCgroupOf(slice))
}

// Delete stops the slice (systemd stops what is in it first). It refuses
// a slice with child slices unless Recursive, and one whose subtree holds
// processes unless Kill, before changing anything.
func (g *group) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	const op = "delete"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	if opts == nil {
		opts = &semantic.DeleteOptions{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.active(ctx, op, g.path)
	if err != nil {
		return err
	}
	prefix := strings.TrimSuffix(st.Name, sliceSuffix)
	kids, err := d.bus.listUnits(ctx, globEscape(prefix+"-")+"*"+sliceSuffix)
	if err != nil {
		return wrap(op, g.path, err)
	}
	var below []string
	for _, k := range kids {
		if isActive(k.ActiveState) {
			below = append(below, k.Name)
		}
	}
	if len(below) > 0 && !opts.Recursive {
		return errorf(op, g.path, semantic.ErrBusy, "it has child slices: %s", strings.Join(below, ", "))
	}
	cg := d.sliceCgroupOf(st.Name)
	busy, err := d.cg.populated(cg)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if busy {
		if !opts.Kill {
			return errorf(op, g.path, semantic.ErrBusy, "processes are in it or below")
		}
		if err := g.kill(ctx, st.Name); err != nil {
			return wrap(op, g.path, err)
		}
	}
	if err := d.change("stop " + st.Name); err != nil {
		return wrap(op, g.path, err)
	}
	// Deepest first, so no stop waits on a child's; stopping a slice
	// would stop what is in it anyway.
	slices.SortFunc(below, func(a, b string) int { return strings.Count(b, "-") - strings.Count(a, "-") })
	for _, u := range append(below, st.Name) {
		err := d.bus.stop(ctx, u)
		var je *jobError
		if errors.As(err, &je) {
			// A stop that did not end "done" may leave the unit failed,
			// which would keep its name: reset it, so it is collected.
			if rerr := d.bus.resetFailed(ctx, u); rerr != nil && !isDBusError(rerr, errNoSuchUnit) {
				d.log.Warn("reset failed unit", "unit", u, "err", rerr)
			}
		}
		if err != nil && !isDBusError(err, errNoSuchUnit) {
			return wrap(op, g.path, err)
		}
	}
	return nil
}
