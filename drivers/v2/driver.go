package v2

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/semantic"
)

// Name is the driver's registered name.
const Name = "v2"

// Fault is called before every change the driver makes to the kernel:
// op is "mkdir", "rmdir", "write" or "attach" (a device program), name the
// directory or file relative to the driver's root, value what is written.
// A non-nil result fails that change with it, and the change is not
// made. It is the seam tests use to fail the nth change; it may be called
// concurrently.
type Fault func(op, name, value string) error

// Option configures New beyond semantic.Options.
type Option func(*config)

type config struct {
	faults Fault
}

// WithFaults installs a Fault hook.
func WithFaults(f Fault) Option { return func(c *config) { c.faults = f } }

// opAttach is the Fault op of a device program attach.
const opAttach = "attach"

// injected marks an error the Fault hook returned, so that the driver
// never takes it for the kernel's (a transient EBUSY it would retry).
type injected struct{ err error }

func (e injected) Error() string { return e.err.Error() }
func (e injected) Unwrap() error { return e.err }

// fault consults the Fault hook, if any.
func (d *Driver) fault(op, name, value string) error {
	if d.faults == nil {
		return nil
	}
	if err := d.faults(op, name, value); err != nil {
		return injected{err}
	}
	return nil
}

func isInjected(err error) bool {
	var i injected
	return errors.As(err, &i)
}

var _ semantic.Driver = (*Driver)(nil)

// Driver is the cgroup v2 driver on one root. It is safe for concurrent
// use.
type Driver struct {
	log      hclog.Logger
	loc      location
	root     *cgroupfs.Dir
	caps     semantic.Capabilities
	approx   bool
	threaded bool
	pageSize uint64
	huge     []semantic.Bytes
	faults   Fault
	cache    *devfilter.Cache

	// lock serializes the changes to the tree and to settings (Create,
	// Apply, Delete's removal, and the checks of the leaf rule), so that
	// a Create is never seen half made by another call of this driver. It
	// is a channel so that waiting for it honours ctx.
	lock chan struct{}

	mu     sync.Mutex
	nodes  map[string]*node // by group path below the root
	pins   pins
	closed bool

	// ctx ends when the driver is closed; it stops event goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the driver on the root opts names: "" is the cgroup2 mount's
// top, "self" the caller's own cgroup (the "0::" line of
// /proc/self/cgroup), anything else a cgroup path. Settings:
//
//	mount     the cgroup2 mount point to use ("/sys/fs/cgroup/unified");
//	          default: /sys/fs/cgroup when it is cgroup2, else the
//	          hybrid layout's /sys/fs/cgroup/unified, else the first
//	threaded  "true" makes every group the driver creates threaded
//	          (see the package documentation)
func New(opts semantic.Options, more ...Option) (*Driver, error) {
	var cfg config
	for _, o := range more {
		o(&cfg)
	}
	fail := func(kind error, format string, args ...any) error {
		return &semantic.Error{Driver: Name, Op: "open", Group: opts.Root, Kind: kind, Err: fmt.Errorf(format, args...)}
	}
	var mountPoint string
	threaded := false
	for k, v := range opts.Settings {
		switch k {
		case "mount":
			mountPoint = v
		case "threaded":
			switch v {
			case "true", "1", "yes":
				threaded = true
			case "false", "0", "no", "":
			default:
				return nil, fail(semantic.ErrInvalid, "setting threaded=%q: want true or false", v)
			}
		default:
			return nil, fail(semantic.ErrInvalid, "unknown setting %q; the v2 driver takes \"mount\" and \"threaded\"", k)
		}
	}
	mounts, err := mountinfo.ParseFile("/proc/self/mountinfo")
	if err != nil {
		return nil, semantic.Wrap(Name, "open", opts.Root, err)
	}
	var self []mountinfo.CgroupEntry
	if opts.Root == semantic.RootSelf {
		if self, err = mountinfo.ReadCgroup(0); err != nil {
			return nil, semantic.Wrap(Name, "open", opts.Root, err)
		}
	}
	loc, err := locate(mounts, self, opts.Root, mountPoint)
	if err != nil {
		return nil, semantic.Wrap(Name, "open", opts.Root, err)
	}
	d := &Driver{
		log:      opts.NamedLogger(Name),
		loc:      loc,
		approx:   opts.AllowApproximate,
		threaded: threaded,
		pageSize: uint64(os.Getpagesize()),
		huge:     hostHugeSizes(),
		faults:   cfg.faults,
		lock:     make(chan struct{}, 1),
		nodes:    map[string]*node{},
	}
	d.cache = devfilter.NewCache(d.log.Named("devfilter"))
	fsCfg := cgroupfs.Config{Logger: d.log}
	if d.faults != nil {
		fsCfg.Faults = func(op cgroupfs.Op, name, value string) error { return d.fault(string(op), name, value) }
	}
	if d.root, err = cgroupfs.OpenRoot(loc.dir, fsCfg); err != nil {
		d.cache.Close()
		return nil, semantic.Wrap(Name, "open", opts.Root, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(d.root.Fd(), &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		d.cache.Close()
		d.root.Close()
		return nil, fail(semantic.ErrInvalid, "%s is not on a cgroup2 filesystem", loc.dir)
	}
	facts, err := d.probe()
	if err != nil {
		d.cache.Close()
		d.root.Close()
		return nil, semantic.Wrap(Name, "open", opts.Root, err)
	}
	d.caps = capabilities(facts)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.log.Debug("opened", "root", loc.dir, "cgroup", loc.cgroup, "controllers", facts.controllers, "threaded", threaded)
	return d, nil
}

// probe gathers the facts capabilities are decided from.
func (d *Driver) probe() (hostFacts, error) {
	h := hostFacts{root: d.loc.dir, hugeSizes: d.huge, kernel: parseKernelRelease(kernelRelease()), threaded: d.threaded, files: map[string]bool{}}
	ctl, err := d.root.ReadString("cgroup.controllers")
	if err != nil {
		return h, err
	}
	h.controllers = strings.Fields(ctl)
	// The top of a hierarchy has no cgroup.type, and none of the files a
	// group below it gets; a group's own files show what its children get.
	top, err := d.root.Exists("cgroup.type")
	if err != nil {
		return h, err
	}
	top = !top
	if dir := probeDirFor(d.loc.dir, top); dir != "" {
		// Only files whose controller the probed group has say anything.
		have := h.controllers
		if dir != d.loc.dir {
			b, err := os.ReadFile(path.Join(dir, "cgroup.controllers"))
			if err != nil {
				return h, err
			}
			have = strings.Fields(string(b))
		}
		for _, f := range probeFiles {
			c, _, _ := strings.Cut(f, ".")
			if c != "cgroup" && !slices.Contains(have, c) {
				continue
			}
			_, err := os.Stat(path.Join(dir, f))
			h.files[f] = err == nil
		}
	}
	_, err = os.Stat(path.Join(d.loc.dir, "cpu.pressure"))
	h.pressure = err == nil
	h.devices = d.probeDevices()
	return h, nil
}

// probeDevices loads the allow-everything program once: the one way to
// know the kernel takes device programs from this process.
func (d *Driver) probeDevices() error {
	p, err := devfilter.Compile(&semantic.Devices{Default: semantic.AllowByDefault})
	if err != nil {
		return err
	}
	l, err := d.cache.Acquire(context.Background(), p)
	if err != nil {
		return err
	}
	return d.cache.Release(l)
}

// Name returns "v2".
func (d *Driver) Name() string { return Name }

// Capabilities reports every feature as exact or unsupported, decided when
// the driver was opened.
func (d *Driver) Capabilities() semantic.Capabilities { return maps.Clone(d.caps) }

// Dir returns the directory of group p, for programs that need a path
// (it is not checked to exist).
func (d *Driver) Dir(p semantic.Path) string { return path.Join(d.loc.dir, p.String()) }

// CgroupPath returns group p's cgroup path as /proc/PID/cgroup names it
// ("/machine.slice/web1").
func (d *Driver) CgroupPath(p semantic.Path) string { return path.Join(d.loc.cgroup, p.String()) }

// Create makes the group and every missing level above it, enables the
// controllers the request needs from the root down to the group's parent,
// writes the request's attribute files and attaches its device program,
// in that order (see Group.Plan). On failure every level it made is
// removed; writes into levels that existed before are undone.
func (d *Driver) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	const op = "create"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	if p.IsRoot() {
		return nil, errorf(op, p, semantic.ErrInvalid, "the root exists already and is not created")
	}
	req, ioLimits, err := d.prepare(p, res)
	if err != nil {
		return nil, err
	}
	if err := d.acquire(ctx, op, p); err != nil {
		return nil, err
	}
	defer d.release()
	var made []string
	undo := func() {
		for i := len(made) - 1; i >= 0; i-- {
			// Without ctx: a cancelled Create must still take back what it
			// made.
			if err := d.root.Rmdir(context.WithoutCancel(ctx), made[i]); err != nil {
				d.log.Warn("undo mkdir", "group", made[i], "error", err)
			}
			d.dropNodes(made[i])
		}
	}
	if err := d.mkdirAll(p, &made); err != nil {
		undo()
		return nil, err
	}
	fresh := map[string]bool{}
	for _, m := range made {
		fresh[m] = true
	}
	changes, err := d.changesFor(p, req, ioLimits, fresh)
	if err == nil {
		err = d.execute(ctx, p, changes, true)
	}
	if err != nil {
		undo()
		return nil, err
	}
	return &group{d: d, path: p, rel: p.String()}, nil
}

// mkdirAll makes p and its missing ancestors, appending each level made
// to made (top-down). The group itself existing is ErrExist. A level that
// gains a child must hold no processes (the leaf rule), so that is
// checked before the mkdir below it.
func (d *Driver) mkdirAll(p semantic.Path, made *[]string) error {
	rel := p.String()
	if parent := p.Parent(); !parent.IsRoot() {
		busy, exists, err := d.holdsProcesses(parent.String())
		if err != nil {
			return wrap("create", p, err)
		}
		if !exists {
			if err := d.mkdirAll(parent, made); err != nil && !errors.Is(err, semantic.ErrExist) {
				return err
			}
		} else if busy {
			return errorf("create", p, semantic.ErrBusy,
				"%s holds processes, and cgroup v2 keeps processes only in groups without children (the leaf rule); move them into a child first",
				parent)
		}
	}
	if err := d.root.Mkdir(rel, 0o755); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return errorf("create", p, semantic.ErrExist, "group exists")
		}
		return wrap("create", p, err)
	}
	*made = append(*made, rel)
	d.dropNodes(rel)
	if d.threaded {
		if err := d.root.Write(join(rel, "cgroup.type"), "threaded"); err != nil {
			return wrap("make threaded", p, err)
		}
	}
	return nil
}

// holdsProcesses reports whether the group rel has processes of its own,
// and whether it exists. In a threaded subtree processes may sit at every
// level, so there it reports false.
func (d *Driver) holdsProcesses(rel string) (busy, exists bool, err error) {
	if d.threaded {
		ok, err := d.root.Exists(rel)
		return false, ok, err
	}
	b, err := d.root.ReadString(join(rel, "cgroup.procs"))
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	return b != "", true, nil
}

// prepare validates res, refuses unsupported fields and values the host
// cannot take, before any change, and returns it normalized with its IO
// limits as given (sorted).
func (d *Driver) prepare(p semantic.Path, res *semantic.Resources) (*semantic.Resources, []semantic.IOLimit, error) {
	if err := res.Validate(); err != nil {
		return nil, nil, withGroup(err, p)
	}
	if err := d.caps.Check(Name, res, d.approx); err != nil {
		// Name every unsupported field, not only the first: a request
		// usually needs several of one controller, and the caller should
		// learn all that stands in its way at once.
		var more []string
		for _, f := range res.Fields()[1:] {
			if !d.caps.Supports(f) && !strings.Contains(err.Error(), string(f)) {
				more = append(more, string(f))
			}
		}
		if len(more) > 0 {
			var e *semantic.Error
			if errors.As(err, &e) {
				c := *e
				c.Err = fmt.Errorf("%w; nor are %s", e.Err, strings.Join(more, ", "))
				err = &c
			}
		}
		return nil, nil, withGroup(err, p)
	}
	if res != nil {
		for _, h := range res.HugeTLB {
			if !slices.Contains(d.huge, h.PageSize) {
				return nil, nil, errorf("apply", p, semantic.ErrInvalid, "huge page size %s: this host has %v", h.PageSize, d.huge)
			}
		}
	}
	return res.Normalize(d.pageSize), sortedIOLimits(res), nil
}

// Open returns the group at p, which must exist; Root always does.
func (d *Driver) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	const op = "open"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	if err := d.checkOpen(op, p); err != nil {
		return nil, err
	}
	if !p.IsRoot() {
		ok, err := d.root.Exists(p.String())
		if err != nil {
			return nil, wrap(op, p, err)
		}
		if !ok {
			return nil, errorf(op, p, semantic.ErrNotExist, "no such group")
		}
	}
	return &group{d: d, path: p, rel: p.String()}, nil
}

// Children lists the groups directly below p, sorted by name; directories
// whose names are not valid path segments (another manager's) are
// skipped.
func (d *Driver) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	const op = "list children"
	if err := ctxErr(ctx, op, p); err != nil {
		return nil, err
	}
	if err := d.checkOpen(op, p); err != nil {
		return nil, err
	}
	names, err := d.subdirs(p.String())
	if err != nil {
		return nil, wrap(op, p, err)
	}
	out := make([]semantic.Path, 0, len(names))
	for _, n := range names {
		if semantic.ValidateSegment(n) == nil {
			out = append(out, p.Child(n))
		}
	}
	return out, nil
}

// subdirs lists the directories below the group rel, sorted.
func (d *Driver) subdirs(rel string) ([]string, error) {
	if rel == "" {
		return d.root.Subdirs()
	}
	dir, err := d.root.OpenDir(rel)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return dir.Subdirs()
}

// Close releases the driver's descriptors and programs, and ends every
// event channel. Groups stay as they are, device programs attached.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	nodes := d.nodes
	d.nodes = nil
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.close())
	}
	d.mu.Lock()
	d.pins.clear(d.cache)
	d.mu.Unlock()
	errs = append(errs, d.cache.Close(), d.root.Close())
	return errors.Join(errs...)
}

// checkOpen fails once the driver is closed.
func (d *Driver) checkOpen(op string, p semantic.Path) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errorf(op, p, semantic.ErrInvalid, "driver closed")
	}
	return nil
}

// acquire takes the driver's change lock, or fails when ctx ends first.
func (d *Driver) acquire(ctx context.Context, op string, p semantic.Path) error {
	if err := d.checkOpen(op, p); err != nil {
		return err
	}
	select {
	case d.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return wrap(op, p, ctx.Err())
	}
}

func (d *Driver) release() { <-d.lock }

// join names file in the group rel, relative to the root.
func join(rel, file string) string {
	if rel == "" {
		return file
	}
	return rel + "/" + file
}

func errorf(op string, p semantic.Path, kind error, format string, args ...any) error {
	return &semantic.Error{Driver: Name, Op: op, Group: p.Display(), Kind: kind, Err: fmt.Errorf(format, args...)}
}

func wrap(op string, p semantic.Path, err error) error {
	return semantic.Wrap(Name, op, p.Display(), err)
}

func ctxErr(ctx context.Context, op string, p semantic.Path) error {
	if err := ctx.Err(); err != nil {
		return wrap(op, p, err)
	}
	return nil
}

// withGroup names the group on an *semantic.Error built without one
// (validation and capability errors come from semantic).
func withGroup(err error, p semantic.Path) error {
	var e *semantic.Error
	if errors.As(err, &e) && e.Group == "" {
		c := *e
		c.Group, c.Driver = p.Display(), Name
		return &c
	}
	return err
}
