package v2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/semantic"
)

// devicesXattr is the extended attribute of a group's directory in which
// the driver records the device list it attached and the program's id,
// so that a later process (the cgsem command run again) reads the list
// back exactly. trusted.* is root's, as loading a device program is.
const devicesXattr = "trusted.cgsem.devices"

// devicesRecord is devicesXattr's content, kept as lines of text:
//
//	program 42
//	default deny
//	allow c 1:3 rwm
//
// (the program's id, the default, then each rule as DeviceRule.String
// renders it). Plain lines, strictly parsed, rather than JSON: a person
// reading the attribute sees the rules as the kernel's v1 syntax writes
// them, and a program linking this driver does not carry the JSON
// encoder's reflection-driven code, which nothing else on its path uses
// (about 300 KiB of a stripped binary).
type devicesRecord struct {
	Program uint32
	Devices *semantic.Devices
}

func (r devicesRecord) marshal() []byte {
	b := fmt.Appendf(nil, "program %d\ndefault %s\n", r.Program, r.Devices.Default)
	for _, rule := range r.Devices.Rules {
		b = append(b, rule.String()...)
		b = append(b, '\n')
	}
	return b
}

// parseRecord reads marshal's form back. It takes nothing on trust: the
// list must be valid, and the caller still checks that the program runs it.
func parseRecord(b []byte) (*devicesRecord, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 {
		return nil, errors.New("too short")
	}
	id, ok := strings.CutPrefix(lines[0], "program ")
	if !ok {
		return nil, fmt.Errorf("first line %q: want \"program ID\"", lines[0])
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("program id %q: %w", id, err)
	}
	def, ok := strings.CutPrefix(lines[1], "default ")
	if !ok {
		return nil, fmt.Errorf("second line %q: want \"default POLICY\"", lines[1])
	}
	devs := &semantic.Devices{Default: semantic.DevicePolicy(def)}
	for _, line := range lines[2:] {
		verb, spec, _ := strings.Cut(line, " ")
		if verb != "allow" && verb != "deny" || strings.HasPrefix(spec, "/") {
			// A node path would be stat'ed: the record names numbers only.
			return nil, fmt.Errorf("rule %q: want \"allow|deny TYPE MAJOR:MINOR ACCESS\"", line)
		}
		rule, err := semantic.ParseDeviceRule(spec, verb == "allow")
		if err != nil {
			return nil, err
		}
		devs.Rules = append(devs.Rules, rule)
	}
	if err := devs.Validate(); err != nil {
		return nil, err
	}
	return &devicesRecord{Program: uint32(n), Devices: devs}, nil
}

// allowsEverything reports whether a list grants every access on every
// device: then no program is needed, and none is attached.
func allowsEverything(d *semantic.Devices) bool {
	if d.Default != semantic.AllowByDefault {
		return false
	}
	for _, r := range d.Rules {
		if !r.Allow {
			return false
		}
	}
	return true
}

// setDevices puts devs in force on group p: the new program is attached
// before the old one is detached (devfilter.Filter.Set), so access is
// never wider than either list; a list that allows everything detaches
// the driver's program instead. Programs other managers attached are left
// alone, and keep applying: the kernel runs every program of a group and
// grants what all allow.
func (d *Driver) setDevices(ctx context.Context, p semantic.Path, devs *semantic.Devices, fresh bool) error {
	const op = "set devices (attach device program)"
	rel := p.String()
	if err := d.fault(opAttach, rel, devicesString(devs)); err != nil {
		return wrap(op, p, err)
	}
	n, err := d.node(rel)
	if err != nil {
		return wrap(op, p, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errorf(op, p, semantic.ErrNotExist, "group deleted meanwhile")
	}
	if n.filter == nil {
		n.filter = d.cache.NewFilter(n.dir.Fd(), p.Display())
	}
	// A group this call made has no program of anyone's yet.
	if !fresh {
		if err := d.takeOver(n, p); err != nil {
			return err
		}
	}
	if allowsEverything(devs) {
		if err := n.filter.Remove(); err != nil {
			return err
		}
		d.removeRecord(n.dir.Fd(), p)
		return nil
	}
	if err := n.filter.Set(ctx, devs); err != nil {
		return err
	}
	d.writeRecord(n.dir.Fd(), p, devicesRecord{Program: n.filter.ProgramID(), Devices: devs})
	d.pin(ctx, devs)
	return nil
}

// pinLimit is how many recently set device lists keep their programs
// loaded after the last group using them is gone: groups come and go
// with the same few lists (a container runtime's default allowlist), and
// a load is most of the cost of a group with a device filter.
const pinLimit = 8

// pins holds references to the programs of recently set lists, newest
// first.
type pins struct {
	keys []string
	held []*devfilter.Loaded
}

// pin keeps devs' program loaded: the cache holds it already (a filter
// just attached it), so this is a reference, not a load.
func (d *Driver) pin(ctx context.Context, devs *semantic.Devices) {
	prog, err := devfilter.Compile(devs)
	if err != nil {
		return
	}
	key := string(prog.Bytes())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if i := slices.Index(d.pins.keys, key); i >= 0 {
		k, l := d.pins.keys[i], d.pins.held[i]
		d.pins.keys = slices.Insert(slices.Delete(d.pins.keys, i, i+1), 0, k)
		d.pins.held = slices.Insert(slices.Delete(d.pins.held, i, i+1), 0, l)
		return
	}
	l, err := d.cache.Acquire(ctx, prog)
	if err != nil {
		return
	}
	d.pins.keys = slices.Insert(d.pins.keys, 0, key)
	d.pins.held = slices.Insert(d.pins.held, 0, l)
	if len(d.pins.held) > pinLimit {
		d.cache.Release(d.pins.held[pinLimit])
		d.pins.keys, d.pins.held = d.pins.keys[:pinLimit], d.pins.held[:pinLimit]
	}
}

// clear gives every pinned program back.
func (ps *pins) clear(c *devfilter.Cache) {
	for _, l := range ps.held {
		c.Release(l)
	}
	ps.keys, ps.held = nil, nil
}

// takeOver makes n's filter answer for the program in force on group p
// before a change: its own if still attached; else the program another
// cgsem process (or an earlier run) attached and recorded, which it adopts
// so that the change replaces it without a window (with only its id, this
// process could only add a program beside it, and the group would grant
// the intersection of both lists while reading back as the new one). n.mu
// is held.
//
// Where that is impossible it refuses with ErrBusy and changes nothing:
// the recorded program fails the adoption's checks (another type, other
// instructions than the recorded list's, detached meanwhile), or it is no
// longer attached while programs nobody recorded are, which may be a
// cgsem program whose record was lost. A record whose program is gone
// from a group with no program at all narrows nothing: the new list is
// simply attached.
func (d *Driver) takeOver(n *node, p semantic.Path) error {
	const op = "set devices (attach device program)"
	fd := n.dir.Fd()
	ids, err := devfilter.Query(fd)
	if err != nil {
		return wrap("query device programs", p, err)
	}
	own := n.filter.ProgramID()
	if own != 0 && slices.Contains(ids, own) {
		return nil
	}
	rec, err := readRecord(fd)
	if err != nil {
		if len(ids) > 0 {
			return errorf(op, p, semantic.ErrBusy,
				"device programs %v are attached and their record %s cannot be read (%v), so what they enforce is unknown; delete and re-create the group",
				ids, devicesXattr, err)
		}
		rec = nil
	}
	switch {
	case rec != nil && slices.Contains(ids, rec.Program):
		if err := n.filter.Adopt(rec.Program, rec.Devices); err != nil {
			var se *semantic.Error
			if errors.As(err, &se) && se.Err != nil {
				err = se.Err
			}
			return errorf(op, p, semantic.ErrBusy,
				"device program %d, recorded in %s by another cgsem process, cannot be taken over to replace it (%v); delete and re-create the group",
				rec.Program, devicesXattr, err)
		}
		d.log.Debug("adopted recorded device program", "group", p.Display(), "program", rec.Program)
		return nil
	case rec != nil && len(ids) > 0:
		return errorf(op, p, semantic.ErrBusy,
			"device program %d, recorded in %s, is no longer attached, and programs %v are, which cgsem did not record: one may be a cgsem program whose record was lost, and adding this list beside it would enforce the intersection; delete and re-create the group",
			rec.Program, devicesXattr, ids)
	}
	if own != 0 {
		// Someone detached the filter's program: forget it, so that the
		// change attaches its own rather than failing to detach it.
		if err := n.filter.Remove(); err != nil {
			return err
		}
	}
	return nil
}

// devicesOf reads back group p's device list: the list this driver's
// program enforces (checked to be still attached), or the list another
// cgsem process recorded with its program (checked to be attached and to
// run that list), or, with no program attached, allow everything. nil
// means programs of another manager are attached, whose rules cannot be
// read back.
func (d *Driver) devicesOf(p semantic.Path) (*semantic.Devices, error) {
	rel := p.String()
	// gone is the driver's own program having been detached: an error,
	// unless another cgsem process replaced it and recorded its own.
	var gone error
	if n := d.peekNode(rel); n != nil {
		n.mu.Lock()
		if !n.closed && n.filter != nil && n.filter.ProgramID() != 0 {
			err := n.filter.Verify()
			devs := n.filter.Devices()
			n.mu.Unlock()
			switch {
			case err == nil:
				return devs, nil
			case !errors.Is(err, semantic.ErrNotExist):
				return nil, err
			}
			gone = err
		} else {
			n.mu.Unlock()
		}
	}
	dir, err := d.openDir(rel)
	if err != nil {
		return nil, wrap("read devices", p, err)
	}
	defer dir.Close()
	ids, err := devfilter.Query(dir.Fd())
	if err != nil {
		return nil, wrap("query device programs", p, err)
	}
	var rec *devicesRecord
	if len(ids) > 0 || gone != nil {
		if rec, err = readRecord(dir.Fd()); err != nil {
			return nil, wrap("read "+devicesXattr, p, err)
		}
	}
	if rec != nil && slices.Contains(ids, rec.Program) {
		if ok, err := recordRuns(rec); err != nil || !ok {
			d.log.Debug("recorded device program does not run the recorded list; not read back",
				"group", p.Display(), "program", rec.Program, "error", err)
			return nil, nil
		}
		return rec.Devices, nil
	}
	switch {
	case gone != nil && rec != nil:
		// The record still names a program that is gone: someone who is
		// not cgsem detached it (a cgsem process that lifts the filter
		// removes the record too).
		return nil, gone
	case len(ids) == 0:
		return &semantic.Devices{Default: semantic.AllowByDefault}, nil
	}
	d.log.Debug("device programs of another manager; not read back", "group", p.Display(), "programs", ids)
	return nil, nil
}

// recordRuns reports whether rec's program runs rec's list: only then is
// the list what the group enforces.
func recordRuns(rec *devicesRecord) (bool, error) {
	prog, err := devfilter.Compile(rec.Devices)
	if err != nil {
		return false, err
	}
	return devfilter.Runs(rec.Program, prog)
}

// fdPath names a directory held as an O_PATH descriptor for the calls
// that take a path (the xattr calls refuse O_PATH descriptors).
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func readRecord(fd int) (*devicesRecord, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getxattr(fdPath(fd), devicesXattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return nil, err
		}
		rec, err := parseRecord(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("%s: not a device record: %w", devicesXattr, err)
		}
		return rec, nil
	}
}

// writeRecord records the list in force. It is a convenience for later
// processes, not part of the change: a filesystem that keeps no xattrs
// only costs them the read-back.
func (d *Driver) writeRecord(fd int, p semantic.Path, rec devicesRecord) {
	if err := unix.Setxattr(fdPath(fd), devicesXattr, rec.marshal(), 0); err != nil {
		d.log.Debug("record device list", "group", p.Display(), "error", err)
	}
}

func (d *Driver) removeRecord(fd int, p semantic.Path) {
	if err := unix.Removexattr(fdPath(fd), devicesXattr); err != nil && !errors.Is(err, unix.ENODATA) {
		d.log.Debug("remove device record", "group", p.Display(), "error", err)
	}
}
