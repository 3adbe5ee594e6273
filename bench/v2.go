package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
	ocgroups "github.com/opencontainers/cgroups"
	ocdevices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/cgroups/fs2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// v2Workloads measures create + device filter + delete on the cgroup2
// mount.
func v2Workloads(ctx context.Context, b *bench) []section {
	const (
		title = "v2 lifecycle"
		desc  = "Create a group on the cgroup2 mount, attach a device filter that denies everything but /dev/null, delete."
	)
	if b.root.unified == "" {
		return []section{{Title: title, Notes: []string{"skipped: no cgroup2 mount reaches this process's cgroup"}}}
	}
	pl := plan{warm: 20, rounds: 40, per: 50}.scaled(b.factor)
	s := timedSection(title, desc, "raw", run(ctx, pl, v2LifecycleImpls(b)))
	s.ratioBudget("cgsem v2", 1.15)
	s.fasterBudget("cgsem v2", 1, "opencontainers", "containerd")
	s.Notes = append(s.Notes,
		"raw: mkdirat, openat the group, BPF_PROG_LOAD of an 11-instruction program, BPF_PROG_ATTACH (BPF_F_ALLOW_MULTI), BPF_PROG_DETACH, close, unlinkat",
		"raw (program loaded once): the same, with one program loaded before the timing and shared: what a driver that caches loaded programs pays",
		"cgsem v2: opened by name with setting mount="+b.h.unifiedMount+" and root self; Create with Devices, Delete",
		"opencontainers: os.Mkdir by hand (fs2's Apply reads /sys/fs/cgroup/cgroup.controllers, absent on a hybrid host), fs2.Manager Set with the device rules, Destroy; it raises RLIMIT_MEMLOCK to unlimited for the whole process on each load",
		"containerd: cgroup2.NewManager with the run's root as the mount point (so its subtree_control writes stay in the run's tree), Delete; it never closes the program's descriptor, so it leaks one per group",
	)
	b.progress(s)
	return []section{s}
}

func v2LifecycleImpls(b *bench) []impl {
	root := b.root
	name := func(who string, i int) string { return fmt.Sprintf("%s-%d", who, i) }
	var rootFD = -1
	var shared = rawV2{prog: -1}
	impls := []impl{
		{
			name: "raw",
			setup: func(context.Context) (err error) {
				rootFD, err = openDir(root.unified)
				return err
			},
			op: func(_ context.Context, i int) error {
				r := rawV2{root: rootFD, prog: -1}
				return r.lifecycle(name("raw", i))
			},
			teardown: func() error {
				if rootFD >= 0 {
					unix.Close(rootFD)
				}
				return nil
			},
		},
		{
			name: "raw (program loaded once)",
			setup: func(context.Context) (err error) {
				if shared.root, err = openDir(root.unified); err != nil {
					return err
				}
				shared.prog, err = loadDeviceProgram(nullOnlyProgram)
				return err
			},
			op: func(_ context.Context, i int) error { return shared.lifecycle(name("rawshared", i)) },
			teardown: func() error {
				if shared.prog >= 0 {
					unix.Close(shared.prog)
				}
				if shared.root > 0 {
					unix.Close(shared.root)
				}
				return nil
			},
		},
	}

	cg := impl{name: "cgsem v2"}
	d, skip := openDriver("v2", semantic.Options{Root: semantic.RootSelf, Settings: map[string]string{"mount": b.h.unifiedMount}})
	cg.skip = skip
	if d != nil {
		res := &semantic.Resources{Devices: nullOnly()}
		cg.op = func(ctx context.Context, i int) error {
			p, err := benchPath(root, name("cgsem", i))
			if err != nil {
				return err
			}
			g, err := d.Create(ctx, p, res)
			if err != nil {
				return err
			}
			return g.Delete(ctx, nil)
		}
		cg.teardown = d.Close
	}
	impls = append(impls, cg)

	ocRes := &ocgroups.Resources{Devices: []*ocdevices.Rule{
		{Type: ocdevices.WildcardDevice, Major: ocdevices.Wildcard, Minor: ocdevices.Wildcard, Permissions: "rwm", Allow: false},
		{Type: ocdevices.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true},
	}}
	impls = append(impls, impl{
		name: "opencontainers",
		op: func(_ context.Context, i int) error {
			dir := filepath.Join(root.unified, name("oc", i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			m, err := fs2.NewManager(&ocgroups.Cgroup{Resources: ocRes}, dir)
			if err != nil {
				os.Remove(dir)
				return err
			}
			if err := m.Set(ocRes); err != nil {
				m.Destroy()
				return err
			}
			return m.Destroy()
		},
	})

	major, minor := int64(1), int64(3)
	ctrdRes := &cgroup2.Resources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Type: "a", Major: ptr(int64(-1)), Minor: ptr(int64(-1)), Access: "rwm"},
		{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"},
	}}
	impls = append(impls, impl{
		name: "containerd",
		op: func(_ context.Context, i int) error {
			m, err := cgroup2.NewManager(root.unified, "/"+name("ctrd", i), ctrdRes)
			if err != nil {
				return err
			}
			return m.Delete()
		},
	})
	return impls
}
