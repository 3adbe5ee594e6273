package v1

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// The controllers the suite needs here; every v1 hierarchy the host has
// gets a scratch root, since the driver uses them all.
var suiteControllers = []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio"}

// hierarchyKeys names every writable v1 hierarchy as testenv.Host.SelfDir
// takes it: its first controller, or "name=X".
func hierarchyKeys(t testing.TB) []string {
	var keys []string
	for _, h := range testenv.LoadHost(t).Hierarchies {
		switch {
		case h.Version != 1 || h.Mounts[len(h.Mounts)-1].ReadOnly():
		case len(h.Controllers) > 0:
			keys = append(keys, h.Controllers[0])
		case h.Name != "":
			keys = append(keys, "name="+h.Name)
		}
	}
	return keys
}

// newTestDriver makes a driver rooted at a fresh scratch group beneath the
// test's own cgroup in every hierarchy; the scratch's cleanup checks for
// leaks and removes it after the driver is closed.
func newTestDriver(t *testing.T, opts semantic.Options) (*Driver, *testenv.Scratch) {
	t.Helper()
	s := testenv.NewScratch(t, hierarchyKeys(t)...)
	opts.Root = "self/" + s.Name
	d, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d, s
}

func hostHarness(t *testing.T) conformance.Harness {
	var st unix.Stat_t
	require.NoError(t, unix.Stat("/", &st))
	cpus := readSet(t, "cpuset", "cpuset.cpus")
	mems := readSet(t, "cpuset", "cpuset.mems")
	return conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			d, _ := newTestDriver(t, semantic.Options{})
			return d
		},
		InjectFault: func(d semantic.Driver, nth int, err error) bool {
			d.(*Driver).injectFault(nth, err)
			return true
		},
		Observer: observer{},
		Enforces: []semantic.Feature{semantic.MemoryMax, semantic.PidsMax, semantic.DevicesFeature,
			semantic.Freeze, semantic.CPUMaxFeature, semantic.Kill},
		Leaks: func(d semantic.Driver) []string {
			var out []string
			for _, h := range d.(*Driver).hs {
				leaks, err := testenv.Leaks(h.dir)
				if err != nil {
					out = append(out, err.Error())
				}
				for _, l := range leaks {
					out = append(out, h.key+":"+l)
				}
				if pids := testenv.Procs(h.dir); len(pids) > 0 {
					out = append(out, fmt.Sprintf("%s: processes %v in the root", h.key, pids))
				}
			}
			return out
		},
		CPUs:     cpus,
		Mems:     mems,
		IODevice: &[2]int64{int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))},
		InGroup: func(d semantic.Driver, p semantic.Path, procCgroup string) bool {
			entries, err := mountinfo.ParseCgroup(strings.NewReader(procCgroup))
			if err != nil {
				return false
			}
			for _, h := range d.(*Driver).hs {
				want := strings.TrimSuffix(h.cgroupRoot, "/") + "/" + p.String()
				found := false
				for _, e := range entries {
					found = found || !e.IsV2() && e.Key() == h.key && e.Path == want
				}
				if !found {
					return false
				}
			}
			return true
		},
	}
}

func readSet(t *testing.T, ctrl, name string) semantic.CPUSet {
	t.Helper()
	dir, ok, why := testenv.LoadHost(t).SelfDir(ctrl)
	require.True(t, ok, why)
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	set, err := semantic.ParseCPUSet(string(b))
	require.NoError(t, err)
	return set
}

func TestConformance(t *testing.T) {
	testenv.RequireV1(t, suiteControllers...)
	conformance.Run(t, hostHarness(t))
}

// observer reads the kernel's files itself, with its own parsing, so the
// suite checks the driver against the kernel rather than its own word.
type observer struct{}

func (observer) dirs(d semantic.Driver, p semantic.Path) map[string]string {
	out := map[string]string{}
	for _, h := range d.(*Driver).hs {
		out[h.key] = filepath.Join(h.dir, p.String())
	}
	return out
}

func (o observer) Exists(t *testing.T, d semantic.Driver, p semantic.Path) bool {
	var have, missing []string
	for key, dir := range o.dirs(d, p) {
		if _, err := os.Stat(dir); err == nil {
			have = append(have, key)
		} else {
			missing = append(missing, key)
		}
	}
	if len(have) > 0 && len(missing) > 0 {
		t.Errorf("observer: %s exists in %v but not in %v", p.Display(), have, missing)
	}
	return len(missing) == 0
}

func (o observer) Processes(t *testing.T, d semantic.Driver, p semantic.Path) []int {
	var first []int
	firstKey := ""
	for key, dir := range o.dirs(d, p) {
		pids := testenv.Procs(dir)
		if firstKey == "" {
			first, firstKey = pids, key
			continue
		}
		if !slices.Equal(pids, first) {
			t.Errorf("observer: %s holds %v in %s but %v in %s", p.Display(), pids, key, first, firstKey)
		}
	}
	return first
}

func (o observer) Resources(t *testing.T, d semantic.Driver, p semantic.Path, fs []semantic.Feature) *semantic.Resources {
	drv := d.(*Driver)
	dirs := o.dirs(d, p)
	dir := func(ctrl string) string {
		h := drv.byCtrl[ctrl]
		if h == nil {
			return ""
		}
		return dirs[h.key]
	}
	read := func(ctrl, name string) (string, bool) {
		if dir(ctrl) == "" {
			return "", false
		}
		b, err := os.ReadFile(filepath.Join(dir(ctrl), name))
		if err != nil {
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Errorf("observer: %q is not a number", s)
		}
		return v
	}
	// A v1 memory counter reads PAGE_COUNTER_MAX pages when unlimited.
	limit := uint64(1<<63-1) / uint64(os.Getpagesize()) * uint64(os.Getpagesize())
	mem := func(name string) (semantic.Bytes, bool) {
		s, ok := read("memory", name)
		if !ok {
			return 0, false
		}
		if v := num(s); v < limit {
			return semantic.Bytes(v), true
		}
		return semantic.Unlimited, true
	}
	res := &semantic.Resources{}
	for _, f := range fs {
		switch f {
		case semantic.MemoryMax:
			if v, ok := mem("memory.limit_in_bytes"); ok {
				memOf(res).Max = &v
			}
		case semantic.MemoryLow:
			if v, ok := mem("memory.soft_limit_in_bytes"); ok {
				memOf(res).Low = &v
			}
		case semantic.MemorySwap:
			m, ok1 := mem("memory.limit_in_bytes")
			sw, ok2 := mem("memory.memsw.limit_in_bytes")
			if ok1 && ok2 {
				v := semantic.Bytes(semantic.Unlimited)
				if !sw.IsUnlimited() {
					v = sw - m
				}
				memOf(res).Swap = &v
			}
		case semantic.CPUWeight:
			if s, ok := read("cpu", "cpu.shares"); ok {
				// The inverse of systemd's map, computed here on its own.
				w := (num(s)*100 + 512) / 1024
				cpuOf(res).Weight = &w
			}
		case semantic.CPUMaxFeature:
			q, ok1 := read("cpu", "cpu.cfs_quota_us")
			per, ok2 := read("cpu", "cpu.cfs_period_us")
			if ok1 && ok2 {
				period := time.Duration(num(per)) * time.Microsecond
				m := &semantic.CPUMax{Period: period}
				if q != "-1" {
					m.CPUs = float64(num(q)) / float64(num(per))
				}
				cpuOf(res).Max = m
			}
		case semantic.CPUSetCPUs, semantic.CPUSetMems:
			name := map[semantic.Feature]string{semantic.CPUSetCPUs: "cpuset.cpus", semantic.CPUSetMems: "cpuset.mems"}[f]
			if s, ok := read("cpuset", name); ok {
				set, err := semantic.ParseCPUSet(s)
				require.NoError(t, err)
				if f == semantic.CPUSetCPUs {
					cpuOf(res).Cpus = set
				} else {
					cpuOf(res).Mems = set
				}
			}
		case semantic.IOWeight:
			if s, ok := read("blkio", "blkio.bfq.weight"); ok {
				w := num(strings.TrimPrefix(s, "default "))
				ioOf(res).Weight = &w
			}
		case semantic.IOLimits:
			byDev := map[[2]int64]*semantic.IOLimit{}
			for i, name := range []string{"read_bps", "write_bps", "read_iops", "write_iops"} {
				s, ok := read("blkio", "blkio.throttle."+name+"_device")
				if !ok {
					continue
				}
				for _, line := range strings.Split(s, "\n") {
					fields := strings.Fields(line)
					if len(fields) != 2 {
						continue
					}
					maj, min, _ := strings.Cut(fields[0], ":")
					k := [2]int64{int64(num(maj)), int64(num(min))}
					if byDev[k] == nil {
						byDev[k] = &semantic.IOLimit{Major: k[0], Minor: k[1]}
					}
					v := num(fields[1])
					l := byDev[k]
					*[]*uint64{&l.ReadBPS, &l.WriteBPS, &l.ReadIOPS, &l.WriteIOPS}[i] = v
				}
			}
			ioOf(res).Limits = []semantic.IOLimit{}
			for _, l := range byDev {
				ioOf(res).Limits = append(ioOf(res).Limits, *l)
			}
		case semantic.PidsMax:
			if s, ok := read("pids", "pids.max"); ok {
				c, err := semantic.ParseCount(s)
				require.NoError(t, err)
				res.Pids = &semantic.Pids{Max: &c}
			}
		case semantic.DevicesFeature:
			if s, ok := read("devices", "devices.list"); ok {
				res.Devices = observeDevices(t, s)
			}
		}
	}
	return res
}

// observeDevices reads devices.list: "a *:* rwm" alone means everything
// is allowed; otherwise each line is an allowed exception.
func observeDevices(t *testing.T, s string) *semantic.Devices {
	if s == "a *:* rwm" {
		return &semantic.Devices{Default: semantic.AllowByDefault}
	}
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		r, err := semantic.ParseDeviceRule(line, true)
		require.NoError(t, err, "devices.list line %q", line)
		d.Rules = append(d.Rules, r)
	}
	return d
}

func memOf(r *semantic.Resources) *semantic.Memory {
	if r.Memory == nil {
		r.Memory = &semantic.Memory{}
	}
	return r.Memory
}

func cpuOf(r *semantic.Resources) *semantic.CPU {
	if r.CPU == nil {
		r.CPU = &semantic.CPU{}
	}
	return r.CPU
}

func ioOf(r *semantic.Resources) *semantic.IO {
	if r.IO == nil {
		r.IO = &semantic.IO{}
	}
	return r.IO
}
