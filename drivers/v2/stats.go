package v2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// statNames are the files Stats reads; a file the group lacks (its
// controller is not enabled for it) gives absent figures.
var statNames = []string{
	"memory.current", "memory.peak", "memory.stat", "memory.swap.current", "memory.events",
	"cpu.stat", "io.stat", "pids.current", "pids.max",
	"cpu.pressure", "memory.pressure", "io.pressure",
}

// statFiles are a group's stat files held open: a repeated Stats costs one
// pread per file. They are reopened when the group's cgroup.controllers
// changes, since that adds or removes files.
type statFiles struct {
	controllers []byte
	ctl         *cgroupfs.File
	files       map[string]*cgroupfs.File
	buf         []byte
}

func (s *statFiles) close() error {
	errs := []error{s.ctl.Close()}
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// openStatFiles opens the stat files of the group rel that exist.
func (d *Driver) openStatFiles(rel string) (map[string]*cgroupfs.File, error) {
	files := map[string]*cgroupfs.File{}
	for _, name := range statNames {
		f, err := d.root.OpenFile(join(rel, name), unix.O_RDONLY)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files[name] = f
	}
	return files, nil
}

// Stats reads the group's usage from memory.current, memory.peak,
// memory.stat (anon, file), memory.swap.current, memory.events (oom,
// oom_kill), cpu.stat, io.stat, pids.current, pids.max and the pressure
// files, through descriptors held between calls. What the group's
// controllers do not provide is nil.
func (g *group) Stats(ctx context.Context) (*semantic.Stats, error) {
	const op = "read stats"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	for range 2 {
		n, err := g.d.node(g.rel)
		if err != nil {
			return nil, wrap(op, g.path, err)
		}
		data, err := g.readStats(n)
		if errors.Is(err, errNodeClosed) {
			// Deleted and maybe created again meanwhile: look it up afresh.
			continue
		}
		if errors.Is(err, unix.ENODEV) {
			// The descriptors are of a group removed behind the driver's back.
			g.d.dropNodes(g.rel)
			return nil, errorf(op, g.path, semantic.ErrNotExist, "the group was removed")
		}
		if err != nil {
			return nil, wrap(op, g.path, err)
		}
		st, err := statsFrom(data)
		if err != nil {
			return nil, wrap(op, g.path, err)
		}
		return st, nil
	}
	return nil, errorf(op, g.path, semantic.ErrNotExist, "the group was deleted meanwhile")
}

var errNodeClosed = errors.New("node closed")

// readStats reads every held stat file of n. The returned slices are
// copies: the buffer is reused by the next call.
func (g *group) readStats(n *node) (map[string][]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errNodeClosed
	}
	if n.stats == nil {
		ctl, err := g.d.root.OpenFile(join(g.rel, "cgroup.controllers"), unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		n.stats = &statFiles{ctl: ctl}
	}
	s := n.stats
	ctl, err := s.ctl.ReadInto(s.buf)
	if err != nil {
		return nil, err
	}
	s.buf = ctl
	if s.files == nil || string(ctl) != string(s.controllers) {
		for _, f := range s.files {
			f.Close()
		}
		s.files = nil
		files, err := g.d.openStatFiles(g.rel)
		if err != nil {
			return nil, err
		}
		s.files, s.controllers = files, append([]byte(nil), ctl...)
	}
	out := make(map[string][]byte, len(s.files))
	for name, f := range s.files {
		b, err := f.ReadInto(s.buf)
		if err != nil {
			return nil, err
		}
		out[name] = append([]byte(nil), b...)
		s.buf = b
	}
	return out, nil
}

// statsFrom turns the contents of the stat files into Stats; a file not
// in files leaves its figures nil.
func statsFrom(files map[string][]byte) (*semantic.Stats, error) {
	st := &semantic.Stats{}
	fail := func(name string, err error) error { return fmt.Errorf("parse %s: %w", name, err) }
	u64 := func(v uint64) *uint64 { return &v }
	usec := func(v uint64) *time.Duration { d := time.Duration(v) * time.Microsecond; return &d }

	mem := &semantic.MemoryStats{}
	memSeen := false
	if b, ok := files["memory.current"]; ok {
		v, err := statfile.ParseUint(b)
		if err != nil {
			return nil, fail("memory.current", err)
		}
		mem.Usage, memSeen = u64(v), true
	}
	if b, ok := files["memory.peak"]; ok {
		v, err := statfile.ParseUint(b)
		if err != nil {
			return nil, fail("memory.peak", err)
		}
		mem.Peak, memSeen = u64(v), true
	}
	if b, ok := files["memory.swap.current"]; ok {
		v, err := statfile.ParseUint(b)
		if err != nil {
			return nil, fail("memory.swap.current", err)
		}
		mem.Swap, memSeen = u64(v), true
	}
	if b, ok := files["memory.stat"]; ok {
		memSeen = true
		if err := statfile.ScanFlat(b, func(k []byte, v uint64) {
			switch string(k) {
			case "anon":
				mem.Anon = u64(v)
			case "file":
				mem.File = u64(v)
			}
		}); err != nil {
			return nil, fail("memory.stat", err)
		}
	}
	if b, ok := files["memory.events"]; ok {
		memSeen = true
		mem.OOM, mem.OOMKill = u64(0), u64(0)
		if err := statfile.ScanFlat(b, func(k []byte, v uint64) {
			switch string(k) {
			case "oom":
				mem.OOM = u64(v)
			case "oom_kill":
				mem.OOMKill = u64(v)
			}
		}); err != nil {
			return nil, fail("memory.events", err)
		}
	}
	if memSeen {
		st.Memory = mem
	}

	if b, ok := files["cpu.stat"]; ok {
		c := &semantic.CPUStats{}
		if err := statfile.ScanFlat(b, func(k []byte, v uint64) {
			switch string(k) {
			case "usage_usec":
				c.Usage = usec(v)
			case "user_usec":
				c.User = usec(v)
			case "system_usec":
				c.System = usec(v)
			case "nr_periods":
				c.Periods = u64(v)
			case "nr_throttled":
				c.ThrottledPeriods = u64(v)
			case "throttled_usec":
				c.ThrottledTime = usec(v)
			}
		}); err != nil {
			return nil, fail("cpu.stat", err)
		}
		st.CPU = c
	}

	if b, ok := files["pids.current"]; ok {
		v, err := statfile.ParseUint(b)
		if err != nil {
			return nil, fail("pids.current", err)
		}
		st.Pids = &semantic.PidsStats{Current: u64(v)}
		if b, ok := files["pids.max"]; ok {
			v, err := statfile.ParseLimit(b)
			if err != nil {
				return nil, fail("pids.max", err)
			}
			c := semantic.Count(v)
			st.Pids.Limit = &c
		}
	}

	if b, ok := files["io.stat"]; ok {
		var devs []semantic.IODeviceStats
		index := map[string]int{}
		var perr error
		if err := statfile.ScanNested(b, func(key, field []byte, v uint64) {
			i, seen := index[string(key)]
			if !seen {
				maj, min, err := statfile.ParseDevice(key)
				if err != nil {
					perr = err
					return
				}
				i = len(devs)
				index[string(key)] = i
				devs = append(devs, semantic.IODeviceStats{Major: maj, Minor: min})
			}
			switch string(field) {
			case "rbytes":
				devs[i].ReadBytes = u64(v)
			case "wbytes":
				devs[i].WriteBytes = u64(v)
			case "rios":
				devs[i].ReadIOs = u64(v)
			case "wios":
				devs[i].WriteIOs = u64(v)
			}
		}); err != nil || perr != nil {
			return nil, fail("io.stat", errors.Join(err, perr))
		}
		st.IO = devs
	}

	psi := func(name string) (*semantic.Pressure, error) {
		b, ok := files[name]
		if !ok {
			return nil, nil
		}
		p, err := statfile.ParsePSI(b)
		if err != nil {
			return nil, fail(name, err)
		}
		return &p, nil
	}
	pr := &semantic.PressureStats{}
	var err error
	if pr.CPU, err = psi("cpu.pressure"); err != nil {
		return nil, err
	}
	if pr.Memory, err = psi("memory.pressure"); err != nil {
		return nil, err
	}
	if pr.IO, err = psi("io.pressure"); err != nil {
		return nil, err
	}
	if pr.CPU != nil || pr.Memory != nil || pr.IO != nil {
		st.Pressure = pr
	}
	return st, nil
}
