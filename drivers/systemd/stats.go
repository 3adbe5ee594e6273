package systemd

import (
	"context"
	"errors"
	"io/fs"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// Stats reads the figures of the slice's group (which counts everything
// below it) from the cgroup files systemd's hierarchies have: cgroup2
// files on the unified hierarchy, the v1 controllers' otherwise, and
// pressure from cgroup2 where it is mounted. A figure whose file is
// missing is absent.
func (g *group) Stats(ctx context.Context) (*semantic.Stats, error) {
	const op = "stats"
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
	r := rel(cg)
	st := &semantic.Stats{}
	if d.host.layout == layoutUnified {
		statsV2(d.cg.unified, r, st)
	} else {
		statsV1(d.cg, r, st)
	}
	if d.caps.Supports(semantic.StatsPressure) {
		st.Pressure = pressure(d.cg.unified, r)
	}
	return st, nil
}

// reader reads the files of one group in one hierarchy; a missing file
// (or hierarchy) gives nil.
type reader struct {
	d   *cgroupfs.Dir
	dir string
}

func (rd reader) read(name string) []byte {
	if rd.d == nil {
		return nil
	}
	b, err := rd.d.Read(file(rd.dir, name))
	if err != nil {
		return nil
	}
	return b
}

func (rd reader) uint(name string) *uint64 {
	b := rd.read(name)
	if b == nil {
		return nil
	}
	v, err := statfile.ParseUint(b)
	if err != nil {
		return nil
	}
	return &v
}

func (rd reader) flat(name string) map[string]uint64 {
	b := rd.read(name)
	if b == nil {
		return nil
	}
	m, err := statfile.ParseFlat(b)
	if err != nil {
		return nil
	}
	return m
}

func key(m map[string]uint64, k string) *uint64 {
	if v, ok := m[k]; ok {
		return &v
	}
	return nil
}

func usec(m map[string]uint64, k string) *time.Duration {
	if v, ok := m[k]; ok {
		d := time.Duration(v) * time.Microsecond
		return &d
	}
	return nil
}

func statsV2(d *cgroupfs.Dir, dir string, st *semantic.Stats) {
	rd := reader{d, dir}
	if cur := rd.uint("memory.current"); cur != nil {
		ms := rd.flat("memory.stat")
		ev := rd.flat("memory.events")
		st.Memory = &semantic.MemoryStats{
			Usage: cur, Peak: rd.uint("memory.peak"),
			Anon: key(ms, "anon"), File: key(ms, "file"),
			Swap: rd.uint("memory.swap.current"),
			OOM:  key(ev, "oom"), OOMKill: key(ev, "oom_kill"),
		}
	}
	if cs := rd.flat("cpu.stat"); cs != nil {
		st.CPU = &semantic.CPUStats{
			Usage: usec(cs, "usage_usec"), User: usec(cs, "user_usec"), System: usec(cs, "system_usec"),
			Periods: key(cs, "nr_periods"), ThrottledPeriods: key(cs, "nr_throttled"), ThrottledTime: usec(cs, "throttled_usec"),
		}
	}
	st.Pids = pidsStats(rd)
	if b := rd.read("io.stat"); b != nil {
		st.IO = ioStatsV2(b)
	}
}

func pidsStats(rd reader) *semantic.PidsStats {
	cur := rd.uint("pids.current")
	if cur == nil {
		return nil
	}
	ps := &semantic.PidsStats{Current: cur}
	if b := rd.read("pids.max"); b != nil {
		if v, err := statfile.ParseLimit(b); err == nil {
			c := semantic.Count(v)
			ps.Limit = &c
		}
	}
	return ps
}

func ioStatsV2(b []byte) []semantic.IODeviceStats {
	byDev := map[[2]int64]*semantic.IODeviceStats{}
	err := statfile.ScanNested(b, func(k, field []byte, v uint64) {
		major, minor, err := statfile.ParseDevice(k)
		if err != nil {
			return
		}
		s := byDev[[2]int64{major, minor}]
		if s == nil {
			s = &semantic.IODeviceStats{Major: major, Minor: minor}
			byDev[[2]int64{major, minor}] = s
		}
		val := v
		switch string(field) {
		case "rbytes":
			s.ReadBytes = &val
		case "wbytes":
			s.WriteBytes = &val
		case "rios":
			s.ReadIOs = &val
		case "wios":
			s.WriteIOs = &val
		}
	})
	if err != nil {
		return nil
	}
	return sortedIO(byDev)
}

func sortedIO(byDev map[[2]int64]*semantic.IODeviceStats) []semantic.IODeviceStats {
	out := make([]semantic.IODeviceStats, 0, len(byDev))
	for _, s := range byDev {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Major < b.Major || a.Major == b.Major && a.Minor < b.Minor
	})
	return out
}

func statsV1(c *cgroups, dir string, st *semantic.Stats) {
	mem := reader{c.v1["memory"], dir}
	if cur := mem.uint("memory.usage_in_bytes"); cur != nil {
		ms := mem.flat("memory.stat")
		m := &semantic.MemoryStats{
			Usage: cur, Peak: mem.uint("memory.max_usage_in_bytes"),
			Anon: key(ms, "total_rss"), File: key(ms, "total_cache"),
			Swap: key(ms, "total_swap"),
			// No OOM-kill count: v1 counts a kill only in the victim's
			// own group, the scope, which systemd removes when the scope
			// ends, so a sum over the subtree would lose kills.
		}
		st.Memory = m
	}
	// Usage comes from cgroup2's cpu.stat where it is mounted (every group
	// has it, controller or not); systemd does not always give a slice a
	// cpuacct group of its own. Throttling is the v1 cpu controller's.
	var cs *semantic.CPUStats
	if f := (reader{c.unified, dir}).flat("cpu.stat"); f != nil {
		cs = &semantic.CPUStats{Usage: usec(f, "usage_usec"), User: usec(f, "user_usec"), System: usec(f, "system_usec")}
	} else if usage := (reader{c.v1["cpuacct"], dir}).uint("cpuacct.usage"); usage != nil {
		cpuacct := reader{c.v1["cpuacct"], dir}
		cs = &semantic.CPUStats{Usage: ns(usage), User: ns(cpuacct.uint("cpuacct.usage_user")), System: ns(cpuacct.uint("cpuacct.usage_sys"))}
	}
	if f := (reader{c.v1["cpu"], dir}).flat("cpu.stat"); f != nil {
		if cs == nil {
			cs = &semantic.CPUStats{}
		}
		cs.Periods, cs.ThrottledPeriods = key(f, "nr_periods"), key(f, "nr_throttled")
		if v, ok := f["throttled_time"]; ok {
			cs.ThrottledTime = ns(&v)
		}
	}
	st.CPU = cs
	st.Pids = pidsStats(reader{c.v1["pids"], dir})
	blk := reader{c.v1["blkio"], dir}
	if b := blk.read("blkio.throttle.io_service_bytes_recursive"); b != nil {
		byDev := map[[2]int64]*semantic.IODeviceStats{}
		add := func(data []byte, read, write func(*semantic.IODeviceStats, *uint64)) {
			_ = statfile.ScanBlkio(data, func(major, minor int64, op []byte, v uint64) {
				s := byDev[[2]int64{major, minor}]
				if s == nil {
					s = &semantic.IODeviceStats{Major: major, Minor: minor}
					byDev[[2]int64{major, minor}] = s
				}
				val := v
				switch string(op) {
				case "Read":
					read(s, &val)
				case "Write":
					write(s, &val)
				}
			})
		}
		add(b, func(s *semantic.IODeviceStats, v *uint64) { s.ReadBytes = v }, func(s *semantic.IODeviceStats, v *uint64) { s.WriteBytes = v })
		if b := blk.read("blkio.throttle.io_serviced_recursive"); b != nil {
			add(b, func(s *semantic.IODeviceStats, v *uint64) { s.ReadIOs = v }, func(s *semantic.IODeviceStats, v *uint64) { s.WriteIOs = v })
		}
		st.IO = sortedIO(byDev)
	}
}

// ns turns nanoseconds into a duration.
func ns(v *uint64) *time.Duration {
	if v == nil {
		return nil
	}
	d := time.Duration(*v)
	return &d
}

// pressure reads the PSI files of a group on cgroup2.
func pressure(d *cgroupfs.Dir, dir string) *semantic.PressureStats {
	if d == nil {
		return nil
	}
	rd := reader{d, dir}
	one := func(name string) *semantic.Pressure {
		b := rd.read(name)
		if b == nil {
			return nil
		}
		p, err := statfile.ParsePSI(b)
		if err != nil {
			return nil
		}
		return &p
	}
	ps := &semantic.PressureStats{CPU: one("cpu.pressure"), Memory: one("memory.pressure"), IO: one("io.pressure")}
	if ps.CPU == nil && ps.Memory == nil && ps.IO == nil {
		return nil
	}
	return ps
}

// isNotExist reports a missing file or group. A group systemd removes
// while one of its files is being read (a scope going with its last
// process) makes the read fail with ENODEV, not ENOENT: it is gone as
// much as one whose directory is missing, and it was empty (the kernel
// removes only empty groups).
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV)
}
