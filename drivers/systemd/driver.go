package systemd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"

	"github.com/cgsem/cgsem/semantic"
)

// Name is the driver's registered name.
const Name = "systemd"

// minVersion is the oldest systemd the driver drives: AttachProcessesToUnit
// (238) is how a group takes a second process.
const minVersion = 238

var _ semantic.Driver = (*Driver)(nil)

// Driver manages groups as transient slices of one systemd manager. It is
// safe for concurrent use.
type Driver struct {
	log    hclog.Logger
	bus    *bus
	view   *view
	cg     *cgroups
	host   *host
	caps   semantic.Capabilities
	names  namer
	approx bool
	// base is the cgroup path systemd puts its root slice "-.slice" at:
	// "" for the system manager, the user@.service group for a user's.
	base string
	// undoGrace bounds the undo of a failed change beyond the caller's
	// ctx (see undoContext); a variable for the tests.
	undoGrace time.Duration

	// mu orders the structural changes made through this driver (levels
	// created and removed, scopes started), so two Creates of one path
	// see each other.
	mu sync.Mutex

	faults faults
	closed atomic.Bool
	// done is closed by Close, which then waits for the event goroutines
	// (wg) before it closes the directories they read.
	done chan struct{}
	wg   sync.WaitGroup
}

// faults makes the nth backend change fail: the test seam of the
// all-or-nothing checks.
type faults struct {
	mu        sync.Mutex
	remaining int
	err       error
}

// injectFault arms a failure of the nth change from now on (n < 1
// disarms).
func (d *Driver) injectFault(n int, err error) {
	d.faults.mu.Lock()
	defer d.faults.mu.Unlock()
	d.faults.remaining, d.faults.err = max(n, 0), err
}

// change counts one backend change and returns the injected failure when
// it is the one armed.
func (d *Driver) change(what string) error {
	d.faults.mu.Lock()
	defer d.faults.mu.Unlock()
	if d.faults.remaining == 0 {
		return nil
	}
	d.faults.remaining--
	if d.faults.remaining > 0 {
		return nil
	}
	d.log.Trace("injected fault", "change", what, "err", d.faults.err)
	return d.faults.err
}

// Open opens the driver with generic options; see the package doc for the
// settings.
func Open(opts semantic.Options) (*Driver, error) {
	bad := func(k, v string, err error) error {
		return &semantic.Error{Driver: Name, Op: "open", Group: fmt.Sprintf("setting %s=%q", k, v), Kind: semantic.ErrInvalid, Err: err}
	}
	addr := ""
	for k, v := range opts.Settings {
		switch k {
		case "bus":
			a, err := busAddress(v)
			if err != nil {
				return nil, bad(k, v, err)
			}
			addr = a
		default:
			return nil, bad(k, v, errors.New(`unknown setting; the systemd driver takes "bus"`))
		}
	}
	if addr == "" {
		a, err := busAddress("")
		if err != nil {
			return nil, bad("bus", "", err)
		}
		addr = a
	}
	root, err := parseRoot(opts.Root)
	if err != nil {
		return nil, &semantic.Error{Driver: Name, Op: "open", Group: opts.Root, Kind: semantic.ErrInvalid, Err: err}
	}
	names, err := newNamer(root)
	if err != nil {
		return nil, &semantic.Error{Driver: Name, Op: "open", Group: opts.Root, Kind: semantic.ErrInvalid, Err: err}
	}
	log := opts.NamedLogger(Name)
	d := &Driver{log: log, names: names, approx: opts.AllowApproximate, undoGrace: undoGrace, done: make(chan struct{})}
	if err := d.connect(addr); err != nil {
		d.Close()
		return nil, &semantic.Error{Driver: Name, Op: "open", Group: root, Kind: cmp.Or(classifyBus(err), semantic.ErrNotSupported), Err: err}
	}
	return d, nil
}

// connect dials the bus, probes the manager's version and layout, and
// checks the root slice.
func (d *Driver) connect(addr string) error {
	// Opening is not one of the semantic calls that take a context; every
	// call it makes is a short query.
	ctx := context.Background()
	b, err := dialBus(addr, d.log)
	if err != nil {
		return err
	}
	d.bus = b
	v, err := b.managerProperty(ctx, "Version")
	if err != nil {
		return fmt.Errorf("read systemd's version: %w", err)
	}
	s, _ := v.Value().(string)
	version, err := parseVersion(s)
	if err != nil {
		return err
	}
	if version < minVersion {
		return fmt.Errorf("systemd %d is older than %d, the first with AttachProcessesToUnit", version, minVersion)
	}
	if d.view, err = newView(addr); err != nil {
		return err
	}
	procDir := "/proc/self"
	if d.view.root != "" {
		procDir = strings.TrimSuffix(d.view.root, "/root")
	}
	if d.cg, err = openCgroups(d.view, procDir, d.log); err != nil {
		return err
	}
	d.host = &host{layout: d.cg.layout, version: version, pageSize: uint64(os.Getpagesize())}
	d.cg.probe(d.host)
	if b, err := os.ReadFile(d.view.path("/proc/devices")); err == nil {
		d.host.majors, _ = parseProcDevices(b)
	}
	if d.host.majors == nil {
		d.host.majors = majorNames{}
	}
	d.caps = d.host.capabilities()
	st, err := b.unitState(ctx, d.names.root)
	if err != nil {
		return err
	}
	if !isActive(st.ActiveState) {
		return fmt.Errorf("%w: the root slice %s is not active; start it first (systemctl start %s)", semantic.ErrNotExist, d.names.root, d.names.root)
	}
	props, err := b.getAll(ctx, st.Path, unitIface)
	if err != nil {
		return err
	}
	// ControlGroup is on the Slice interface.
	sprops, err := b.getAll(ctx, st.Path, sliceIface)
	if err != nil {
		return err
	}
	maps.Copy(props, sprops)
	cg, _ := props["ControlGroup"].Value().(string)
	own, _ := sliceCgroup(d.names.root)
	base, ok := strings.CutSuffix(cg, own)
	if own == "/" {
		base, ok = strings.TrimSuffix(cg, "/"), true
	}
	if cg == "" || !ok {
		return fmt.Errorf("the root slice %s is at cgroup %q, not at a path ending %q", d.names.root, cg, own)
	}
	d.base = base
	d.log.Debug("opened", "address", addr, "version", version, "layout", d.host.layout, "root", d.names.root,
		"cgroup", cg, "view", d.view.root, "peer", d.view.peer)
	return nil
}

func isActive(state string) bool {
	return state == "active" || state == "activating" || state == "reloading"
}

// Name returns "systemd".
func (d *Driver) Name() string { return Name }

// Capabilities reports what this systemd does on this host.
func (d *Driver) Capabilities() semantic.Capabilities { return maps.Clone(d.caps) }

// Close closes the bus connection and the cgroup directories. Groups stay.
func (d *Driver) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	close(d.done)
	d.wg.Wait()
	if d.cg != nil {
		d.cg.close()
	}
	if d.bus != nil {
		return d.bus.close()
	}
	return nil
}

// errorf builds the driver's error for an operation on a group.
func errorf(op string, p semantic.Path, kind error, format string, args ...any) error {
	return &semantic.Error{Driver: Name, Op: op, Group: p.Display(), Kind: kind, Err: fmt.Errorf(format, args...)}
}

// wrap classifies a failure of op on p, D-Bus errors included.
func wrap(op string, p semantic.Path, err error) error {
	if err == nil {
		return nil
	}
	var se *semantic.Error
	if errors.As(err, &se) && se.Driver == Name && se.Group != "" {
		return err
	}
	return &semantic.Error{Driver: Name, Op: op, Group: p.Display(), Kind: classifyBus(err), Err: err}
}

// check is every call's entry: a closed driver and an ended context fail
// before anything is done.
func (d *Driver) check(ctx context.Context, op string, p semantic.Path) error {
	if d.closed.Load() {
		return errorf(op, p, semantic.ErrInvalid, "the driver is closed")
	}
	if err := ctx.Err(); err != nil {
		return wrap(op, p, err)
	}
	return nil
}

// unit names of p, or ErrNotSupported for a path systemd cannot name.
func (d *Driver) sliceOf(op string, p semantic.Path) (string, error) {
	s, err := d.names.slice(p)
	if err != nil {
		return "", errorf(op, p, semantic.ErrNotSupported, "%w", err)
	}
	return s, nil
}

// cgroupOf is the cgroup path of a unit in slice (its own for a slice).
func (d *Driver) sliceCgroupOf(slice string) string {
	own, _ := sliceCgroup(slice)
	if own == "/" && d.base != "" {
		return d.base
	}
	return d.base + own
}

// prepare validates a request, refuses what the driver cannot do, and
// maps it to properties, all before any change.
func (d *Driver) prepare(op string, p semantic.Path, res *semantic.Resources) ([]prop, error) {
	if res == nil {
		return nil, nil
	}
	if err := res.Validate(); err != nil {
		return nil, withGroup(err, p)
	}
	// Every unsupported feature of the request is named, not only the
	// first: a caller fixing one should not meet the next one after.
	// Approximate features are checked value by value by encode: values
	// their conversion keeps pass without AllowApproximate.
	var refused []semantic.Feature
	var why []string
	for _, f := range res.Fields() {
		if c := d.caps.Get(f); c.Support == semantic.Unsupported {
			refused = append(refused, f)
			why = append(why, fmt.Sprintf("%s is not supported by the systemd driver here: %s", f, c.Reason))
		}
	}
	if len(refused) > 0 {
		return nil, withGroup(semantic.NotSupported(Name, refused[0], strings.Join(why, "; ")), p)
	}
	req := res.Normalize(d.host.pageSize)
	if res.IO != nil && res.IO.Limits != nil {
		// Normalize drops a device whose figures are all 0, which in a
		// request means "remove this device's limits": encode the
		// request's own list, where a 0 goes out as infinity.
		req.IO.Limits = slices.Clone(res.IO.Limits)
	}
	props, err := d.host.encode(req, d.approx)
	if err != nil {
		return nil, withGroup(err, p)
	}
	return props, nil
}

// withGroup names the group and driver on an error built without them.
func withGroup(err error, p semantic.Path) error {
	var e *semantic.Error
	if errors.As(err, &e) && (e.Group == "" || e.Driver == "") {
		c := *e
		c.Group, c.Driver = p.Display(), Name
		return &c
	}
	return err
}

// sliceProps are the properties every slice of the driver is started with:
// a Description that names the path (how a hashed name is read back),
// accounting so that the slice has a group in every controller's hierarchy
// (stats read from it on cgroup v1), and collection of a failed unit.
func (d *Driver) sliceProps(p semantic.Path) []property {
	props := []property{
		{"Description", dbus.MakeVariant(descriptionOf(p))},
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}
	return append(props, d.accounting()...)
}

func (d *Driver) accounting() []property {
	var out []property
	for _, a := range []struct {
		name    string
		version int
	}{{"MemoryAccounting", 208}, {"CPUAccounting", 208}, {"TasksAccounting", 227}, {"IOAccounting", 230}} {
		if d.host.version >= a.version {
			out = append(out, property{a.name, dbus.MakeVariant(true)})
		}
	}
	return out
}

// Create makes the slice of p and of every missing level above it, top
// down, the last with res; on failure it stops every slice it started.
func (d *Driver) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	const op = "create"
	if err := d.check(ctx, op, p); err != nil {
		return nil, err
	}
	if p.IsRoot() {
		return nil, errorf(op, p, semantic.ErrInvalid, "the root slice exists already and is not created")
	}
	props, err := d.prepare(op, p, res)
	if err != nil {
		return nil, err
	}
	levels := make([]string, p.Len())
	for i := range levels {
		if levels[i], err = d.sliceOf(op, p.Prefix(i+1)); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var made []string
	undo := func() {
		// Whatever ended the Create (its ctx too), what it made goes. A
		// unit whose start failed stays "failed" through a stop, holding
		// its name until systemd collects it: its failure is reset, so
		// it goes now, as a unit that stopped does.
		ctx, cancel := d.undoContext(ctx)
		defer cancel()
		for _, u := range slices.Backward(made) {
			if err := d.bus.stop(ctx, u); err != nil && !isDBusError(err, errNoSuchUnit) {
				d.log.Warn("undo create: stop", "unit", u, "err", err)
			}
			if err := d.bus.resetFailed(ctx, u); err != nil && !isDBusError(err, errNoSuchUnit) {
				d.log.Warn("undo create: reset failed", "unit", u, "err", err)
			}
		}
	}
	for i, unit := range levels {
		st, err := d.bus.unitState(ctx, unit)
		if err != nil {
			undo()
			return nil, wrap(op, p, err)
		}
		if isActive(st.ActiveState) {
			if i == len(levels)-1 {
				return nil, errorf(op, p, semantic.ErrExist, "%s is active", unit)
			}
			continue
		}
		level := p.Prefix(i + 1)
		start := d.sliceProps(level)
		if i == len(levels)-1 {
			start = append(start, wire(props)...)
		}
		if attempted, err := d.startUnit(ctx, unit, start, st); err != nil {
			if attempted {
				made = append(made, unit)
			}
			undo()
			return nil, wrap(op+" "+unit, p, err)
		}
		made = append(made, unit)
	}
	d.log.Trace("created", "group", p.Display(), "slice", levels[len(levels)-1], "made", made)
	return d.group(p), nil
}

// undoGrace bounds the undo of a failed change beyond the caller's ctx.
const undoGrace = 30 * time.Second

// undoContext is the context in which a failed change is undone. The
// undo is what keeps a change all or nothing, so a ctx that ended (the
// very reason a change may have failed) does not stop it; a systemd that
// never answers does, after undoGrace, so that the call still returns.
// What an undo cannot finish is logged.
func (d *Driver) undoContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d.undoGrace)
}

// startUnit starts a transient unit, as one backend change. A unit of the
// name still loaded (inactive or failed, on its way out) is waited out
// first: systemd refuses a new transient unit of a loaded name.
//
// attempted reports whether a start went out, so the unit may exist and
// an undo must stop it; a unit someone else started meanwhile is not ours
// to stop.
func (d *Driver) startUnit(ctx context.Context, unit string, props []property, st unitStatus) (attempted bool, err error) {
	if err := d.change("start " + unit); err != nil {
		return false, err
	}
	for retry := false; ; retry = true {
		if st.Name != "" && !isActive(st.ActiveState) {
			if err := d.bus.waitGone(ctx, unit); err != nil {
				return false, err
			}
		}
		err := d.bus.startTransient(ctx, unit, props)
		if err == nil || retry || !isDBusError(err, errUnitExists) {
			return !isDBusError(err, errUnitExists), err
		}
		if st, err = d.bus.unitState(ctx, unit); err != nil {
			return false, err
		}
		if isActive(st.ActiveState) {
			return false, fmt.Errorf("%w: %s was started meanwhile by someone else", semantic.ErrExist, unit)
		}
	}
}

// Open returns the group at p if its slice is active.
func (d *Driver) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	const op = "open"
	if err := d.check(ctx, op, p); err != nil {
		return nil, err
	}
	if !p.IsRoot() {
		if _, err := d.active(ctx, op, p); err != nil {
			return nil, err
		}
	}
	return d.group(p), nil
}

// active returns the status of p's slice, or ErrNotExist.
func (d *Driver) active(ctx context.Context, op string, p semantic.Path) (unitStatus, error) {
	unit, err := d.sliceOf(op, p)
	if err != nil {
		return unitStatus{}, err
	}
	st, err := d.bus.unitState(ctx, unit)
	if err != nil {
		return st, wrap(op, p, err)
	}
	if !isActive(st.ActiveState) {
		return st, errorf(op, p, semantic.ErrNotExist, "no active slice %s", unit)
	}
	return st, nil
}

// Children lists the active child slices of p that follow the driver's
// naming, by segment.
func (d *Driver) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	const op = "children"
	if err := d.check(ctx, op, p); err != nil {
		return nil, err
	}
	prefix := d.names.base
	if !p.IsRoot() {
		if _, err := d.active(ctx, op, p); err != nil {
			return nil, err
		}
		var err error
		if prefix, err = d.names.prefix(p); err != nil {
			return nil, errorf(op, p, semantic.ErrNotSupported, "%w", err)
		}
	}
	pattern := "*" + sliceSuffix
	if prefix != "" {
		pattern = globEscape(prefix+"-") + pattern
	}
	us, err := d.bus.listUnits(ctx, pattern)
	if err != nil {
		return nil, wrap(op, p, err)
	}
	var out []semantic.Path
	for _, u := range us {
		if !isActive(u.ActiveState) {
			continue
		}
		comp, ok := childComponent(prefix, u.Name)
		if !ok {
			continue
		}
		seg, ok := segmentOf(prefix, comp, u.Description)
		if !ok {
			continue
		}
		out = append(out, p.Child(seg))
	}
	slices.SortFunc(out, func(a, b semantic.Path) int { return strings.Compare(a.Base(), b.Base()) })
	return out, nil
}
