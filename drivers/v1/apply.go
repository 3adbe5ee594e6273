package v1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// write is one attribute file write.
type write struct {
	h       *hier
	file    string // attribute file name in the group's directory
	value   string
	feature semantic.Feature
}

// step is a write and the writes that undo it (empty while creating: a
// failed Create removes the group instead).
type step struct {
	write
	undo []write
}

// prepared is a request checked against everything that could refuse it
// before a change: validation, capabilities, and what v1 cannot express.
type prepared struct {
	res     *semantic.Resources // normalized
	devices *compiled           // compiled Devices, if set
}

func (d *Driver) prepare(p semantic.Path, res *semantic.Resources) (*prepared, error) {
	if res == nil {
		res = &semantic.Resources{}
	}
	if err := res.Validate(); err != nil {
		return nil, withGroup(err, p)
	}
	if err := d.caps.Check(Name, res, d.approx); err != nil {
		return nil, withGroup(err, p)
	}
	out := &prepared{res: res.Normalize(d.pageSize)}
	if res.IO != nil && res.IO.Limits != nil {
		// Normalize drops a device whose figures are all 0, which in a
		// request means "remove this device's limits": plan from the
		// request's own list.
		out.res.IO.Limits = slices.Clone(res.IO.Limits)
	}
	if m := res.Memory; m != nil {
		var soft []string
		for _, f := range []struct {
			name string
			set  bool
		}{{"memory.low", m.Low != nil}, {"memory.high", m.High != nil}, {"memory.min", m.Min != nil}} {
			if f.set {
				soft = append(soft, f.name)
			}
		}
		if len(soft) > 1 {
			return nil, withGroup(semantic.NotSupported(Name, semantic.Feature(soft[1]),
				fmt.Sprintf("%s all map to memory.soft_limit_in_bytes on v1; set one of them", strings.Join(soft, " and "))), p)
		}
	}
	if io := res.IO; io != nil && io.Weight != nil {
		if _, exact := d.ioWeight(*io.Weight); !exact && !d.approx {
			return nil, withGroup(semantic.NotSupported(Name, semantic.IOWeight,
				fmt.Sprintf("io.weight %d is outside what %s holds and would be clamped; allow approximations to apply it", *io.Weight, d.ioWeightFile)), p)
		}
	}
	if res.Devices != nil {
		c, err := d.devs.compile(res.Devices)
		if err != nil {
			return nil, withGroup(err, p)
		}
		out.devices = c
	}
	return out, nil
}

// withGroup fills in the driver and group of an error semantic made
// without them.
func withGroup(err error, p semantic.Path) error {
	var e *semantic.Error
	if errors.As(err, &e) && e.Group == "" {
		c := *e
		c.Group, c.Driver = p.Display(), Name
		return &c
	}
	return err
}

// ioWeight converts an IO weight for the weight file this host has.
func (d *Driver) ioWeight(w uint64) (uint64, bool) {
	if d.ioWeightFile == "blkio.weight" {
		return semantic.IOWeightToBlkio(w)
	}
	return min(max(w, 1), 1000), w >= 1 && w <= 1000
}

// ioWeightBack is the inverse of ioWeight.
func (d *Driver) ioWeightBack(v uint64) uint64 {
	if d.ioWeightFile == "blkio.weight" {
		return semantic.BlkioToIOWeight(v)
	}
	return v
}

// current reads a group's files as a plan needs them. For a group being
// created it answers from the defaults a new v1 group has, and from what
// Create seeded, without reading.
type current struct {
	d     *Driver
	p     semantic.Path
	fresh bool
	cache map[string]string // "key/file" -> trimmed content
}

// remember caches a file's content, as read or seeded.
func (c *current) remember(h *hier, name, value string) {
	if c.cache == nil {
		c.cache = map[string]string{}
	}
	c.cache[h.key+"/"+name] = value
}

// cached looks a file up in the cache; the key is built on the stack, as
// a map index by string(bytes) does not allocate.
func (c *current) cached(h *hier, name string) (string, bool) {
	if len(c.cache) == 0 {
		return "", false
	}
	var buf [128]byte
	key := append(append(append(buf[:0], h.key...), '/'), name...)
	v, ok := c.cache[string(key)]
	return v, ok
}

// defaults a new group has, for the files whose old value orders writes.
var freshDefaults = map[string]string{
	"memory.limit_in_bytes":       "-1",
	"memory.memsw.limit_in_bytes": "-1",
	"memory.soft_limit_in_bytes":  "-1",
	"cpu.shares":                  "1024",
	"cpu.cfs_quota_us":            "-1",
	"cpu.cfs_period_us":           "100000",
	"pids.max":                    "max",
	"blkio.bfq.weight":            "100",
	"blkio.weight":                "500",
}

func (c *current) read(h *hier, name string) (string, error) {
	if v, ok := c.cached(h, name); ok {
		return v, nil
	}
	if c.fresh {
		if v, ok := freshDefaults[name]; ok {
			return v, nil
		}
		if strings.HasPrefix(name, "blkio.throttle.") {
			return "", nil
		}
	}
	v, err := h.root.ReadString(file(c.p, name))
	if err != nil {
		return "", err
	}
	c.remember(h, name, v)
	return v, nil
}

// bytes reads a memory limit: Unlimited at or above PAGE_COUNTER_MAX.
func (c *current) bytes(h *hier, name string) (semantic.Bytes, string, error) {
	raw, err := c.read(h, name)
	if err != nil {
		return 0, "", err
	}
	return c.d.parseMem(raw), raw, nil
}

func (d *Driver) parseMem(raw string) semantic.Bytes {
	if raw == "-1" {
		return semantic.Unlimited
	}
	v, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || v >= d.memMax {
		return semantic.Unlimited
	}
	return semantic.Bytes(v)
}

// memValue renders a memory limit for a v1 file: "-1" for max.
func memValue(b semantic.Bytes) string {
	if b.IsUnlimited() {
		return "-1"
	}
	return strconv.FormatUint(uint64(b), 10)
}

// plan turns a prepared request into ordered writes, from the group's
// current state. childless says whether the group has children (needed
// only for devices; nil means "find out").
func (d *Driver) plan(pr *prepared, cur *current) ([]step, error) {
	steps := make([]step, 0, 8)
	add := func(w write, undoValue string, old string) {
		if w.value == old {
			return
		}
		st := step{write: w}
		if !cur.fresh {
			st.undo = []write{{h: w.h, file: w.file, value: undoValue, feature: w.feature}}
		}
		steps = append(steps, st)
	}
	res := pr.res
	if m := res.Memory; m != nil {
		h := d.byCtrl["memory"]
		if m.Max != nil || m.Swap != nil {
			s, err := d.planMemory(h, m, cur)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
		for _, f := range []struct {
			v    *semantic.Bytes
			feat semantic.Feature
		}{{m.Low, semantic.MemoryLow}, {m.High, semantic.MemoryHigh}, {m.Min, semantic.MemoryMin}} {
			if f.v == nil {
				continue
			}
			old, raw, err := cur.bytes(h, "memory.soft_limit_in_bytes")
			if err != nil {
				return nil, err
			}
			if old != *f.v {
				add(write{h, "memory.soft_limit_in_bytes", memValue(*f.v), f.feat}, raw, "")
			}
		}
	}
	if c := res.CPU; c != nil {
		if c.Weight != nil {
			h := d.byCtrl["cpu"]
			old, err := cur.read(h, "cpu.shares")
			if err != nil {
				return nil, err
			}
			add(write{h, "cpu.shares", strconv.FormatUint(semantic.WeightToShares(*c.Weight), 10), semantic.CPUWeight}, old, old)
		}
		if c.Max != nil {
			s, err := d.planCPUMax(c.Max, cur)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
		for _, f := range []struct {
			set  semantic.CPUSet
			file string
			feat semantic.Feature
		}{{c.Cpus, "cpuset.cpus", semantic.CPUSetCPUs}, {c.Mems, "cpuset.mems", semantic.CPUSetMems}} {
			if f.set == nil {
				continue
			}
			h := d.byCtrl["cpuset"]
			old, err := cur.read(h, f.file)
			if err != nil {
				return nil, err
			}
			undo := old
			if undo == "" {
				undo = "\n" // an empty write would not reach the kernel's handler
			}
			add(write{h, f.file, f.set.String(), f.feat}, undo, old)
		}
	}
	if io := res.IO; io != nil {
		h := d.byCtrl["blkio"]
		if io.Weight != nil {
			old, err := cur.read(h, d.ioWeightFile)
			if err != nil && !cur.fresh {
				return nil, err
			}
			v, _ := d.ioWeight(*io.Weight)
			add(write{h, d.ioWeightFile, strconv.FormatUint(v, 10), semantic.IOWeight}, strings.TrimPrefix(old, "default "), strings.TrimPrefix(old, "default "))
		}
		if io.Limits != nil {
			s, err := d.planIOLimits(h, io.Limits, cur)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
	}
	if ps := res.Pids; ps != nil && ps.Max != nil {
		h := d.byCtrl["pids"]
		old, err := cur.read(h, "pids.max")
		if err != nil {
			return nil, err
		}
		add(write{h, "pids.max", ps.Max.String(), semantic.PidsMax}, old, old)
	}
	if pr.devices != nil {
		s, err := d.planDevices(pr.devices, cur)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s...)
	}
	for _, l := range res.HugeTLB {
		h := d.byCtrl["hugetlb"]
		name := "hugetlb." + hugeName(l.PageSize) + ".limit_in_bytes"
		old, raw, err := cur.bytes(h, name)
		if err != nil {
			if errors.Is(err, semantic.ErrNotExist) || errors.Is(err, errNoEnt) {
				return nil, semantic.NotSupported(Name, semantic.HugeTLB, fmt.Sprintf("this host has no %s huge pages (%s missing)", l.PageSize, name))
			}
			return nil, err
		}
		if old != l.Limit {
			add(write{h, name, memValue(l.Limit), semantic.HugeTLB}, raw, "")
		}
	}
	return steps, nil
}

// hugeName is the kernel's name of a huge page size in hugetlb files:
// "2MB", "1GB", "64KB".
func hugeName(ps semantic.Bytes) string {
	switch {
	case ps >= semantic.GiB && ps%semantic.GiB == 0:
		return strconv.FormatUint(uint64(ps/semantic.GiB), 10) + "GB"
	case ps >= semantic.MiB && ps%semantic.MiB == 0:
		return strconv.FormatUint(uint64(ps/semantic.MiB), 10) + "MB"
	}
	return strconv.FormatUint(uint64(ps/semantic.KiB), 10) + "KB"
}

// planMemory orders the memory and memsw limit writes. The kernel keeps
// memory <= memsw at every moment, so going from (m0, s0) to (m1, s1):
// memsw first when m0 <= s1 (then m1 <= s1 holds for the second write),
// memory first otherwise (then m1 < m0 <= s0). A request that changes
// only the memory limit keeps the swap allowance, as a v2 memory.swap.max
// would: memsw moves with it.
func (d *Driver) planMemory(h *hier, m *semantic.Memory, cur *current) ([]step, error) {
	m0, rawM, err := cur.bytes(h, "memory.limit_in_bytes")
	if err != nil {
		return nil, err
	}
	m1 := m0
	if m.Max != nil {
		m1 = *m.Max
	}
	hasMemsw := d.caps.Get(semantic.MemorySwap).Support == semantic.Exact
	s0, s1, rawS := semantic.Bytes(0), semantic.Bytes(0), ""
	if hasMemsw {
		if s0, rawS, err = cur.bytes(h, "memory.memsw.limit_in_bytes"); err != nil {
			return nil, err
		}
		s1 = s0
		// memsw is memory plus swap, so with no memory limit no swap
		// limit can be expressed: refuse rather than let it read back max.
		swap, known := semantic.Bytes(semantic.Unlimited), true
		if m.Swap != nil {
			swap = *m.Swap
		} else {
			swap, known = semantic.MemswToSwap(m0, s0)
		}
		if m1.IsUnlimited() && known && !swap.IsUnlimited() {
			return nil, withGroup(semantic.NotSupported(Name, semantic.MemorySwap, fmt.Sprintf(
				"v1 limits memory and swap together (memory.memsw.limit_in_bytes is memory + swap), so a swap limit (%s) needs a memory limit, and memory.max would be max; set memory.swap to max with it", swap)), cur.p)
		}
		switch {
		case m.Swap != nil:
			s1 = semantic.SwapToMemsw(m1, *m.Swap)
		case m1 != m0:
			if swap, ok := semantic.MemswToSwap(m0, s0); ok {
				s1 = semantic.SwapToMemsw(m1, swap)
			} else {
				s1 = max(s0, m1)
			}
		}
	}
	undo := func(w write, raw string) []write {
		if cur.fresh {
			return nil
		}
		return []write{{h: h, file: w.file, value: raw, feature: w.feature}}
	}
	swFeat := semantic.MemoryMax
	if m.Swap != nil {
		swFeat = semantic.MemorySwap
	}
	mw := write{h, "memory.limit_in_bytes", memValue(m1), semantic.MemoryMax}
	sw := write{h, "memory.memsw.limit_in_bytes", memValue(s1), swFeat}
	mst, sst := step{mw, undo(mw, rawM)}, step{sw, undo(sw, rawS)}
	switch {
	case m1 == m0 && s1 == s0:
		return nil, nil
	case s1 == s0:
		return []step{mst}, nil
	case m1 == m0:
		return []step{sst}, nil
	case m0 <= s1:
		return []step{sst, mst}, nil
	}
	return []step{mst, sst}, nil
}

// planCPUMax orders the quota and period writes so the quota-to-period
// ratio between them never exceeds the larger of the old and new ratios
// (a v1 child's ratio is checked against its parent's at each write):
// period first when it grows, quota first when it shrinks or the cap is
// removed.
func (d *Driver) planCPUMax(m *semantic.CPUMax, cur *current) ([]step, error) {
	h := d.byCtrl["cpu"]
	rawQ, err := cur.read(h, "cpu.cfs_quota_us")
	if err != nil {
		return nil, err
	}
	rawP, err := cur.read(h, "cpu.cfs_period_us")
	if err != nil {
		return nil, err
	}
	p1 := m.EffectivePeriod().Microseconds()
	q1 := int64(-1)
	if m.CPUs != 0 {
		q1 = semantic.CPUsToQuota(m.CPUs, m.EffectivePeriod()).Microseconds()
	}
	q0, err1 := strconv.ParseInt(rawQ, 10, 64)
	p0, err2 := strconv.ParseInt(rawP, 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("cpu.cfs_quota_us %q, cpu.cfs_period_us %q: %w", rawQ, rawP, statfile.ErrFormat)
	}
	mk := func(name string, v int64, old string) step {
		w := write{h, name, strconv.FormatInt(v, 10), semantic.CPUMaxFeature}
		st := step{write: w}
		if !cur.fresh {
			st.undo = []write{{h: h, file: name, value: old, feature: semantic.CPUMaxFeature}}
		}
		return st
	}
	var out []step
	quota, period := mk("cpu.cfs_quota_us", q1, rawQ), mk("cpu.cfs_period_us", p1, rawP)
	quotaFirst := q1 == -1 || (q0 != -1 && p1 < p0)
	if quotaFirst && q1 != q0 {
		out = append(out, quota)
	}
	if p1 != p0 {
		out = append(out, period)
	}
	if !quotaFirst && q1 != q0 {
		out = append(out, quota)
	}
	return out, nil
}

// throttleFiles map each IO limit figure to its v1 file.
var throttleFiles = []struct {
	file string
	get  func(semantic.IOLimit) uint64
	set  func(*semantic.IOLimit, uint64)
}{
	{"blkio.throttle.read_bps_device", func(l semantic.IOLimit) uint64 { return l.ReadBPS }, func(l *semantic.IOLimit, v uint64) { l.ReadBPS = v }},
	{"blkio.throttle.write_bps_device", func(l semantic.IOLimit) uint64 { return l.WriteBPS }, func(l *semantic.IOLimit, v uint64) { l.WriteBPS = v }},
	{"blkio.throttle.read_iops_device", func(l semantic.IOLimit) uint64 { return l.ReadIOPS }, func(l *semantic.IOLimit, v uint64) { l.ReadIOPS = v }},
	{"blkio.throttle.write_iops_device", func(l semantic.IOLimit) uint64 { return l.WriteIOPS }, func(l *semantic.IOLimit, v uint64) { l.WriteIOPS = v }},
}

// planIOLimits writes each listed device's four throttles ("8:0 0"
// removes one), only where they change.
func (d *Driver) planIOLimits(h *hier, limits []semantic.IOLimit, cur *current) ([]step, error) {
	var out []step
	for _, tf := range throttleFiles {
		raw, err := cur.read(h, tf.file)
		if err != nil {
			return nil, err
		}
		vals, err := statfile.ParseDeviceValues([]byte(raw))
		if err != nil {
			return nil, err
		}
		old := map[[2]int64]uint64{}
		for _, v := range vals {
			old[[2]int64{v.Major, v.Minor}] = v.Value
		}
		for _, l := range limits {
			want, had := tf.get(l), old[[2]int64{l.Major, l.Minor}]
			if want == had {
				continue
			}
			dev := l.Device() + " "
			st := step{write: write{h, tf.file, dev + strconv.FormatUint(want, 10), semantic.IOLimits}}
			if !cur.fresh {
				st.undo = []write{{h: h, file: tf.file, value: dev + strconv.FormatUint(had, 10), feature: semantic.IOLimits}}
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// planDevices computes the device list transition (see transition); a
// new group takes the one made with the list.
func (d *Driver) planDevices(target *compiled, cur *current) ([]step, error) {
	h := d.byCtrl["devices"]
	var old *devState
	childless := false
	dsteps := target.fresh
	if !cur.fresh {
		raw, err := cur.read(h, "devices.list")
		if err != nil {
			return nil, err
		}
		rules, err := statfile.ParseDevicesList([]byte(raw))
		if err != nil {
			return nil, err
		}
		s := devicesFromList(rules)
		old = &s
		if !s.allow && len(s.ex) > 1 {
			kids, err := h.root.OpenDir(rel(cur.p))
			if err != nil {
				return nil, err
			}
			names, err := kids.Subdirs()
			kids.Close()
			if err != nil {
				return nil, err
			}
			childless = len(names) == 0
		}
		dsteps = transition(old, target.state, childless)
	}
	out := make([]step, 0, len(dsteps))
	for _, ds := range dsteps {
		st := step{write: write{h, ds.w.file, ds.w.value, semantic.DevicesFeature}}
		for _, u := range ds.undo {
			st.undo = append(st.undo, write{h, u.file, u.value, semantic.DevicesFeature})
		}
		out = append(out, st)
	}
	return out, nil
}

// run makes the writes in order. If one fails (or ctx ends between two),
// the writes made so far are undone in reverse, through the hierarchies'
// unhooked roots, and the error names the feature of the failed write.
func (d *Driver) run(ctx context.Context, p semantic.Path, steps []step) error {
	for i, st := range steps {
		err := ctx.Err()
		if err == nil {
			err = st.h.root.Write(file(p, st.file), st.value)
		}
		if err != nil {
			if rerr := d.rollback(p, steps[:i]); rerr != nil {
				err = fmt.Errorf("%w; restoring the earlier writes failed too: %w", err, rerr)
			}
			return wrap("set "+string(st.feature), p, err)
		}
	}
	return nil
}

func (d *Driver) rollback(p semantic.Path, done []step) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		for _, u := range done[i].undo {
			if err := u.h.undo.Write(file(p, u.file), u.value); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Create makes p and every missing level above it in every hierarchy
// (seeding cpuset.cpus and cpuset.mems of each new level from its
// parent), then applies res. It fails with ErrExist if p exists; on any
// failure it removes every directory it made.
func (d *Driver) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	const op = "create"
	release, err := d.enter(ctx, op, p)
	if err != nil {
		return nil, err
	}
	defer release()
	if p.IsRoot() {
		return nil, errorf(op, p, semantic.ErrInvalid, "the root exists already and is not created")
	}
	pr, err := d.prepare(p, res)
	if err != nil {
		return nil, err
	}
	defer d.unlock(d.lock(p))
	type made struct {
		h   *hier
		lvl semantic.Path
	}
	var madeBuf [16]made // one level in every hierarchy, usually
	mades := madeBuf[:0]
	undo := func() error {
		var errs []error
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for i := len(mades) - 1; i >= 0; i-- {
			if err := mades[i].h.undo.Rmdir(ctx, rel(mades[i].lvl)); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	fail := func(op string, err error) (semantic.Group, error) {
		if uerr := undo(); uerr != nil {
			err = fmt.Errorf("%w; removing what was made failed too: %w", err, uerr)
		}
		return nil, wrap(op, p, err)
	}
	cur := &current{d: d, p: p, fresh: true}
	// The plan reads the new group's cpuset only to set it: only then is
	// what seeding wrote worth remembering.
	setsCpuset := pr.res.CPU != nil && (pr.res.CPU.Cpus != nil || pr.res.CPU.Mems != nil)
	for _, h := range d.hs {
		if err := ctx.Err(); err != nil {
			return fail(op, err)
		}
		// Most groups are made below a level that exists: try the leaf
		// first, and walk down from the top only when its parent is
		// missing.
		first := p.Len()
		err := h.root.Mkdir(rel(p), 0o755)
		if errors.Is(err, errNoEnt) && p.Len() > 1 {
			first = 1
		} else if err == nil {
			mades = append(mades, made{h, p})
		}
		for i := first; i <= p.Len(); i++ {
			lvl := p.Prefix(i)
			if i < p.Len() || first < p.Len() {
				err = h.root.Mkdir(rel(lvl), 0o755)
				if err == nil {
					mades = append(mades, made{h, lvl})
				}
			}
			if errors.Is(err, errExist) {
				if i == p.Len() {
					if len(mades) == 0 {
						return nil, errorf(op, p, semantic.ErrExist, "group exists")
					}
					return fail(op, errors.Join(semantic.ErrExist, err))
				}
				continue
			}
			if err != nil {
				return fail(op, err)
			}
			if h.has("cpuset") {
				if err := d.seedCpuset(h, lvl, i == p.Len() && setsCpuset, cur); err != nil {
					return fail(op, err)
				}
			}
		}
	}
	steps, err := d.plan(pr, cur)
	if err != nil {
		return fail(op, err)
	}
	if err := d.run(ctx, p, steps); err != nil {
		return fail(op, err)
	}
	return d.newGroup(p), nil
}

// cpusetSeeds are the files a new cpuset level copies from its parent.
var cpusetSeeds = [2]string{"cpuset.cpus", "cpuset.mems"}

// seedCpuset copies the parent's cpuset.cpus and cpuset.mems into a new
// level: a v1 cpuset group starts empty, and no task can join it until
// both are set (ENOSPC).
func (d *Driver) seedCpuset(h *hier, lvl semantic.Path, remember bool, cur *current) error {
	parent := lvl.Parent()
	for i, name := range cpusetSeeds {
		v, err := h.readSeed(parent, i)
		if err != nil {
			return err
		}
		if err := h.root.Write(file(lvl, name), v); err != nil {
			return err
		}
		if remember {
			cur.remember(h, name, v)
		}
	}
	return nil
}

// readSeed reads cpusetSeeds[i] of parent: through the held file at the
// root (one pread), by its path elsewhere.
func (h *hier) readSeed(parent semantic.Path, i int) (string, error) {
	if f := h.seeds[i]; f != nil && parent.IsRoot() {
		var buf [512]byte
		if b, err := f.ReadInto(buf[:0]); err == nil {
			return string(bytes.TrimSpace(b)), nil
		}
	}
	return h.root.ReadString(file(parent, cpusetSeeds[i]))
}

// readResources reads back every supported setting of p.
func (d *Driver) readResources(p semantic.Path) (*semantic.Resources, error) {
	cur := &current{d: d, p: p}
	res := &semantic.Resources{}
	supports := func(f semantic.Feature) bool { return d.caps.Get(f).Support == semantic.Exact }
	if supports(semantic.MemoryMax) {
		h := d.byCtrl["memory"]
		m := &semantic.Memory{}
		max, _, err := cur.bytes(h, "memory.limit_in_bytes")
		if err != nil {
			return nil, err
		}
		m.Max = &max
		low, _, err := cur.bytes(h, "memory.soft_limit_in_bytes")
		if err != nil {
			return nil, err
		}
		m.Low = &low
		if d.caps.Supports(semantic.MemoryHigh) {
			// The approximations of memory.high and memory.min share the
			// soft limit with memory.low.
			m.High, m.Min = ptr(low), ptr(low)
		}
		if supports(semantic.MemorySwap) {
			memsw, _, err := cur.bytes(h, "memory.memsw.limit_in_bytes")
			if err != nil {
				return nil, err
			}
			if swap, ok := semantic.MemswToSwap(max, memsw); ok {
				m.Swap = &swap
			}
		}
		res.Memory = m
	}
	if supports(semantic.CPUWeight) || supports(semantic.CPUSetCPUs) {
		res.CPU = &semantic.CPU{}
	}
	if supports(semantic.CPUWeight) {
		h := d.byCtrl["cpu"]
		raw, err := cur.read(h, "cpu.shares")
		if err != nil {
			return nil, err
		}
		shares, err := statfile.ParseUint([]byte(raw))
		if err != nil {
			return nil, err
		}
		w := semantic.SharesToWeight(shares)
		res.CPU.Weight = &w
	}
	if supports(semantic.CPUMaxFeature) {
		h := d.byCtrl["cpu"]
		rawQ, err := cur.read(h, "cpu.cfs_quota_us")
		if err != nil {
			return nil, err
		}
		rawP, err := cur.read(h, "cpu.cfs_period_us")
		if err != nil {
			return nil, err
		}
		q, err1 := statfile.ParseInt([]byte(rawQ))
		per, err2 := statfile.ParseUint([]byte(rawP))
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		period := time.Duration(per) * time.Microsecond
		res.CPU.Max = &semantic.CPUMax{CPUs: semantic.QuotaToCPUs(time.Duration(q)*time.Microsecond, period), Period: period}
	}
	if supports(semantic.CPUSetCPUs) {
		h := d.byCtrl["cpuset"]
		for _, f := range []struct {
			name string
			dst  *semantic.CPUSet
		}{{"cpuset.cpus", &res.CPU.Cpus}, {"cpuset.mems", &res.CPU.Mems}} {
			raw, err := cur.read(h, f.name)
			if err != nil {
				return nil, err
			}
			set, err := semantic.ParseCPUSet(raw)
			if err != nil {
				return nil, err
			}
			*f.dst = set
		}
	}
	if supports(semantic.IOWeight) || supports(semantic.IOLimits) {
		res.IO = &semantic.IO{}
		h := d.byCtrl["blkio"]
		if supports(semantic.IOWeight) {
			raw, err := cur.read(h, d.ioWeightFile)
			if err != nil {
				return nil, err
			}
			v, err := statfile.ParseUint([]byte(strings.TrimPrefix(raw, "default ")))
			if err != nil {
				return nil, err
			}
			w := d.ioWeightBack(v)
			res.IO.Weight = &w
		}
		if supports(semantic.IOLimits) {
			byDev := map[[2]int64]*semantic.IOLimit{}
			for _, tf := range throttleFiles {
				raw, err := cur.read(h, tf.file)
				if err != nil {
					return nil, err
				}
				vals, err := statfile.ParseDeviceValues([]byte(raw))
				if err != nil {
					return nil, err
				}
				for _, v := range vals {
					k := [2]int64{v.Major, v.Minor}
					if byDev[k] == nil {
						byDev[k] = &semantic.IOLimit{Major: v.Major, Minor: v.Minor}
					}
					tf.set(byDev[k], v.Value)
				}
			}
			res.IO.Limits = []semantic.IOLimit{}
			for _, l := range byDev {
				res.IO.Limits = append(res.IO.Limits, *l)
			}
			semantic.SortIOLimits(res.IO.Limits)
		}
	}
	if supports(semantic.PidsMax) {
		raw, err := cur.read(d.byCtrl["pids"], "pids.max")
		if err != nil {
			return nil, err
		}
		c, err := semantic.ParseCount(raw)
		if err != nil {
			return nil, err
		}
		res.Pids = &semantic.Pids{Max: &c}
	}
	if supports(semantic.DevicesFeature) {
		raw, err := cur.read(d.byCtrl["devices"], "devices.list")
		if err != nil {
			return nil, err
		}
		rules, err := statfile.ParseDevicesList([]byte(raw))
		if err != nil {
			return nil, err
		}
		res.Devices = devicesFromList(rules).semanticDevices()
	}
	if supports(semantic.HugeTLB) {
		h := d.byCtrl["hugetlb"]
		sizes, err := hugePageSizes()
		if err != nil {
			return nil, err
		}
		for _, ps := range sizes {
			v, _, err := cur.bytes(h, "hugetlb."+hugeName(ps)+".limit_in_bytes")
			if err != nil {
				continue // a size this hierarchy does not account
			}
			res.HugeTLB = append(res.HugeTLB, semantic.HugeTLBLimit{PageSize: ps, Limit: v})
		}
	}
	return res, nil
}

// hugePageSizes lists the huge page sizes the host has, ascending.
func hugePageSizes() ([]semantic.Bytes, error) {
	ents, err := readDirNames("/sys/kernel/mm/hugepages")
	if err != nil {
		return nil, err
	}
	var out []semantic.Bytes
	for _, n := range ents {
		kb, ok := strings.CutPrefix(n, "hugepages-")
		kb, ok2 := strings.CutSuffix(kb, "kB")
		if v, err := strconv.ParseUint(kb, 10, 64); ok && ok2 && err == nil {
			out = append(out, semantic.Bytes(v)*semantic.KiB)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
