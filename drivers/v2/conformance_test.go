package v2_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/conformance"
	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// TestConformance runs the suite on the cgroup2 hierarchy beneath the test
// process's own cgroup, a fresh scratch group per subtest. What it
// enforces follows the controllers that cgroup hands down: on a hybrid
// host's controller-less unified mount, devices, freeze and kill; in the
// pure v2 VM (test/vm/lane.sh), memory, pids and CPU as well.
func TestConformance(t *testing.T) {
	var h conformance.Harness
	if !conformance.IsHelper() {
		h = newHarness(t, nil).harness()
	}
	conformance.Run(t, h)
}

// host is the cgroup2 view a harness runs on.
type host struct {
	// own is the test process's own cgroup2 directory; the scratch groups
	// go below it.
	own string
	// cgroup is own's cgroup path, mount the mount point it is seen
	// through.
	cgroup, mount string
	// controllers are those own hands down (its cgroup.subtree_control),
	// which is what a scratch group below it has.
	controllers []string
	settings    map[string]string
}

func newHarness(t testing.TB, settings map[string]string) *host {
	t.Helper()
	own := testenv.RequireCgroup2(t)
	hs := testenv.LoadHost(t)
	h := &host{own: own, settings: settings}
	for _, e := range hs.Self {
		if e.IsV2() {
			h.cgroup = e.Path
		}
	}
	for _, m := range hs.Mounts {
		if m.FSType == "cgroup2" && strings.HasPrefix(own, m.MountPoint) && len(m.MountPoint) > len(h.mount) {
			h.mount = m.MountPoint
		}
	}
	if h.mount == "" {
		t.Fatalf("no cgroup2 mount shows %s", own)
	}
	b, err := os.ReadFile(filepath.Join(own, "cgroup.subtree_control"))
	if err != nil {
		t.Fatal(err)
	}
	h.controllers = strings.Fields(string(b))
	return h
}

func (h *host) has(c string) bool { return slices.Contains(h.controllers, c) }

// newDriver makes a scratch group and a driver rooted on it.
func (h *host) newDriver(t testing.TB, opts ...v2.Option) (*v2.Driver, string) {
	t.Helper()
	s := testenv.NewScratch(t, "")
	dir := s.Dirs[""]
	settings := map[string]string{"mount": h.mount}
	for k, v := range h.settings {
		settings[k] = v
	}
	d, err := v2.New(semantic.Options{Root: filepath.Join(h.cgroup, s.Name), Settings: settings}, opts...)
	if err != nil {
		t.Fatalf("open v2 on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d, dir
}

func (h *host) harness() conformance.Harness {
	var (
		mu    sync.Mutex
		dirs  = map[semantic.Driver]string{}
		fault = map[semantic.Driver]*injector{}
	)
	dirOf := func(d semantic.Driver) string {
		mu.Lock()
		defer mu.Unlock()
		return dirs[d]
	}
	enforces := []semantic.Feature{semantic.DevicesFeature, semantic.Freeze, semantic.Kill}
	for c, f := range map[string]semantic.Feature{"memory": semantic.MemoryMax, "pids": semantic.PidsMax, "cpu": semantic.CPUMaxFeature} {
		if h.has(c) {
			enforces = append(enforces, f)
		}
	}
	hc := conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			in := &injector{}
			d, dir := h.newDriver(t, v2.WithFaults(in.hook))
			mu.Lock()
			dirs[d], fault[d] = dir, in
			mu.Unlock()
			t.Cleanup(func() {
				mu.Lock()
				delete(dirs, d)
				delete(fault, d)
				mu.Unlock()
			})
			return d
		},
		InjectFault: func(d semantic.Driver, nth int, err error) bool {
			mu.Lock()
			in := fault[d]
			mu.Unlock()
			if in == nil {
				return false
			}
			in.arm(nth, err)
			return true
		},
		Observer: observer{dirOf: dirOf},
		Enforces: enforces,
		Leaks: func(d semantic.Driver) []string {
			leaks, err := testenv.Leaks(dirOf(d))
			if err != nil {
				return []string{err.Error()}
			}
			return leaks
		},
		InGroup: func(d semantic.Driver, p semantic.Path, procCgroup string) bool {
			want := filepath.Join(h.cgroup, filepath.Base(dirOf(d)), p.String())
			for line := range strings.SplitSeq(procCgroup, "\n") {
				if rest, ok := strings.CutPrefix(line, "0::"); ok {
					return rest == want
				}
			}
			return false
		},
	}
	if h.has("cpuset") {
		hc.CPUs = readSet(filepath.Join(h.own, "cpuset.cpus.effective"))
		hc.Mems = readSet(filepath.Join(h.own, "cpuset.mems.effective"))
	}
	if h.has("io") {
		if dev := os.Getenv("CGSEM_VM_BLOCKDEV"); dev != "" {
			if _, maj, min, err := semantic.StatDevice(dev); err == nil {
				hc.IODevice = &[2]int64{maj, min}
			}
		}
	}
	if h.has("hugetlb") {
		hc.HugePageSizes = hugePageSizes()
	}
	return hc
}

func readSet(file string) semantic.CPUSet {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	s, err := semantic.ParseCPUSet(string(b))
	if err != nil || len(s) == 0 {
		return nil
	}
	return s
}

func hugePageSizes() []semantic.Bytes {
	ents, _ := os.ReadDir("/sys/kernel/mm/hugepages")
	var out []semantic.Bytes
	for _, e := range ents {
		kb := strings.TrimSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB")
		if n, err := strconv.ParseUint(kb, 10, 64); err == nil {
			out = append(out, semantic.Bytes(n)*semantic.KiB)
		}
	}
	slices.Sort(out)
	return out
}

// injector fails the nth change the driver makes, once.
type injector struct {
	mu        sync.Mutex
	remaining int
	err       error
}

func (in *injector) arm(nth int, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if nth < 1 {
		in.remaining, in.err = 0, nil
		return
	}
	if err == nil {
		err = unix.EIO
	}
	in.remaining, in.err = nth, err
}

func (in *injector) hook(op, name, value string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.remaining == 0 {
		return nil
	}
	in.remaining--
	if in.remaining > 0 {
		return nil
	}
	err := in.err
	in.err = nil
	return err
}

// observer reads the kernel's files itself, with parsing of its own, so
// that the suite checks the driver against the kernel and not against
// itself. Device lists are not observable (a program's rules cannot be
// read back from the kernel); they stay nil.
type observer struct {
	dirOf func(semantic.Driver) string
}

func (o observer) dir(d semantic.Driver, p semantic.Path) string {
	return filepath.Join(o.dirOf(d), p.String())
}

func (o observer) Exists(t *testing.T, d semantic.Driver, p semantic.Path) bool {
	st, err := os.Stat(o.dir(d, p))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("observer: %v", err)
	}
	return err == nil && st.IsDir()
}

func (o observer) Processes(t *testing.T, d semantic.Driver, p semantic.Path) []int {
	b, err := os.ReadFile(filepath.Join(o.dir(d, p), "cgroup.procs"))
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("observer: cgroup.procs: %v", err)
		}
		pids = append(pids, n)
	}
	slices.Sort(pids)
	return pids
}

func (o observer) Resources(t *testing.T, d semantic.Driver, p semantic.Path, fs []semantic.Feature) *semantic.Resources {
	dir := o.dir(d, p)
	read := func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			return "", false
		}
		if err != nil {
			t.Fatalf("observer: %v", err)
		}
		return strings.TrimSpace(string(b)), true
	}
	num := func(s string) uint64 {
		if s == "max" {
			return semantic.Unlimited
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("observer: %q: %v", s, err)
		}
		return n
	}
	bytesOf := func(name string) *semantic.Bytes {
		s, ok := read(name)
		if !ok {
			return nil
		}
		b := semantic.Bytes(num(s))
		return &b
	}
	r := &semantic.Resources{Memory: &semantic.Memory{}, CPU: &semantic.CPU{}, IO: &semantic.IO{}, Pids: &semantic.Pids{}}
	for _, f := range fs {
		switch f {
		case semantic.MemoryMax:
			r.Memory.Max = bytesOf("memory.max")
		case semantic.MemoryHigh:
			r.Memory.High = bytesOf("memory.high")
		case semantic.MemoryLow:
			r.Memory.Low = bytesOf("memory.low")
		case semantic.MemoryMin:
			r.Memory.Min = bytesOf("memory.min")
		case semantic.MemorySwap:
			r.Memory.Swap = bytesOf("memory.swap.max")
		case semantic.CPUWeight:
			if s, ok := read("cpu.weight"); ok {
				w := num(s)
				r.CPU.Weight = &w
			}
		case semantic.CPUMaxFeature:
			if s, ok := read("cpu.max"); ok {
				q, per, _ := strings.Cut(s, " ")
				period := time.Duration(num(per)) * time.Microsecond
				m := semantic.CPUMax{Period: period}
				if q != "max" {
					m.CPUs = float64(num(q)) / float64(num(per))
				}
				r.CPU.Max = &m
			}
		case semantic.CPUSetCPUs, semantic.CPUSetMems:
			name := "cpuset.cpus"
			if f == semantic.CPUSetMems {
				name = "cpuset.mems"
			}
			s, ok := read(name)
			if ok && s == "" {
				s, ok = read(name + ".effective")
			}
			if ok {
				set, err := semantic.ParseCPUSet(s)
				if err != nil {
					t.Fatalf("observer: %s: %v", name, err)
				}
				if f == semantic.CPUSetCPUs {
					r.CPU.Cpus = set
				} else {
					r.CPU.Mems = set
				}
			}
		case semantic.IOWeight:
			if s, ok := read("io.weight"); ok {
				first, _, _ := strings.Cut(s, "\n")
				w := num(strings.TrimPrefix(first, "default "))
				r.IO.Weight = &w
			}
		case semantic.IOLimits:
			if s, ok := read("io.max"); ok {
				r.IO.Limits = []semantic.IOLimit{}
				for line := range strings.SplitSeq(s, "\n") {
					fields := strings.Fields(line)
					if len(fields) == 0 {
						continue
					}
					majS, minS, _ := strings.Cut(fields[0], ":")
					l := semantic.IOLimit{Major: int64(num(majS)), Minor: int64(num(minS))}
					for _, kv := range fields[1:] {
						k, v, _ := strings.Cut(kv, "=")
						n := num(v)
						if n == semantic.Unlimited {
							n = 0
						}
						switch k {
						case "rbps":
							l.ReadBPS = n
						case "wbps":
							l.WriteBPS = n
						case "riops":
							l.ReadIOPS = n
						case "wiops":
							l.WriteIOPS = n
						}
					}
					r.IO.Limits = append(r.IO.Limits, l)
				}
			}
		case semantic.PidsMax:
			if s, ok := read("pids.max"); ok {
				c := semantic.Count(num(s))
				r.Pids.Max = &c
			}
		case semantic.HugeTLB:
			for _, size := range hugePageSizes() {
				name := "hugetlb." + hugeName(size) + ".max"
				if b := bytesOf(name); b != nil {
					r.HugeTLB = append(r.HugeTLB, semantic.HugeTLBLimit{PageSize: size, Limit: *b})
				}
			}
		}
	}
	return r
}

func hugeName(size semantic.Bytes) string {
	switch {
	case size >= semantic.GiB:
		return strconv.FormatUint(uint64(size/semantic.GiB), 10) + "GB"
	case size >= semantic.MiB:
		return strconv.FormatUint(uint64(size/semantic.MiB), 10) + "MB"
	}
	return strconv.FormatUint(uint64(size/semantic.KiB), 10) + "KB"
}
