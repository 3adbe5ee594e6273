package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// Name is the driver's registered name.
const Name = "fake"

// Options configure the fake driver.
type Options struct {
	semantic.Options
	// Unsupported lists features the driver declares unsupported: requests
	// touching them fail with ErrNotSupported and read-back omits them.
	Unsupported []semantic.Feature
	// PageSize is what memory limits are rounded down to; 0 means
	// os.Getpagesize().
	PageSize uint64
	// HostCPUs and HostMems are the CPUs and memory nodes the simulated
	// host has; nil means {0}. A group's Cpus and Mems must be subsets.
	HostCPUs, HostMems semantic.CPUSet
}

var _ semantic.Driver = (*Driver)(nil)

// Driver is the in-memory driver. It is safe for concurrent use.
type Driver struct {
	log      hclog.Logger
	caps     semantic.Capabilities
	approx   bool // Options.AllowApproximate
	pageSize uint64
	hostCPUs semantic.CPUSet
	hostMems semantic.CPUSet

	mu    sync.Mutex
	root  *node
	tasks map[taskKey]*task
	fault fault
	// changed is closed and replaced whenever a task joins, moves or
	// leaves, so Kill can wait for a group to empty without polling.
	changed chan struct{}
	closed  bool
	// done is closed by Close; it stops event pumps.
	done chan struct{}
	// wg counts the watcher and event goroutines Close waits for.
	wg sync.WaitGroup
}

// fault is one pending injected failure.
type fault struct {
	remaining int // changes until the failing one; 0 = none armed
	err       error
}

// New returns a fake driver with no groups but its root.
func New(opts Options) *Driver {
	d := &Driver{
		log:      opts.NamedLogger(Name),
		approx:   opts.AllowApproximate,
		pageSize: opts.PageSize,
		hostCPUs: hostSet(opts.HostCPUs),
		hostMems: hostSet(opts.HostMems),
		tasks:    map[taskKey]*task{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if d.pageSize == 0 {
		d.pageSize = uint64(os.Getpagesize())
	}
	d.caps = capabilities(opts.Unsupported)
	d.root = &node{path: semantic.Root, res: d.defaults()}
	d.root.init()
	return d
}

func hostSet(s semantic.CPUSet) semantic.CPUSet {
	if s == nil {
		return semantic.CPUSet{0}
	}
	return slices.Compact(slices.Sorted(slices.Values(s)))
}

func capabilities(unsupported []semantic.Feature) semantic.Capabilities {
	caps := semantic.Capabilities{}
	for _, f := range semantic.AllFeatures() {
		caps[f] = semantic.Capability{Feature: f, Support: semantic.Exact}
	}
	// Pressure stall figures come from the kernel's scheduler; the fake
	// has no honest value to give, and a zero would be a lie.
	caps[semantic.StatsPressure] = semantic.Capability{Feature: semantic.StatsPressure, Support: semantic.Unsupported,
		Reason: "the fake cannot measure pressure stalls"}
	if !pidfdThreadsWork() {
		caps[semantic.Threads] = semantic.Capability{Feature: semantic.Threads, Support: semantic.Unsupported,
			Reason: "this kernel cannot open a pidfd for a thread (PIDFD_THREAD needs Linux 6.9)"}
	}
	for _, f := range unsupported {
		caps[f] = semantic.Capability{Feature: f, Support: semantic.Unsupported, Reason: "declared unsupported"}
	}
	return caps
}

// Name returns "fake".
func (d *Driver) Name() string { return Name }

// Capabilities reports every feature exact except those declared
// unsupported, pressure stats, and threads where the kernel lacks
// PIDFD_THREAD.
func (d *Driver) Capabilities() semantic.Capabilities { return maps.Clone(d.caps) }

func (d *Driver) supports(f semantic.Feature) bool { return d.caps.Supports(f) }

func (d *Driver) notSupported(f semantic.Feature, p semantic.Path) error {
	err := semantic.NotSupported(Name, f, fmt.Sprintf("%s is not supported by this driver here: %s", f, d.caps.Get(f).Reason))
	return withGroup(err, p)
}

// withGroup names the group on an *semantic.Error built without one
// (validation and capability errors come from semantic with no group).
func withGroup(err error, p semantic.Path) error {
	var e *semantic.Error
	if errors.As(err, &e) && e.Group == "" {
		c := *e
		c.Group, c.Driver = p.Display(), Name
		return &c
	}
	return err
}

// Create makes the group and every missing level above it, then applies
// res to the group. Each level made and each field written is one backend
// change for InjectFault. On failure every level it made is removed.
func (d *Driver) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	const op = "create"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	if p.IsRoot() {
		return nil, errorf(op, p, semantic.ErrInvalid, "the root exists already and is not created")
	}
	req, err := d.prepare(p, res)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.openLocked(op, p); err != nil {
		return nil, err
	}
	if d.lookup(p) != nil {
		return nil, errorf(op, p, semantic.ErrExist, "group exists")
	}
	var made []*node
	undo := func() {
		for i := len(made) - 1; i >= 0; i-- {
			d.log.Trace("undo mkdir", "group", made[i].path.Display())
			made[i].detach()
		}
	}
	parent := d.root
	for i := 1; i <= p.Len(); i++ {
		prefix := p.Prefix(i)
		if c := parent.children[prefix.Base()]; c != nil {
			parent = c
			continue
		}
		if err := ctxErr(ctx, op, p); err != nil {
			undo()
			return nil, err
		}
		if err := d.change("mkdir", prefix, "group", prefix.Display()); err != nil {
			undo()
			return nil, err
		}
		c := &node{path: prefix, parent: parent, res: d.defaults()}
		c.init()
		parent.children[prefix.Base()] = c
		made = append(made, c)
		parent = c
	}
	if err := d.applyLocked(ctx, parent, req); err != nil {
		undo()
		return nil, err
	}
	return &group{d: d, path: p}, nil
}

// prepare validates res and refuses unsupported fields, before any change,
// and returns it normalized.
func (d *Driver) prepare(p semantic.Path, res *semantic.Resources) (*semantic.Resources, error) {
	if err := res.Validate(); err != nil {
		return nil, withGroup(err, p)
	}
	if err := d.caps.Check(Name, res, d.approx); err != nil {
		return nil, withGroup(err, p)
	}
	return res.Normalize(d.pageSize), nil
}

// Open returns the group at p; Root is always there.
func (d *Driver) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	const op = "open"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.nodeLocked(op, p); err != nil {
		return nil, err
	}
	return &group{d: d, path: p}, nil
}

// Children lists the groups directly below p, sorted.
func (d *Driver) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	const op = "list children"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, err := d.nodeLocked(op, p)
	if err != nil {
		return nil, err
	}
	out := make([]semantic.Path, 0, len(n.children))
	for _, name := range slices.Sorted(maps.Keys(n.children)) {
		out = append(out, n.children[name].path)
	}
	return out, nil
}

// Close stops watching processes and ends every event channel. Groups and
// processes stay as they are; every later call fails.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.done)
	for _, t := range d.tasks {
		t.f.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	return nil
}

// InjectFault makes the nth backend change from now on (1-based) fail with
// err; nth <= 0 clears a pending fault. A backend change is what a real
// driver would do to the kernel: one per level Create makes, one per field
// Apply or Create writes, one per level Delete removes. The change that
// fails is not made, and Apply and Create undo the ones before it (undoing
// is neither counted nor failed). A nil err fails with EIO.
func (d *Driver) InjectFault(nth int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if nth <= 0 {
		d.fault = fault{}
		return
	}
	if err == nil {
		err = unix.EIO
	}
	d.fault = fault{remaining: nth, err: err}
}

// InjectOOM simulates the kernel's OOM killer acting in the group: the
// OOM and OOM-kill counters in Stats go up by one and EventOOM and
// EventOOMKill are delivered. No process is killed.
func (d *Driver) InjectOOM(p semantic.Path) error {
	const op = "inject oom"
	if p.IsRoot() {
		return errorf(op, p, semantic.ErrInvalid, "the root has no memory limit to hit")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, err := d.nodeLocked(op, p)
	if err != nil {
		return err
	}
	n.oom++
	n.oomKill++
	d.log.Trace("oom", "group", p.Display(), "oom", n.oom, "oom_kill", n.oomKill)
	d.emit(n, semantic.EventOOM, n.oom)
	d.emit(n, semantic.EventOOMKill, n.oomKill)
	return nil
}

// change accounts for one backend change: it logs it and fails it if an
// injected fault is due. Called with d.mu held.
func (d *Driver) change(op string, p semantic.Path, kv ...any) error {
	if d.fault.remaining > 0 {
		d.fault.remaining--
		if d.fault.remaining == 0 {
			err := d.fault.err
			d.fault = fault{}
			d.log.Trace(op+" (injected failure)", append(kv, "error", err)...)
			return semantic.Wrap(Name, op, p.Display(), err)
		}
	}
	d.log.Trace(op, kv...)
	return nil
}

// openLocked fails once the driver is closed. Called with d.mu held.
func (d *Driver) openLocked(op string, p semantic.Path) error {
	if d.closed {
		return errorf(op, p, semantic.ErrInvalid, "driver closed")
	}
	return nil
}

// nodeLocked returns the group's node, or ErrNotExist. Called with d.mu held.
func (d *Driver) nodeLocked(op string, p semantic.Path) (*node, error) {
	if err := d.openLocked(op, p); err != nil {
		return nil, err
	}
	n := d.lookup(p)
	if n == nil {
		return nil, errorf(op, p, semantic.ErrNotExist, "no such group")
	}
	return n, nil
}

func (d *Driver) lookup(p semantic.Path) *node {
	n := d.root
	for _, s := range p.Segments() {
		if n = n.children[s]; n == nil {
			return nil
		}
	}
	return n
}

// bumpChanged wakes everyone waiting for task membership to change.
// Called with d.mu held.
func (d *Driver) bumpChanged() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func errorf(op string, p semantic.Path, kind error, format string, args ...any) error {
	return &semantic.Error{Driver: Name, Op: op, Group: p.Display(), Kind: kind, Err: fmt.Errorf(format, args...)}
}

func ctxErr(ctx context.Context, op string, p semantic.Path) error {
	if err := ctx.Err(); err != nil {
		return semantic.Wrap(Name, op, p.Display(), err)
	}
	return nil
}

// node is one group of the tree.
type node struct {
	path     semantic.Path
	parent   *node
	children map[string]*node
	// res holds every resource field, normalized; unset ones hold the
	// kernel's defaults.
	res *semantic.Resources
	// tasks are the processes and threads in this group itself.
	tasks map[taskKey]*task
	// populated counts tasks in this group and its descendants.
	populated    int
	frozen       bool
	oom, oomKill uint64
	subs         []*subscription
}

func (n *node) init() {
	n.children = map[string]*node{}
	n.tasks = map[taskKey]*task{}
}

// detach removes the node from the tree; its subscribers stay until their
// context ends, and receive nothing more.
func (n *node) detach() {
	delete(n.parent.children, n.path.Base())
}

// subtree returns n and its descendants, children before parents.
func (n *node) subtree() []*node {
	var out []*node
	for _, name := range slices.Sorted(maps.Keys(n.children)) {
		out = append(out, n.children[name].subtree()...)
	}
	return append(out, n)
}

// subtreeTasks lists the tasks of n and its descendants.
func (n *node) subtreeTasks() []*task {
	var out []*task
	for _, m := range n.subtree() {
		for _, t := range m.tasks {
			out = append(out, t)
		}
	}
	return out
}

// ancestry is n and its ancestors up to the root.
func (n *node) ancestry() []*node {
	var out []*node
	for ; n != nil; n = n.parent {
		out = append(out, n)
	}
	return out
}

// subscription is one Events channel.
type subscription struct {
	ch      chan semantic.Event
	dropped uint64
}

// eventBuffer is how many undelivered events a subscription holds before
// the oldest is dropped.
const eventBuffer = 256

// emit delivers an event to the group's subscribers without blocking:
// when a subscriber's buffer is full, its oldest event is dropped. Called
// with d.mu held.
func (d *Driver) emit(n *node, kind semantic.EventKind, count uint64) {
	if !d.supports(eventFeature(kind)) {
		return
	}
	ev := semantic.Event{Kind: kind, Group: n.path, Time: time.Now(), Count: count}
	d.log.Trace("event", "group", n.path.Display(), "kind", kind)
	for _, s := range n.subs {
		select {
		case s.ch <- ev:
			continue
		default:
		}
		// Senders are serialized by d.mu and the reader only removes, so
		// after one receive there is room.
		select {
		case <-s.ch:
			s.dropped++
			d.log.Debug("event buffer full, dropped the oldest", "group", n.path.Display(), "dropped", s.dropped)
		default:
		}
		select {
		case s.ch <- ev:
		default:
		}
	}
}

func eventFeature(k semantic.EventKind) semantic.Feature {
	switch k {
	case semantic.EventOOM, semantic.EventOOMKill:
		return semantic.EventsOOM
	case semantic.EventFrozen, semantic.EventThawed:
		return semantic.EventsFrozen
	}
	return semantic.EventsPopulated
}
