package v1

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// statFile numbers the files Stats reads, in the order it reads them.
type statFile int

const (
	sfMemUsage statFile = iota
	sfMemPeak
	sfMemStat
	sfOOMControl
	sfCPUUsage
	sfCPUUsageAll
	sfCPUStat
	sfPidsCurrent
	sfPidsMax
	sfIOBytes
	sfIOServiced
	numStatFiles
)

// statFiles are the controller and name of each statFile.
var statFiles = [numStatFiles]struct{ ctrl, name string }{
	sfMemUsage:    {"memory", "memory.usage_in_bytes"},
	sfMemPeak:     {"memory", "memory.max_usage_in_bytes"},
	sfMemStat:     {"memory", "memory.stat"},
	sfOOMControl:  {"memory", "memory.oom_control"},
	sfCPUUsage:    {"cpuacct", "cpuacct.usage"},
	sfCPUUsageAll: {"cpuacct", "cpuacct.usage_all"},
	sfCPUStat:     {"cpu", "cpu.stat"},
	sfPidsCurrent: {"pids", "pids.current"},
	sfPidsMax:     {"pids", "pids.max"},
	sfIOBytes:     {"blkio", "blkio.throttle.io_service_bytes_recursive"},
	sfIOServiced:  {"blkio", "blkio.throttle.io_serviced_recursive"},
}

// statBufSize is a group's initial read buffer: memory.stat, the largest
// file, is about 1.5 KiB; cpuacct.usage_all grows with the CPUs and the
// buffer with it.
const statBufSize = 8 << 10

// statsHolder is what a group keeps between Stats calls: the hierarchy
// and path of every file (worked out once), the files themselves when the
// "stat-files" setting holds them open (re-reading one is then a pread),
// and one read buffer. Its lock makes Stats on one group serial, so the
// buffer is reused safely.
type statsHolder struct {
	mu    sync.Mutex
	ready bool
	hs    [numStatFiles]*hier // nil where the controller is not mounted
	paths [numStatFiles]string
	files [numStatFiles]*cgroupfs.File
	open  bool // some file is held: the driver lists the holder in held
	// cleanup is set once a runtime cleanup gives the files back when
	// the group is collected.
	cleanup bool
	buf     []byte
}

func (s *statsHolder) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.files {
		if f != nil {
			f.Close()
			s.files[i] = nil
		}
	}
	s.open = false
}

// release closes a group's held stat files and forgets them; a later
// Stats opens them again.
func (d *Driver) release(s *statsHolder) {
	d.mu.Lock()
	delete(d.held, s)
	d.mu.Unlock()
	s.close()
}

// prepare works out where p's stat files are, once per group.
func (s *statsHolder) prepare(d *Driver, p semantic.Path) {
	if s.ready {
		return
	}
	prefix := ""
	if !p.IsRoot() {
		prefix = rel(p) + "/"
	}
	for i, f := range statFiles {
		if h := d.byCtrl[f.ctrl]; h != nil {
			s.hs[i] = h
			s.paths[i] = prefix + f.name
		}
	}
	s.buf = make([]byte, 0, statBufSize)
	s.ready = true
}

// statReader reads one group's stat files, through held descriptors or
// not.
type statReader struct {
	d       *Driver
	s       *statsHolder // locked by the caller
	missing bool         // some file was absent
}

// read returns the content of f, nil if the file is absent (the top of a
// hierarchy lacks some). The returned slice is valid until the next read.
func (r *statReader) read(f statFile) ([]byte, error) {
	s := r.s
	h := s.hs[f]
	if !r.d.holdStats {
		b, err := h.root.ReadInto(s.paths[f], s.buf)
		return r.result(b, err)
	}
	file := s.files[f]
	if file == nil {
		var err error
		if file, err = h.root.OpenFile(s.paths[f], unix.O_RDONLY); err != nil {
			return r.result(nil, err)
		}
		s.files[f] = file
		if !s.open {
			s.open = true
			r.d.mu.Lock()
			r.d.held[s] = struct{}{}
			r.d.mu.Unlock()
		}
	}
	b, err := file.ReadInto(s.buf)
	if errors.Is(err, unix.ENODEV) {
		// The group this descriptor was opened on is gone; a group made
		// again at the path is another directory.
		file.Close()
		s.files[f] = nil
		if file, err = h.root.OpenFile(s.paths[f], unix.O_RDONLY); err != nil {
			return r.result(nil, err)
		}
		s.files[f] = file
		b, err = file.ReadInto(s.buf)
	}
	return r.result(b, err)
}

func (r *statReader) result(b []byte, err error) ([]byte, error) {
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			r.missing = true
			return nil, nil
		}
		return nil, err
	}
	r.s.buf = b[:0]
	return b, nil
}

// number reads a file holding one number: nil when it is absent.
func (r *statReader) number(f statFile, dst *uint64) (*uint64, error) {
	b, err := r.read(f)
	if err != nil || b == nil {
		return nil, err
	}
	if *dst, err = statfile.ParseUint(b); err != nil {
		return nil, err
	}
	return dst, nil
}

func ptr[T any](v T) *T { return &v }

// statsBlock holds every figure of one Stats result, so that the result
// and all its pointers are one allocation (the IO devices are a second,
// when there are any).
type statsBlock struct {
	stats semantic.Stats
	mem   semantic.MemoryStats
	cpu   semantic.CPUStats
	pids  semantic.PidsStats
	limit semantic.Count
	// usage, peak, anon, file, swap, oom kills, periods, throttled
	// periods, pids.current
	n [9]uint64
	// usage, user, system, throttled time
	t [4]time.Duration
}

// ioDevice gathers one device's figures from the two blkio files.
type ioDevice struct {
	major, minor int64
	v            [4]uint64 // read bytes, write bytes, read IOs, write IOs
	has          [4]bool
}

// Stats reads usage figures: memory from memory.usage_in_bytes,
// memory.max_usage_in_bytes, memory.stat (hierarchical totals) and
// memory.oom_control; CPU from cpuacct.usage, cpuacct.usage_all and
// cpu.stat; pids from pids.current and pids.max; IO from the blkio
// throttle statistics (recursive). The OOM count and pressure are absent:
// v1 has neither.
func (g *group) Stats(ctx context.Context) (*semantic.Stats, error) {
	const op = "stats"
	release, err := g.d.enter(ctx, op, g.p)
	if err != nil {
		return nil, err
	}
	defer release()
	s := g.holder()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepare(g.d, g.p)
	r := statReader{d: g.d, s: s}
	st, err := r.stats()
	if s.open && !s.cleanup {
		// A group dropped without Delete gives its stats descriptors back
		// when it is collected.
		s.cleanup = true
		runtime.AddCleanup(g, g.d.release, s)
	}
	if err == nil && r.missing && !g.p.IsRoot() {
		if ok, _ := g.d.primary.root.Exists(rel(g.p)); !ok {
			err = errorf(op, g.p, semantic.ErrNotExist, "no such group")
		}
	}
	if err != nil {
		return nil, wrap(op, g.p, err)
	}
	return st, nil
}

func (r *statReader) stats() (*semantic.Stats, error) {
	s := r.s
	blk := &statsBlock{}
	st := &blk.stats
	if s.hs[sfMemUsage] != nil {
		m := &blk.mem
		var err error
		if m.Usage, err = r.number(sfMemUsage, &blk.n[0]); err != nil {
			return nil, err
		}
		if m.Peak, err = r.number(sfMemPeak, &blk.n[1]); err != nil {
			return nil, err
		}
		b, err := r.read(sfMemStat)
		if err != nil {
			return nil, err
		}
		err = statfile.ScanFlat(b, func(k []byte, v uint64) {
			// Only the hierarchical totals are wanted; every other key is
			// told apart by its first byte or its length.
			if len(k) < 9 || k[0] != 't' {
				return
			}
			switch string(k) {
			case "total_rss":
				blk.n[2], m.Anon = v, &blk.n[2]
			case "total_cache":
				blk.n[3], m.File = v, &blk.n[3]
			case "total_swap":
				blk.n[4], m.Swap = v, &blk.n[4]
			}
		})
		if err != nil {
			return nil, err
		}
		if b, err = r.read(sfOOMControl); err != nil {
			return nil, err
		}
		err = statfile.ScanFlat(b, func(k []byte, v uint64) {
			if string(k) == "oom_kill" {
				blk.n[5], m.OOMKill = v, &blk.n[5]
			}
		})
		if err != nil {
			return nil, err
		}
		st.Memory = m
	}
	if s.hs[sfCPUUsage] != nil || s.hs[sfCPUStat] != nil {
		c := &blk.cpu
		if s.hs[sfCPUUsage] != nil {
			var usage uint64
			u, err := r.number(sfCPUUsage, &usage)
			if err != nil {
				return nil, err
			}
			if u != nil {
				blk.t[0], c.Usage = time.Duration(usage), &blk.t[0]
			}
			b, err := r.read(sfCPUUsageAll)
			if err != nil {
				return nil, err
			}
			if b != nil {
				var user, sys time.Duration
				err := statfile.ScanCpuacctUsageAll(b, func(t statfile.CPUTime) {
					user += time.Duration(t.User)
					sys += time.Duration(t.System)
				})
				if err != nil {
					return nil, err
				}
				blk.t[1], blk.t[2] = user, sys
				c.User, c.System = &blk.t[1], &blk.t[2]
			}
		}
		if s.hs[sfCPUStat] != nil {
			b, err := r.read(sfCPUStat)
			if err != nil {
				return nil, err
			}
			err = statfile.ScanFlat(b, func(k []byte, v uint64) {
				switch string(k) {
				case "nr_periods":
					blk.n[6], c.Periods = v, &blk.n[6]
				case "nr_throttled":
					blk.n[7], c.ThrottledPeriods = v, &blk.n[7]
				case "throttled_time":
					blk.t[3], c.ThrottledTime = time.Duration(v), &blk.t[3]
				}
			})
			if err != nil {
				return nil, err
			}
		}
		st.CPU = c
	}
	if s.hs[sfPidsCurrent] != nil {
		p := &blk.pids
		var err error
		if p.Current, err = r.number(sfPidsCurrent, &blk.n[8]); err != nil {
			return nil, err
		}
		b, err := r.read(sfPidsMax)
		if err != nil {
			return nil, err
		}
		if b != nil {
			lim, err := statfile.ParseLimit(b)
			if err != nil {
				return nil, err
			}
			blk.limit, p.Limit = semantic.Count(lim), &blk.limit
		}
		st.Pids = p
	}
	if s.hs[sfIOBytes] != nil {
		io, err := r.ioStats()
		if err != nil {
			return nil, err
		}
		st.IO = io
	}
	return st, nil
}

// ioStats reads the two blkio throttle statistics, devices in the order
// they first appear; nil when there are none.
func (r *statReader) ioStats() ([]semantic.IODeviceStats, error) {
	var buf [8]ioDevice
	devs := buf[:0]
	for i, f := range []statFile{sfIOBytes, sfIOServiced} {
		b, err := r.read(f)
		if err != nil {
			return nil, err
		}
		err = statfile.ScanBlkio(b, func(major, minor int64, op []byte, v uint64) {
			j := 0
			for j < len(devs) && (devs[j].major != major || devs[j].minor != minor) {
				j++
			}
			if j == len(devs) {
				devs = append(devs, ioDevice{major: major, minor: minor})
			}
			switch string(op) {
			case "Read":
				devs[j].v[2*i], devs[j].has[2*i] = v, true
			case "Write":
				devs[j].v[2*i+1], devs[j].has[2*i+1] = v, true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if len(devs) == 0 {
		return nil, nil
	}
	out := make([]semantic.IODeviceStats, len(devs))
	vals := make([]uint64, 4*len(devs))
	for j, dev := range devs {
		o := &out[j]
		o.Major, o.Minor = dev.major, dev.minor
		v := vals[4*j : 4*j+4]
		copy(v, dev.v[:])
		for k, dst := range []**uint64{&o.ReadBytes, &o.WriteBytes, &o.ReadIOs, &o.WriteIOs} {
			if dev.has[k] {
				*dst = &v[k]
			}
		}
	}
	return out, nil
}
