package v1

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// statsHolder keeps a group's stat files open between Stats calls (the
// "stat-files" setting): re-reading a held file is one pread.
type statsHolder struct {
	mu    sync.Mutex
	files map[string]*cgroupfs.File // hierarchy key + "/" + file
	buf   []byte
}

func (s *statsHolder) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
}

// release closes a group's held stat files and forgets them; a later
// Stats opens them again.
func (d *Driver) release(s *statsHolder) {
	d.mu.Lock()
	delete(d.held, s)
	d.mu.Unlock()
	s.close()
}

// statReader reads one group's stat files, through held descriptors or
// not.
type statReader struct {
	d       *Driver
	p       semantic.Path
	s       *statsHolder // locked by the caller
	missing bool         // some file was absent
}

// read returns the content of name in h, nil if the file is absent (the
// top of a hierarchy lacks some). The returned slice is valid until the
// next read.
func (r *statReader) read(h *hier, name string) ([]byte, error) {
	path := file(r.p, name)
	if !r.d.holdStats {
		b, err := h.root.ReadInto(path, r.s.buf)
		return r.result(b, err)
	}
	key := h.key + "/" + name
	f := r.s.files[key]
	if f == nil {
		var err error
		if f, err = h.root.OpenFile(path, unix.O_RDONLY); err != nil {
			return r.result(nil, err)
		}
		if r.s.files == nil {
			r.s.files = map[string]*cgroupfs.File{}
			r.d.mu.Lock()
			r.d.held[r.s] = struct{}{}
			r.d.mu.Unlock()
		}
		r.s.files[key] = f
	}
	b, err := f.ReadInto(r.s.buf)
	if errors.Is(err, unix.ENODEV) {
		// The group this descriptor was opened on is gone; a group made
		// again at the path is another directory.
		f.Close()
		delete(r.s.files, key)
		if f, err = h.root.OpenFile(path, unix.O_RDONLY); err != nil {
			return r.result(nil, err)
		}
		r.s.files[key] = f
		b, err = f.ReadInto(r.s.buf)
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
	r.s.buf = b
	return b, nil
}

func ptr[T any](v T) *T { return &v }

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
	g.stats.mu.Lock()
	defer g.stats.mu.Unlock()
	r := &statReader{d: g.d, p: g.p, s: g.stats}
	st, err := r.stats()
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
	d := r.d
	st := &semantic.Stats{}
	uint := func(h *hier, name string) (*uint64, error) {
		b, err := r.read(h, name)
		if err != nil || b == nil {
			return nil, err
		}
		v, err := statfile.ParseUint(b)
		if err != nil {
			return nil, err
		}
		return &v, nil
	}
	if h := d.byCtrl["memory"]; h != nil {
		m := &semantic.MemoryStats{}
		var err error
		if m.Usage, err = uint(h, "memory.usage_in_bytes"); err != nil {
			return nil, err
		}
		if m.Peak, err = uint(h, "memory.max_usage_in_bytes"); err != nil {
			return nil, err
		}
		b, err := r.read(h, "memory.stat")
		if err != nil {
			return nil, err
		}
		if b != nil {
			err = statfile.ScanFlat(b, func(k []byte, v uint64) {
				switch string(k) {
				case "total_rss":
					m.Anon = ptr(v)
				case "total_cache":
					m.File = ptr(v)
				case "total_swap":
					m.Swap = ptr(v)
				}
			})
			if err != nil {
				return nil, err
			}
		}
		if b, err = r.read(h, "memory.oom_control"); err != nil {
			return nil, err
		}
		if b != nil {
			err = statfile.ScanFlat(b, func(k []byte, v uint64) {
				if string(k) == "oom_kill" {
					m.OOMKill = ptr(v)
				}
			})
			if err != nil {
				return nil, err
			}
		}
		st.Memory = m
	}
	if h, hc := d.byCtrl["cpuacct"], d.byCtrl["cpu"]; h != nil || hc != nil {
		c := &semantic.CPUStats{}
		if h != nil {
			usage, err := uint(h, "cpuacct.usage")
			if err != nil {
				return nil, err
			}
			if usage != nil {
				c.Usage = ptr(time.Duration(*usage))
			}
			b, err := r.read(h, "cpuacct.usage_all")
			if err != nil {
				return nil, err
			}
			if b != nil {
				rows, err := statfile.ParseCpuacctUsageAll(b)
				if err != nil {
					return nil, err
				}
				var user, sys time.Duration
				for _, row := range rows {
					user += time.Duration(row.User)
					sys += time.Duration(row.System)
				}
				c.User, c.System = &user, &sys
			}
		}
		if hc != nil {
			b, err := r.read(hc, "cpu.stat")
			if err != nil {
				return nil, err
			}
			if b != nil {
				err = statfile.ScanFlat(b, func(k []byte, v uint64) {
					switch string(k) {
					case "nr_periods":
						c.Periods = ptr(v)
					case "nr_throttled":
						c.ThrottledPeriods = ptr(v)
					case "throttled_time":
						c.ThrottledTime = ptr(time.Duration(v))
					}
				})
				if err != nil {
					return nil, err
				}
			}
		}
		st.CPU = c
	}
	if h := d.byCtrl["pids"]; h != nil {
		cur, err := uint(h, "pids.current")
		if err != nil {
			return nil, err
		}
		b, err := r.read(h, "pids.max")
		if err != nil {
			return nil, err
		}
		p := &semantic.PidsStats{Current: cur}
		if b != nil {
			lim, err := statfile.ParseLimit(b)
			if err != nil {
				return nil, err
			}
			p.Limit = ptr(semantic.Count(lim))
		}
		st.Pids = p
	}
	if h := d.byCtrl["blkio"]; h != nil {
		byDev := map[[2]int64]*semantic.IODeviceStats{}
		var order [][2]int64
		for _, f := range []struct {
			name        string
			read, write func(*semantic.IODeviceStats, uint64)
		}{
			{"blkio.throttle.io_service_bytes_recursive",
				func(s *semantic.IODeviceStats, v uint64) { s.ReadBytes = ptr(v) },
				func(s *semantic.IODeviceStats, v uint64) { s.WriteBytes = ptr(v) }},
			{"blkio.throttle.io_serviced_recursive",
				func(s *semantic.IODeviceStats, v uint64) { s.ReadIOs = ptr(v) },
				func(s *semantic.IODeviceStats, v uint64) { s.WriteIOs = ptr(v) }},
		} {
			b, err := r.read(h, f.name)
			if err != nil {
				return nil, err
			}
			err = statfile.ScanBlkio(b, func(major, minor int64, opName []byte, v uint64) {
				k := [2]int64{major, minor}
				s := byDev[k]
				if s == nil {
					s = &semantic.IODeviceStats{Major: major, Minor: minor}
					byDev[k] = s
					order = append(order, k)
				}
				switch string(opName) {
				case "Read":
					f.read(s, v)
				case "Write":
					f.write(s, v)
				}
			})
			if err != nil {
				return nil, err
			}
		}
		for _, k := range order {
			st.IO = append(st.IO, *byDev[k])
		}
	}
	return st, nil
}
