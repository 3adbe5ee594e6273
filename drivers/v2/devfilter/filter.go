package devfilter

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cgsem/cgsem/semantic"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// driverName prefixes errors: this package is the v2 driver's.
const driverName = "v2"

// Filter is the device filter this package keeps on one cgroup: at most one
// program it attached there (or adopted, see Adopt), and the rule list that
// program enforces (kept for exact read-back). It detaches only that
// program, never one another process or another Filter attached and it did
// not adopt. It is safe for concurrent use.
type Filter struct {
	cache *Cache
	fd    int
	group string
	log   hclog.Logger

	mu    sync.Mutex
	prog  *Loaded
	rules *semantic.Devices

	// between runs while the old and the new program are both attached;
	// tests use it to look at that moment.
	between func()
}

// NewFilter returns the Filter of the cgroup whose directory is open as
// cgroupFD; group names it in logs and errors. The Filter borrows the
// descriptor: keep it open until the Filter is closed. A new Filter has no
// program: whatever is attached to the cgroup already is left alone,
// unless Adopt takes over the one an earlier process recorded. Keep one
// Filter per cgroup: the kernel refuses to attach one program twice to
// the same cgroup (EEXIST), which two Filters with the same list would try.
func (c *Cache) NewFilter(cgroupFD int, group string) *Filter {
	return &Filter{cache: c, fd: cgroupFD, group: group, log: c.log.With("group", group)}
}

// Set makes d the cgroup's device list: it compiles d, takes the program
// from the cache (loading it once per distinct list), attaches it, and only
// then detaches the program this Filter attached before (see Replace). On
// failure the cgroup and the Filter are left as they were.
func (f *Filter) Set(ctx context.Context, d *semantic.Devices) error {
	p, err := Compile(d)
	if err != nil {
		return semantic.Wrap(driverName, "compile device filter", f.group, err)
	}
	next, err := f.cache.Acquire(ctx, p)
	if err != nil {
		return semantic.Wrap(driverName, "load device filter", f.group, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.prog
	if err := replace(f.fd, prev, next, f.between); err != nil {
		f.release(next)
		return semantic.Wrap(driverName, "attach device filter", f.group, err)
	}
	f.log.Trace("attached device program", "id", next.id, "replaced", idOf(prev))
	f.prog = next
	f.rules = &semantic.Devices{Default: d.Default, Rules: slices.Clone(d.Rules)}
	if prev != nil {
		// Either the program just replaced, or next itself (same rules):
		// the Filter holds one reference either way.
		f.release(prev)
	}
	return nil
}

// Adopt makes the program with id, which another process attached to the
// cgroup and recorded as enforcing d (an earlier run of the v2 driver,
// say), this Filter's program, as if Set had attached it: a later Set
// replaces it without a window, Remove detaches it, Devices returns d.
//
// It checks, holding a descriptor of the program so that the id cannot
// come to name another one meanwhile, that the program is a device
// program, that its instructions are those d compiles to (by the tag the
// kernel gives them), and that it is attached to this cgroup. When one
// fails it changes nothing: no program with id, or one not attached here,
// is ErrNotExist; another program type, or other instructions, is
// ErrInvalid. It never attaches or detaches anything.
//
// Adopting the Filter's own program does nothing. A Filter whose program
// is still attached refuses (ErrBusy: it would then answer for two
// programs); one whose program someone detached gives that up first.
func (f *Filter) Adopt(id uint32, d *semantic.Devices) error {
	const op = "adopt device filter"
	p, err := Compile(d)
	if err != nil {
		return semantic.Wrap(driverName, op, f.group, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog != nil && f.prog.id == id {
		return nil
	}
	l, err := OpenProgram(id)
	if err != nil {
		return semantic.Wrap(driverName, op, f.group, err)
	}
	keep := false
	defer func() {
		if !keep {
			l.Close()
		}
	}()
	if !l.runs(p) {
		tags := tagsOf(p)
		return semantic.Errorf(semantic.ErrInvalid, op, f.group,
			"device program %d does not run the instructions of the list %s compiles to (tag %x, want %x or %x)",
			id, describe(d), l.tag, tags[0], tags[1])
	}
	ids, err := Query(f.fd)
	if err != nil {
		return semantic.Wrap(driverName, op, f.group, err)
	}
	if !slices.Contains(ids, id) {
		return semantic.Errorf(semantic.ErrNotExist, op, f.group,
			"device program %d is not attached to the group (attached: %v)", id, ids)
	}
	if f.prog != nil {
		if slices.Contains(ids, f.prog.id) {
			return semantic.Errorf(semantic.ErrBusy, op, f.group,
				"this filter's own device program %d is still attached; remove it before adopting program %d", f.prog.id, id)
		}
		f.log.Trace("gave up device program detached by someone else", "id", f.prog.id)
		f.release(f.prog)
	}
	l.len = p.Len()
	f.prog = l
	f.rules = &semantic.Devices{Default: d.Default, Rules: slices.Clone(d.Rules)}
	keep = true
	f.log.Trace("adopted device program", "id", id)
	return nil
}

// describe renders d for messages: "deny; allow c 1:3 rwm".
func describe(d *semantic.Devices) string {
	var b strings.Builder
	b.WriteString(string(d.Default))
	for _, r := range d.Rules {
		b.WriteString("; ")
		b.WriteString(r.String())
	}
	return strconv.Quote(b.String())
}

// release gives l up, logging rather than returning an error: it cannot
// fail but on a bug (a reference not held) or a failing close(2), neither
// of which changes what the cgroup enforces.
func (f *Filter) release(l *Loaded) {
	if err := f.drop(l); err != nil {
		f.log.Warn("release device program", "id", l.id, "error", err)
	}
}

// drop gives l back to the cache, or closes it if the Filter adopted it
// (the cache never held an adopted program: it has its own descriptor).
func (f *Filter) drop(l *Loaded) error {
	if l.key == "" {
		return l.Close()
	}
	return f.cache.Release(l)
}

func idOf(l *Loaded) uint32 {
	if l == nil {
		return 0
	}
	return l.id
}

// Devices returns a copy of the list Set last applied, or nil when this
// Filter attached nothing.
func (f *Filter) Devices() *semantic.Devices {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rules == nil {
		return nil
	}
	return &semantic.Devices{Default: f.rules.Default, Rules: slices.Clone(f.rules.Rules)}
}

// ProgramID returns the id of the program this Filter attached, or 0.
func (f *Filter) ProgramID() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return idOf(f.prog)
}

// Verify checks with BPF_PROG_QUERY that the program this Filter attached
// is still attached to the cgroup. Someone else having detached it is an
// error wrapping semantic.ErrNotExist. A Filter with no program verifies.
func (f *Filter) Verify() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog == nil {
		return nil
	}
	ids, err := Query(f.fd)
	if err != nil {
		return semantic.Wrap(driverName, "query device filter", f.group, err)
	}
	if !slices.Contains(ids, f.prog.id) {
		return semantic.Errorf(semantic.ErrNotExist, "verify device filter", f.group,
			"device program %d is no longer attached (attached: %v)", f.prog.id, ids)
	}
	return nil
}

// Remove detaches the program this Filter attached, if any, leaving the
// cgroup's other programs alone. A program someone else detached already
// counts as removed.
func (f *Filter) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog == nil {
		return nil
	}
	if err := Detach(f.fd, f.prog); err != nil && !errors.Is(err, unix.ENOENT) {
		return semantic.Wrap(driverName, "detach device filter", f.group, err)
	}
	f.log.Trace("detached device program", "id", f.prog.id)
	err := f.drop(f.prog)
	f.prog, f.rules = nil, nil
	if err != nil {
		return semantic.Wrap(driverName, "release device filter", f.group, err)
	}
	return nil
}

// Close gives the Filter's program back to the cache (or closes the
// descriptor of an adopted one) without detaching it: the kernel keeps
// enforcing it until the cgroup is removed (rmdir releases it). Call
// Remove first to lift the filter; a later Filter on the same cgroup
// leaves the program attached unless it adopts it.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog == nil {
		return nil
	}
	err := f.drop(f.prog)
	f.prog, f.rules = nil, nil
	if err != nil {
		return semantic.Wrap(driverName, "release device filter", f.group, err)
	}
	return nil
}
