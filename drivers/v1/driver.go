package v1

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/semantic"
)

// hier is one v1 hierarchy the driver uses, opened at the driver's root.
type hier struct {
	key         string // as /proc/self/cgroup names it: "cpu,cpuacct", "name=systemd"
	controllers []string
	// cgroupRoot is the root's cgroup path in this hierarchy, as
	// /proc/<pid>/cgroup shows paths ("/" at the top).
	cgroupRoot string
	dir        string        // the root's directory
	root       *cgroupfs.Dir // held for the driver's life
	undo       *cgroupfs.Dir // root without the fault hook, for restores
	// seeds are the root's cpuset.cpus and cpuset.mems held open in a
	// cpuset hierarchy (nil elsewhere, or if they could not be opened):
	// a group made at the top is seeded with one pread of each.
	seeds [2]*cgroupfs.File
}

func (h *hier) has(c string) bool { return slices.Contains(h.controllers, c) }

// placement is where discover puts the root in one hierarchy.
type placement struct {
	h          mountinfo.Hierarchy
	cgroupRoot string
	dir        string
}

// discover maps Options.Root to a directory in every v1 hierarchy the
// calling process can use, from its mountinfo and /proc/self/cgroup. It
// is pure, so every layout is testable from captured files. skipped says
// which hierarchies were left out and why.
func discover(mounts []mountinfo.Mount, self []mountinfo.CgroupEntry, root string) (use []placement, skipped []string, err error) {
	rel, mode, err := parseRoot(root)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range mountinfo.Hierarchies(mounts) {
		if h.Version != 1 {
			continue
		}
		if h.Mounts[len(h.Mounts)-1].ReadOnly() {
			skipped = append(skipped, h.Key()+": mounted read-only")
			continue
		}
		var cg string
		switch mode {
		case rootTop:
			cg = path.Clean(h.Mounts[len(h.Mounts)-1].Root)
		case rootSelf:
			p, err := mountinfo.Lookup(self, h)
			if err != nil {
				skipped = append(skipped, h.Key()+": not in /proc/self/cgroup")
				continue
			}
			cg = path.Join(p, rel)
		default:
			cg = rel
		}
		dir, ok := h.Dir(cg)
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s: %s is not visible through any mount", h.Key(), cg))
			continue
		}
		use = append(use, placement{h: h, cgroupRoot: cg, dir: dir})
	}
	if len(use) == 0 {
		why := "no cgroup v1 hierarchy is mounted"
		if len(skipped) > 0 {
			why = "no usable cgroup v1 hierarchy: " + strings.Join(skipped, "; ")
		}
		return nil, skipped, &semantic.Error{Driver: Name, Op: "open driver", Kind: semantic.ErrNotSupported, Err: errors.New(why)}
	}
	return use, skipped, nil
}

// restrict keeps the hierarchies that hold a controller of only (the
// value of SettingHierarchies). Every name must be a controller of a
// usable hierarchy: a misspelt or unmounted one is an error, not a
// silently smaller driver.
func restrict(use []placement, only []string) ([]placement, error) {
	invalid := func(format string, args ...any) error {
		return &semantic.Error{Driver: Name, Op: "open driver", Kind: semantic.ErrInvalid,
			Err: fmt.Errorf("setting %s=%q: "+format, append([]any{SettingHierarchies, strings.Join(only, ",")}, args...)...)}
	}
	var avail []string
	holds := func(p placement, c string) bool {
		return p.h.Has(c) || p.h.Name != "" && c == "name="+p.h.Name
	}
	for _, p := range use {
		avail = append(avail, p.h.Key())
	}
	keep := make([]bool, len(use))
	for _, c := range only {
		i := slices.IndexFunc(use, func(p placement) bool { return holds(p, c) })
		if i < 0 {
			return nil, invalid("%q is no controller of a usable v1 hierarchy here (usable: %s)", c, strings.Join(avail, "; "))
		}
		keep[i] = true
	}
	var out []placement
	for i, p := range use {
		if keep[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

type rootMode int

const (
	rootTop rootMode = iota
	rootSelf
	rootPath
)

// parseRoot reads Options.Root: "" (each hierarchy's top as mounted),
// "self" or "self/a/b" (beneath the caller's own cgroup in each
// hierarchy), or an absolute cgroup path "/a/b" (the same path in each).
func parseRoot(root string) (rel string, mode rootMode, err error) {
	invalid := func(why string) error {
		return &semantic.Error{Driver: Name, Op: "open driver", Group: fmt.Sprintf("root %q", root), Kind: semantic.ErrInvalid, Err: errors.New(why)}
	}
	switch {
	case root == "":
		return "/", rootTop, nil
	case root == semantic.RootSelf:
		return "", rootSelf, nil
	case strings.HasPrefix(root, semantic.RootSelf+"/"):
		rel = strings.TrimPrefix(root, semantic.RootSelf+"/")
		if _, err := semantic.ParsePath(rel); err != nil {
			return "", 0, invalid(`want "self/" followed by a valid group path: ` + err.Error())
		}
		return rel, rootSelf, nil
	case strings.HasPrefix(root, "/"):
		for seg := range strings.SplitSeq(strings.Trim(root, "/"), "/") {
			if seg == "." || seg == ".." || (seg == "" && root != "/") {
				return "", 0, invalid("a cgroup path has no empty, . or .. segment")
			}
		}
		return path.Clean(root), rootPath, nil
	}
	return "", 0, invalid(`want "", "self", "self/PATH" or an absolute cgroup path`)
}

// Driver is the cgroup v1 driver. It is safe for concurrent use.
type Driver struct {
	log      hclog.Logger
	approx   bool
	hs       []*hier // in mount order
	byCtrl   map[string]*hier
	primary  *hier // where processes are listed and children found
	caps     semantic.Capabilities
	skipped  []string
	pageSize uint64
	// memMax is what a v1 memory limit reads when unlimited:
	// PAGE_COUNTER_MAX pages.
	memMax       uint64
	ioWeightFile string // "blkio.bfq.weight", "blkio.weight" or ""
	holdStats    bool

	faults faultState // the test seam behind cgroupfs.Config.Faults
	devs   devCache   // the device list compiled last

	// life guards the descriptors: every operation holds it shared, and
	// Close takes it exclusively after telling waits to stop.
	life   sync.RWMutex
	leave  func() // life.RUnlock, bound once: enter returns it on every call
	closed bool
	done   chan struct{}
	stop   sync.Once
	wg     sync.WaitGroup // event watchers

	mu    sync.Mutex
	held  map[*statsHolder]struct{} // stats descriptors held open
	locks map[string]*lockEntry     // per-group serialisation of changes
}

// faultState fails the nth change from the moment it was armed.
type faultState struct {
	mu  sync.Mutex
	nth int
	err error
	n   atomic.Int64 // changes seen, for tests
}

func (f *faultState) hook(op cgroupfs.Op, name, value string) error {
	f.n.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nth <= 0 {
		return nil
	}
	f.nth--
	if f.nth > 0 {
		return nil
	}
	err := f.err
	f.err = nil
	return err
}

// injectFault arms the seam: the nth change from now fails with err;
// nth < 1 disarms it.
func (d *Driver) injectFault(nth int, err error) {
	d.faults.mu.Lock()
	defer d.faults.mu.Unlock()
	d.faults.nth, d.faults.err = nth, err
	if nth < 1 {
		d.faults.nth, d.faults.err = 0, nil
	}
}

// Settings keys.
const (
	// SettingStatFiles: "hold" (default) keeps a group's stat files open
	// after its first Stats call, so later calls cost one pread per file;
	// "reopen" opens them on every call.
	SettingStatFiles = "stat-files"
	// SettingHierarchies: a comma-separated list of controllers
	// ("memory,pids,cpu,devices,freezer"; a named hierarchy as
	// "name=systemd") limits the driver to the hierarchies that hold
	// them; by default it uses every writable v1 hierarchy mounted. A
	// group then has a directory only in those, a process added or
	// started stays where it was in the others, and a feature whose
	// controller is left out is unsupported, as on a host that does not
	// mount it. Freeze needs freezer; without it Kill chases forks.
	SettingHierarchies = "hierarchies"
)

// New opens the driver on the v1 hierarchies mounted for the calling
// process, rooted as opts.Root says.
func New(opts semantic.Options) (*Driver, error) {
	mounts, err := mountinfo.ParseFile("/proc/self/mountinfo")
	if err != nil {
		return nil, semantic.Wrap(Name, "open driver", "", err)
	}
	self, err := mountinfo.ReadCgroup(0)
	if err != nil {
		return nil, semantic.Wrap(Name, "open driver", "", err)
	}
	return newDriver(opts, mounts, self)
}

func newDriver(opts semantic.Options, mounts []mountinfo.Mount, self []mountinfo.CgroupEntry) (*Driver, error) {
	d := &Driver{
		log:       opts.NamedLogger(Name),
		approx:    opts.AllowApproximate,
		byCtrl:    map[string]*hier{},
		pageSize:  uint64(os.Getpagesize()),
		holdStats: true,
		done:      make(chan struct{}),
		held:      map[*statsHolder]struct{}{},
		locks:     map[string]*lockEntry{},
	}
	d.leave = d.life.RUnlock
	d.memMax = math.MaxInt64 / d.pageSize * d.pageSize
	var only []string
	for k, v := range opts.Settings {
		switch {
		case k == SettingStatFiles && (v == "hold" || v == "reopen"):
			d.holdStats = v == "hold"
		case k == SettingHierarchies:
			only = strings.Split(v, ",")
		default:
			return nil, &semantic.Error{Driver: Name, Op: "open driver", Kind: semantic.ErrInvalid,
				Err: fmt.Errorf("setting %s=%q: the v1 driver takes %s=hold|reopen and %s=CONTROLLER,...", k, v, SettingStatFiles, SettingHierarchies)}
		}
	}
	use, skipped, err := discover(mounts, self, opts.Root)
	if err != nil {
		return nil, err
	}
	if only != nil {
		if use, err = restrict(use, only); err != nil {
			return nil, err
		}
	}
	d.skipped = skipped
	cfg := cgroupfs.Config{Logger: d.log, Faults: d.faults.hook}
	for _, p := range use {
		root, err := cgroupfs.OpenRoot(p.dir, cfg)
		if err != nil {
			d.closeRoots()
			return nil, semantic.Wrap(Name, "open driver", fmt.Sprintf("root %q in %s", opts.Root, p.h.Key()), err)
		}
		h := &hier{key: p.h.Key(), controllers: p.h.Controllers, cgroupRoot: p.cgroupRoot, dir: p.dir, root: root, undo: root.Unhooked()}
		if p.h.Name != "" {
			h.controllers = append(slices.Clone(h.controllers), "name="+p.h.Name)
		}
		if h.has("cpuset") {
			for i, name := range cpusetSeeds {
				// Without it, seeding reads the file by its path.
				h.seeds[i], _ = root.OpenFile(name, unix.O_RDONLY)
			}
		}
		d.hs = append(d.hs, h)
		for _, c := range h.controllers {
			d.byCtrl[c] = h
		}
	}
	d.primary = d.hs[0]
	for _, c := range []string{"freezer", "pids", "memory", "cpu", "devices", "cpuset", "blkio", "cpuacct"} {
		if h := d.byCtrl[c]; h != nil {
			d.primary = h
			break
		}
	}
	d.ioWeightFile = d.findIOWeightFile()
	d.caps = d.capabilities()
	d.log.Debug("opened", "root", opts.Root, "hierarchies", len(d.hs), "primary", d.primary.key, "skipped", skipped)
	return d, nil
}

func (d *Driver) closeRoots() {
	for _, h := range d.hs {
		for i, f := range h.seeds {
			if f != nil {
				f.Close()
				h.seeds[i] = nil
			}
		}
		h.root.Close()
	}
}

// exists reports whether file exists in the hierarchy root.
func (h *hier) exists(file string) bool {
	ok, err := h.root.Exists(file)
	return err == nil && ok
}

// findIOWeightFile finds the blkio weight file. The top of a hierarchy
// has none, so a child group, or failing that the schedulers the block
// devices offer, tell which policy is loaded: bfq gives blkio.bfq.weight,
// the legacy cfq (before Linux 5.0) blkio.weight.
func (d *Driver) findIOWeightFile() string {
	h := d.byCtrl["blkio"]
	if h == nil {
		return ""
	}
	candidates := []string{"blkio.weight", "blkio.bfq.weight"}
	dirs := []string{""}
	if kids, err := h.root.Subdirs(); err == nil && len(kids) > 0 {
		dirs = append(dirs, kids[0])
	}
	for _, dir := range dirs {
		for _, f := range candidates {
			if h.exists(path.Join(dir, f)) || dir == "" && h.exists(f) {
				return f
			}
		}
	}
	scheds, _ := os.ReadFile("/sys/block/" + firstBlockDevice() + "/queue/scheduler")
	for _, w := range strings.Fields(strings.NewReplacer("[", "", "]", "").Replace(string(scheds))) {
		switch w {
		case "cfq":
			return "blkio.weight"
		case "bfq":
			return "blkio.bfq.weight"
		}
	}
	return ""
}

func firstBlockDevice() string {
	ents, err := os.ReadDir("/sys/block")
	if err != nil || len(ents) == 0 {
		return "none"
	}
	return ents[0].Name()
}

// Conversions this driver names in its capabilities.
const (
	convMemoryMax = "memory.max -> memory.limit_in_bytes"
	convLow       = "memory.low -> memory.soft_limit_in_bytes (v1's soft limit: under global pressure a group above it is reclaimed first; a new group's is max)"
	convHigh      = "memory.high -> memory.soft_limit_in_bytes: v1 has no throttle limit; its soft limit only makes usage above it reclaimed first under global pressure; shares the file with memory.low"
	convMin       = "memory.min -> memory.soft_limit_in_bytes: v1 has no hard protection; its soft limit only orders global reclaim; shares the file with memory.low"
	convCPUMax    = "cpu.max -> cpu.cfs_quota_us / cpu.cfs_period_us: " + semantic.ConvCPUsToQuota
	convCpuset    = "-> cpuset.cpus / cpuset.mems; each new level is seeded from its parent"
	convIOBFQ     = "io.weight -> blkio.bfq.weight: the same number on 1..1000 (both default 100); above 1000 it clamps to 1000, which is approximate"
	convIOLimits  = "io.limits -> blkio.throttle.{read,write}_{bps,iops}_device"
	convDevices   = "rule list -> a default-deny exception list in devices.allow/devices.deny (or \"a\" when everything is allowed); lists v1 cannot express are refused"
	convHugeTLB   = "hugetlb -> hugetlb.<size>.limit_in_bytes"
)

func (d *Driver) capabilities() semantic.Capabilities {
	caps := semantic.Capabilities{}
	set := func(f semantic.Feature, s semantic.Support, conv, reason string) {
		caps[f] = semantic.Capability{Feature: f, Support: s, Conversion: conv, Reason: reason}
	}
	none := func(ctrl string) string { return "no writable v1 " + ctrl + " hierarchy at the root" }
	for _, f := range semantic.AllFeatures() {
		set(f, semantic.Unsupported, "", "not available")
	}
	if h := d.byCtrl["memory"]; h != nil {
		set(semantic.MemoryMax, semantic.Exact, convMemoryMax, "")
		set(semantic.MemoryLow, semantic.Exact, convLow, "")
		// Without approximations these are plainly unsupported: they
		// would share memory.low's file, so reading them back would make
		// every change of one look like a change of the others.
		if d.approx {
			set(semantic.MemoryHigh, semantic.Approximate, convHigh, "v1 has no throttle limit")
			set(semantic.MemoryMin, semantic.Approximate, convMin, "v1 has no hard reclaim protection")
		} else {
			set(semantic.MemoryHigh, semantic.Unsupported, "", "v1 has no throttle limit; with AllowApproximate: "+convHigh)
			set(semantic.MemoryMin, semantic.Unsupported, "", "v1 has no hard reclaim protection; with AllowApproximate: "+convMin)
		}
		if h.exists("memory.memsw.limit_in_bytes") {
			set(semantic.MemorySwap, semantic.Exact, semantic.ConvSwapToMemsw, "")
		} else {
			set(semantic.MemorySwap, semantic.Unsupported, "", "swap accounting is off (no memory.memsw.limit_in_bytes; boot with swapaccount=1)")
		}
		if h.exists("cgroup.event_control") {
			set(semantic.EventsOOM, semantic.Exact, "eventfd on memory.oom_control through cgroup.event_control; kills counted from memory.oom_control", "")
		} else {
			set(semantic.EventsOOM, semantic.Unsupported, "", "the kernel has no cgroup.event_control (CONFIG_MEMCG_V1 events)")
		}
	} else {
		for _, f := range []semantic.Feature{semantic.MemoryMax, semantic.MemoryLow, semantic.MemoryHigh, semantic.MemoryMin, semantic.MemorySwap, semantic.EventsOOM} {
			set(f, semantic.Unsupported, "", none("memory"))
		}
	}
	if h := d.byCtrl["cpu"]; h != nil {
		set(semantic.CPUWeight, semantic.Exact, "cpu.weight -> cpu.shares: "+semantic.ConvWeightToShares, "")
		if h.exists("cpu.cfs_quota_us") {
			set(semantic.CPUMaxFeature, semantic.Exact, convCPUMax, "")
		} else {
			set(semantic.CPUMaxFeature, semantic.Unsupported, "", "the kernel has no CFS bandwidth control (cpu.cfs_quota_us)")
		}
	} else {
		set(semantic.CPUWeight, semantic.Unsupported, "", none("cpu"))
		set(semantic.CPUMaxFeature, semantic.Unsupported, "", none("cpu"))
	}
	if d.byCtrl["cpuset"] != nil {
		set(semantic.CPUSetCPUs, semantic.Exact, "cpu.cpus "+convCpuset, "")
		set(semantic.CPUSetMems, semantic.Exact, "cpu.mems "+convCpuset, "")
	} else {
		set(semantic.CPUSetCPUs, semantic.Unsupported, "", none("cpuset"))
		set(semantic.CPUSetMems, semantic.Unsupported, "", none("cpuset"))
	}
	if h := d.byCtrl["blkio"]; h != nil {
		switch d.ioWeightFile {
		case "blkio.bfq.weight":
			set(semantic.IOWeight, semantic.Exact, convIOBFQ, "")
		case "blkio.weight":
			set(semantic.IOWeight, semantic.Exact, "io.weight -> blkio.weight: "+semantic.ConvIOWeightToBlkio, "")
		default:
			set(semantic.IOWeight, semantic.Unsupported, "", "no proportional IO policy (neither bfq nor cfq) is loaded")
		}
		if h.exists("blkio.throttle.read_bps_device") {
			set(semantic.IOLimits, semantic.Exact, convIOLimits, "")
		} else {
			set(semantic.IOLimits, semantic.Unsupported, "", "the kernel has no blkio throttling")
		}
	} else {
		set(semantic.IOWeight, semantic.Unsupported, "", none("blkio"))
		set(semantic.IOLimits, semantic.Unsupported, "", none("blkio"))
	}
	if d.byCtrl["pids"] != nil {
		set(semantic.PidsMax, semantic.Exact, "pids.max", "")
	} else {
		set(semantic.PidsMax, semantic.Unsupported, "", none("pids"))
	}
	if d.byCtrl["devices"] != nil {
		set(semantic.DevicesFeature, semantic.Exact, convDevices, "")
	} else {
		set(semantic.DevicesFeature, semantic.Unsupported, "", none("devices"))
	}
	if d.byCtrl["hugetlb"] != nil {
		set(semantic.HugeTLB, semantic.Exact, convHugeTLB, "")
	} else {
		set(semantic.HugeTLB, semantic.Unsupported, "", none("hugetlb"))
	}
	if d.byCtrl["freezer"] != nil {
		set(semantic.Freeze, semantic.Exact, "freezer.state, waiting through FREEZING", "")
		set(semantic.Kill, semantic.Exact, "freeze, SIGKILL every task, thaw, wait until empty", "")
		set(semantic.EventsFrozen, semantic.Exact, "freezer.state, polled", "")
	} else {
		set(semantic.Freeze, semantic.Unsupported, "", none("freezer"))
		set(semantic.EventsFrozen, semantic.Unsupported, "", none("freezer"))
		set(semantic.Kill, semantic.Exact, "SIGKILL every task until the group is empty (no freezer: a forking group is chased)", "")
	}
	set(semantic.Threads, semantic.Exact, "tasks", "")
	set(semantic.StartInside, semantic.Exact, "the starting thread joins the group and forks there; the child is born inside", "")
	set(semantic.EventsPopulated, semantic.Exact, "cgroup.procs of the group and its descendants, polled", "")
	set(semantic.StatsPressure, semantic.Unsupported, "", "v1 groups have no pressure (PSI) files")
	return caps
}

// Name returns "v1".
func (d *Driver) Name() string { return Name }

// Capabilities reports what the driver does on this host.
func (d *Driver) Capabilities() semantic.Capabilities { return maps.Clone(d.caps) }

// enter starts an operation: it fails once the driver is closed or ctx
// has ended, and otherwise holds the descriptors open until release.
func (d *Driver) enter(ctx context.Context, op string, p semantic.Path) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, semantic.Wrap(Name, op, p.Display(), err)
	}
	d.life.RLock()
	if d.closed {
		d.life.RUnlock()
		return nil, errorf(op, p, semantic.ErrInvalid, "the driver is closed")
	}
	return d.leave, nil
}

func errorf(op string, p semantic.Path, kind error, format string, args ...any) error {
	return &semantic.Error{Driver: Name, Op: op, Group: p.Display(), Kind: kind, Err: fmt.Errorf(format, args...)}
}

func wrap(op string, p semantic.Path, err error) error {
	if err == nil {
		return nil
	}
	var e *semantic.Error
	if errors.As(err, &e) && e.Driver == Name && e.Group == p.Display() {
		return err
	}
	return semantic.Wrap(Name, op, p.Display(), err)
}

// lockEntry serialises changes to one group within this driver.
type lockEntry struct {
	mu   sync.Mutex
	key  string
	refs int
}

// lock serialises changes to p (Create, Apply, Delete, Freeze, ...), so
// a read-modify-write of its files is not interleaved with another:
// defer d.unlock(d.lock(p)).
func (d *Driver) lock(p semantic.Path) *lockEntry {
	key := p.String()
	d.mu.Lock()
	e := d.locks[key]
	if e == nil {
		e = &lockEntry{key: key}
		d.locks[key] = e
	}
	e.refs++
	d.mu.Unlock()
	e.mu.Lock()
	return e
}

// unlock ends what lock began.
func (d *Driver) unlock(e *lockEntry) {
	e.mu.Unlock()
	d.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(d.locks, e.key)
	}
	d.mu.Unlock()
}

// rel is a group's directory below the root in every hierarchy.
func rel(p semantic.Path) string { return p.String() }

// file is the path of an attribute file of group p below the root.
func file(p semantic.Path, name string) string {
	if p.IsRoot() {
		return name
	}
	return p.String() + "/" + name
}

// Open returns the group at p; ErrNotExist unless its directory exists in
// every hierarchy.
func (d *Driver) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	const op = "open"
	release, err := d.enter(ctx, op, p)
	if err != nil {
		return nil, err
	}
	defer release()
	if !p.IsRoot() {
		var missing []string
		for _, h := range d.hs {
			ok, err := h.root.Exists(rel(p))
			if err != nil {
				return nil, wrap(op, p, err)
			}
			if !ok {
				missing = append(missing, h.key)
			}
		}
		switch {
		case len(missing) == len(d.hs):
			return nil, errorf(op, p, semantic.ErrNotExist, "no such group")
		case len(missing) > 0:
			return nil, errorf(op, p, semantic.ErrNotExist, "the group is missing in hierarchies %s (made or removed outside this driver?)", strings.Join(missing, ", "))
		}
	}
	return d.newGroup(p), nil
}

// Children lists the groups directly below p in the primary hierarchy,
// sorted, skipping directories that are not valid segments.
func (d *Driver) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	const op = "list children"
	release, err := d.enter(ctx, op, p)
	if err != nil {
		return nil, err
	}
	defer release()
	names, err := d.subdirs(p)
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

// subdirs lists the child directories of p in the primary hierarchy.
func (d *Driver) subdirs(p semantic.Path) ([]string, error) {
	dir := d.primary.root
	if !p.IsRoot() {
		sub, err := d.primary.root.OpenDir(rel(p))
		if err != nil {
			return nil, err
		}
		defer sub.Close()
		dir = sub
	}
	return dir.Subdirs()
}

// Close releases every descriptor the driver holds and ends event
// channels; groups stay. Later calls fail with ErrInvalid.
func (d *Driver) Close() error {
	// Waits in flight (Freeze, Kill, Delete, event watchers) end on done,
	// so the exclusive lock below is not held up by them.
	d.stop.Do(func() { close(d.done) })
	d.life.Lock()
	if d.closed {
		d.life.Unlock()
		return nil
	}
	d.closed = true
	d.life.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	for s := range d.held {
		s.close()
	}
	clear(d.held)
	d.mu.Unlock()
	d.closeRoots()
	return nil
}

// probe is Probe's decision from a parsed mountinfo and whether systemd
// is PID 1 (hostinfo.Systemd's verdict, and its reason).
func probe(mounts []mountinfo.Mount, systemd bool, why string) (bool, string) {
	hs := mountinfo.Hierarchies(mounts)
	layout := mountinfo.LayoutOf(hs)
	var ctrls []string
	for _, h := range hs {
		if h.Version == 1 {
			ctrls = append(ctrls, h.Controllers...)
		}
	}
	switch {
	case layout != mountinfo.Legacy && layout != mountinfo.Hybrid:
		return false, "no cgroup v1 hierarchy with controllers is mounted (layout: " + layout.String() + ")"
	case systemd:
		return false, "systemd is PID 1 and owns the " + layout.String() + " cgroup tree; use the systemd driver"
	}
	slices.Sort(ctrls)
	return true, layout.String() + " layout with v1 controllers " + strings.Join(slices.Compact(ctrls), ",") + "; " + why
}
