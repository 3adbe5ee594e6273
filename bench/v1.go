package main

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	ocgroups "github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices" // registers the device setters fs and fs2 call
	ocdevices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/cgroups/fs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// v1Workloads measures the v1 lifecycle (bare, and with a process moved
// in and out) and stats reads.
func v1Workloads(ctx context.Context, b *bench) []section {
	if len(b.h.v1) == 0 {
		return []section{{Title: "v1", Notes: []string{"skipped: no cgroup v1 hierarchy here"}}}
	}
	var out []section
	pid, err := b.sleeper(ctx)
	if err != nil {
		return []section{{Title: "v1 lifecycle", Notes: []string{"error: start a sleeper: " + err.Error()}}}
	}
	if err := ctx.Err(); err != nil {
		return nil
	}
	for _, withProc := range []bool{false, true} {
		p := 0
		title := "v1 lifecycle"
		desc := "Create a group in memory, pids, cpu, devices and freezer; memory 256 MiB, pids 100, CPU weight 50 (cpu.shares 512), devices deny all + /dev/null; delete."
		if withProc {
			p = pid
			title = "v1 lifecycle with a process"
			desc = "As v1 lifecycle, plus one process moved into the new group and back out to its parent before the delete."
		}
		pl := plan{warm: 20, rounds: 40, per: 50}.scaled(b.factor)
		res := run(ctx, pl, v1LifecycleImpls(b, p))
		s := timedSection(title, desc, "raw", res)
		sameLayout := fmt.Sprintf("raw (all %d v1 hierarchies)", len(b.h.v1))
		if !withProc {
			floorBudget(&s, "cgsem v1", sameLayout, 1.15)
			s.ratioBudget("cgsem v1 (5 hierarchies)", 1.15)
		}
		s.Notes = append(s.Notes, v1LifecycleNotes(b)...)
		s.Notes = append(s.Notes, relative(&s, "cgsem v1", sameLayout, "the floor of the same layout")...)
		out = append(out, s)
		b.progress(s)
	}
	s := timedSection("v1 stats", "Read the memory, CPU, pids and IO figures of an existing group.",
		"raw", run(ctx, plan{warm: 50, rounds: 20, per: 500}.scaled(b.factor), v1StatsImpls(b)))
	s.ratioBudget("cgsem v1 (reopen)", 1.0)
	s.fasterBudget("cgsem v1 (reopen)", 5, "opencontainers", "containerd")
	s.ratioBudget("cgsem v1 (held)", 0.5)
	s.fasterBudget("cgsem v1 (held)", 5, "opencontainers", "containerd")
	s.Notes = append(s.Notes,
		"every contender reads the files cgsem's v1 Group.Stats reads: "+statFileList()+"; cgsem's Stats has no filter and includes blkio, so the floor and the peers read blkio too",
		"raw: openat (relative to a held descriptor of the run's root in the hierarchy) + read + close per file, then parse; raw (held): one pread per file on descriptors opened once",
		"cgsem v1 (reopen): setting stat-files=reopen; cgsem v1 (held): stat-files=hold (the default), descriptors kept after the first call; both opened with Root self/RUN, the run's root, as the floor is",
		"opencontainers: fs.Manager.GetStats with paths for memory, cpu, cpuacct, pids, blkio; containerd: cgroup1.Load with those subsystems, then Stat()",
	)
	s.Notes = append(s.Notes, relative(&s, "cgsem v1 (held)", "raw (held)", "the floor with held descriptors")...)
	b.progress(s)
	out = append(out, s)
	return out
}

// floorBudget holds impl to at most max times the median of floor, a
// floor other than the section's reference. The v1 lifecycle budget is
// "the raw-syscall floor for the same writes" (issue 3), and cgsem's v1
// driver makes a group in every v1 hierarchy and seeds its cpuset (issue
// 3: "a group is one directory per hierarchy"): those writes are the
// floor of the same layout's, not the five-hierarchy floor's.
func floorBudget(s *section, impl, floor string, max float64) {
	r, f := s.find(impl), s.find(floor)
	if r == nil || f == nil {
		return
	}
	c := check{Text: fmt.Sprintf("≤ %.2fx %s", max, floor)}
	if r.Missing == "" && f.Missing == "" && f.Sum.Median > 0 {
		ratio := float64(r.Sum.Median) / float64(f.Sum.Median)
		c.Text = fmt.Sprintf("≤ %.2fx %s (%.2fx)", max, floor, ratio)
		c.Over = ratio > max
	}
	r.Checks = append(r.Checks, c)
}

// relative says how a row compares with another floor than the section's
// reference, as a note; none when either has no figure.
func relative(s *section, impl, floor, what string) []string {
	a, f := s.find(impl), s.find(floor)
	if a == nil || f == nil || a.Missing != "" || f.Missing != "" || f.Sum.Median == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s against %s (%s): %.2fx", impl, what, floor, float64(a.Sum.Median)/float64(f.Sum.Median))}
}

// runRoot is the Options.Root naming the run's root: the v1 rows open
// cgsem where the floors hold their descriptors.
func runRoot(root *benchRoot) string { return semantic.RootSelf + "/" + root.name }

func statFileList() string {
	var names []string
	for _, f := range v1StatFiles {
		names = append(names, f.name)
	}
	return strings.Join(names, ", ")
}

func v1LifecycleNotes(b *bench) []string {
	return []string{
		"raw: " + strconv.Itoa(len(hierarchiesOf(b.h, v1Lifecycle))) + " hierarchies, mkdirat on a held descriptor of the parent, openat + write + close per attribute, unlinkat",
		fmt.Sprintf("raw (all %d v1 hierarchies): the same writes, with the group made in every v1 hierarchy mounted here and cpuset.cpus/mems seeded, as cgsem's v1 driver lays a group out", len(b.h.v1)),
		"cgsem v1: opened with Root self/RUN, the run's root, where the floors hold their descriptors; Create(NAME, resources), Delete; its budget is against the floor of the same layout, which makes the directories and writes cgsem's v1 driver must make (a group in every hierarchy, cpuset seeded)",
		"cgsem v1 (5 hierarchies): the same, opened with the setting hierarchies=" + strings.Join(v1Lifecycle, ",") + ", so it makes the group in the five hierarchies the floor and the peers use; its budget is the issue's, against raw",
		"opencontainers: fs.NewManager with paths for the five hierarchies, Apply, Set, Destroy; containerd: cgroup1.New with a hierarchy of the five subsystems and a Path func (both computed once, outside the timing), Delete",
		"with a process: cgsem Group.AddProcess then AddProcess on the parent group; opencontainers Apply(pid) then AddPid on a manager of the parent; containerd Add then MoveTo the parent",
	}
}

// hierarchiesOf lists the distinct hierarchy keys holding controllers.
func hierarchiesOf(h *host, controllers []string) []string {
	var ks []string
	for _, c := range controllers {
		if k, ok := h.ctrl[c]; ok && !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	return ks
}

func v1LifecycleImpls(b *bench, pid int) []impl {
	h, root := b.h, b.root
	name := func(who string, i int) string { return fmt.Sprintf("%s-%d", who, i) }
	var raw, rawAll *rawV1
	rawImpl := func(label string, r **rawV1, ctrls []string) impl {
		return impl{
			name: label,
			setup: func(context.Context) (err error) {
				*r, err = openRawV1(h, root, ctrls)
				return err
			},
			op: func(_ context.Context, i int) error { return (*r).lifecycle(name("raw", i), pid) },
			teardown: func() error {
				if *r != nil {
					(*r).close()
				}
				return nil
			},
		}
	}
	var all []string
	for _, k := range h.keys() {
		all = append(all, strings.Split(k, ",")...)
	}
	impls := []impl{
		rawImpl("raw", &raw, v1Lifecycle),
		rawImpl(fmt.Sprintf("raw (all %d v1 hierarchies)", len(h.v1)), &rawAll, all),
	}

	// cgsem: as it lays a group out by default (every hierarchy), and
	// limited to the five hierarchies the floor and the peers use.
	impls = append(impls,
		cgsemV1Impl("cgsem v1", "cgsem", semantic.Options{Root: runRoot(root)}, pid),
		cgsemV1Impl("cgsem v1 (5 hierarchies)", "cgsem5", semantic.Options{Root: runRoot(root),
			Settings: map[string]string{"hierarchies": strings.Join(v1Lifecycle, ",")}}, pid))

	// opencontainers/cgroups, fs (v1)
	ocRes := &ocgroups.Resources{
		Memory:    256 << 20,
		PidsLimit: ptr(int64(100)),
		CpuShares: 512,
		Devices: []*ocdevices.Rule{
			{Type: ocdevices.WildcardDevice, Major: ocdevices.Wildcard, Minor: ocdevices.Wildcard, Permissions: "rwm", Allow: false},
			{Type: ocdevices.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true},
		},
	}
	ocPaths := func(group string) map[string]string {
		m := map[string]string{}
		for _, c := range v1Lifecycle {
			m[c] = filepath.Join(root.v1[h.ctrl[c]], group)
		}
		return m
	}
	var ocPark *fs.Manager
	impls = append(impls, impl{
		name: "opencontainers",
		setup: func(context.Context) (err error) {
			ocPark, err = fs.NewManager(&ocgroups.Cgroup{Resources: &ocgroups.Resources{}}, ocPaths(""))
			return err
		},
		op: func(_ context.Context, i int) error {
			m, err := fs.NewManager(&ocgroups.Cgroup{Resources: ocRes}, ocPaths(name("oc", i)))
			if err != nil {
				return err
			}
			apid := -1
			if pid > 0 {
				apid = pid
			}
			if err := m.Apply(apid); err != nil {
				m.Destroy()
				return err
			}
			if err := m.Set(ocRes); err != nil {
				m.Destroy()
				return err
			}
			if pid > 0 {
				if err := ocPark.AddPid("", pid); err != nil {
					return err
				}
			}
			return m.Destroy()
		},
	})

	// containerd/cgroups v3, cgroup1
	hier := func() ([]cgroup1.Subsystem, error) { return nil, fmt.Errorf("not set up") }
	ctrdPath := func(group string) cgroup1.Path {
		return func(n cgroup1.Name) (string, error) {
			k, ok := h.ctrl[string(n)]
			if !ok {
				return "", fmt.Errorf("no hierarchy for %s", n)
			}
			return path.Join(h.path[k], root.name, group), nil
		}
	}
	limit, shares, pidsMax := int64(256<<20), uint64(512), int64(100)
	major, minor := int64(1), int64(3)
	ctrdRes := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Shares: &shares},
		Pids:   &specs.LinuxPids{Limit: &pidsMax},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Type: "a", Major: ptr(int64(-1)), Minor: ptr(int64(-1)), Access: "rwm"},
			{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"},
		},
	}
	var ctrdPark cgroup1.Cgroup
	impls = append(impls, impl{
		name: "containerd",
		setup: func(context.Context) error {
			subs, err := ctrdSubsystems(v1Lifecycle)
			if err != nil {
				return err
			}
			hier = func() ([]cgroup1.Subsystem, error) { return subs, nil }
			ctrdPark, err = cgroup1.Load(ctrdPath(""), cgroup1.WithHierarchy(hier))
			return err
		},
		op: func(_ context.Context, i int) error {
			c, err := cgroup1.New(ctrdPath(name("ctrd", i)), ctrdRes, cgroup1.WithHierarchy(hier))
			if err != nil {
				return err
			}
			if pid > 0 {
				if err := c.Add(cgroup1.Process{Pid: pid}); err != nil {
					c.Delete()
					return err
				}
				if err := c.MoveTo(ctrdPark); err != nil {
					return err
				}
			}
			return c.Delete()
		},
	})
	return impls
}

// ctrdSubsystems is containerd's default v1 hierarchy narrowed to names.
func ctrdSubsystems(names []string) ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var subs []cgroup1.Subsystem
	for _, s := range all {
		if slices.Contains(names, string(s.Name())) {
			subs = append(subs, s)
		}
	}
	if len(subs) != len(names) {
		return nil, fmt.Errorf("containerd found %d of the subsystems %v", len(subs), names)
	}
	return subs, nil
}

// statsControllers are the controllers whose files v1StatFiles reads.
var statsControllers = []string{"memory", "cpu", "cpuacct", "pids", "blkio"}

func v1StatsImpls(b *bench) []impl {
	h, root := b.h, b.root
	const group = "stats"
	groupDirs := map[string]string{}
	for _, k := range h.keys() {
		groupDirs[k] = filepath.Join(root.v1[k], group)
	}
	var raws [2]*rawStatsReader
	var st rawStats
	rawImpl := func(label string, hold bool, r **rawStatsReader) impl {
		return impl{
			name: label,
			setup: func(context.Context) (err error) {
				*r, err = openRawStats(h, root, group, hold)
				return err
			},
			op: func(context.Context, int) error { return (*r).stats(&st) },
			teardown: func() error {
				if *r != nil {
					(*r).close()
				}
				return nil
			},
		}
	}
	impls := []impl{
		rawImpl("raw", false, &raws[0]),
		rawImpl("raw (held)", true, &raws[1]),
	}
	// The group every contender reads is made here, before any of them
	// opens it, and goes with the run's root.
	if err := makeStatsGroup(h, root, group); err != nil {
		for i := range impls {
			impls[i].skip = "error: make the stats group: " + err.Error()
		}
		return impls
	}
	for _, mode := range []string{"reopen", "held"} {
		setting := map[string]string{"reopen": "reopen", "held": "hold"}[mode]
		im := impl{name: "cgsem v1 (" + mode + ")"}
		d, skip := openDriver("v1", semantic.Options{Root: runRoot(root), Settings: map[string]string{"stat-files": setting}})
		im.skip = skip
		if d != nil {
			var g semantic.Group
			im.setup = func(ctx context.Context) error {
				p, err := semantic.NewPath(group)
				if err != nil {
					return err
				}
				g, err = d.Open(ctx, p)
				return err
			}
			im.op = func(ctx context.Context, _ int) error {
				_, err := g.Stats(ctx)
				return err
			}
			im.teardown = d.Close
		}
		impls = append(impls, im)
	}
	ocPaths := map[string]string{}
	for _, c := range statsControllers {
		ocPaths[c] = groupDirs[h.ctrl[c]]
	}
	var oc *fs.Manager
	impls = append(impls, impl{
		name: "opencontainers",
		setup: func(context.Context) (err error) {
			oc, err = fs.NewManager(&ocgroups.Cgroup{Resources: &ocgroups.Resources{}}, ocPaths)
			return err
		},
		op: func(context.Context, int) error {
			_, err := oc.GetStats()
			return err
		},
	})
	var ctrd cgroup1.Cgroup
	impls = append(impls, impl{
		name: "containerd",
		setup: func(context.Context) error {
			subs, err := ctrdSubsystems(statsControllers)
			if err != nil {
				return err
			}
			p := func(n cgroup1.Name) (string, error) {
				return path.Join(h.path[h.ctrl[string(n)]], root.name, group), nil
			}
			ctrd, err = cgroup1.Load(p, cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) { return subs, nil }))
			return err
		},
		op: func(context.Context, int) error {
			_, err := ctrd.Stat()
			return err
		},
	})
	return impls
}

// makeStatsGroup makes the group the stats workload reads, in every v1
// hierarchy, seeding cpuset.
func makeStatsGroup(h *host, root *benchRoot, group string) error {
	for _, k := range h.keys() {
		d := filepath.Join(root.v1[k], group)
		if err := mkdirAt(unix.AT_FDCWD, d); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
		if h.ctrl["cpuset"] == k {
			if err := seedCpuset(root.v1[k], d); err != nil {
				return err
			}
		}
	}
	return nil
}

// cgsemV1Impl is the v1 lifecycle done by cgsem's v1 driver opened with
// opts, its groups named PREFIX-N, moving pid in and back out when it is
// not 0.
func cgsemV1Impl(label, prefix string, opts semantic.Options, pid int) impl {
	cg := impl{name: label}
	var d semantic.Driver
	var park semantic.Group
	// The driver's root is the run's root, the directory the floors hold
	// a descriptor of, so its groups are made by name below it as theirs
	// are; the parent processes go back to is that root.
	d, cg.skip = openDriver("v1", opts)
	if d != nil {
		res := v1Resources()
		cg.setup = func(ctx context.Context) (err error) {
			park, err = d.Open(ctx, semantic.Root)
			return err
		}
		cg.op = func(ctx context.Context, i int) error {
			p, err := semantic.NewPath(fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				return err
			}
			g, err := d.Create(ctx, p, res)
			if err != nil {
				return err
			}
			if pid > 0 {
				if err := g.AddProcess(ctx, pid); err != nil {
					g.Delete(ctx, nil)
					return err
				}
				if err := park.AddProcess(ctx, pid); err != nil {
					return err
				}
			}
			return g.Delete(ctx, nil)
		}
		cg.teardown = d.Close
	}
	return cg
}
