// Package sdns runs a real systemd (the host's own package) as PID 1 of
// new pid, mount, cgroup, network, UTS and IPC namespaces, so that the
// systemd driver can be tested against it from an ordinary Go test on a
// host whose PID 1 is not systemd.
//
// # What Start builds
//
//   - A group named GroupPrefix+random ("cgsem-test-sd-…") below the calling
//     process's own cgroup in every hierarchy a mount reaches (read from
//     /proc/self/cgroup and /proc/self/mountinfo), with a memory and a tasks
//     limit as a safety net and cpuset.cpus/mems copied from the parent.
//     Nothing is created or written anywhere else.
//   - A child (this package's own binary, re-executed: see stage.go) in new
//     pid, mount, network, UTS and IPC namespaces. The parent moves it into
//     the group in every hierarchy; only then does the child create its
//     cgroup namespace, so that the namespace's root, and the root of every
//     cgroup filesystem it mounts, is that group.
//   - The root: an overlay whose lower layer is the host's / and whose
//     writes go to a tmpfs, with /etc changed in the tmpfs only: a boot
//     target (BootTarget) that pulls in sysinit, sockets and the D-Bus
//     system bus and nothing else; the host's enabled units (every .wants
//     and .requires of /etc/systemd/system) dropped; units that would touch
//     the host or the network masked (maskedUnits); an empty fstab and
//     crypttab; a fresh machine-id and hostname.
//   - /proc with /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus
//     read-only; a fresh read-only /sys; a minimal /dev (null, zero, full,
//     random, urandom, tty, a private devpts, and /dev/cgsem-nodev, a node
//     no driver serves, see NoDeviceMajor); /dev/console is a terminal whose
//     output the host appends to ConsolePath.
//   - /sys/fs/cgroup, mounted from inside the new cgroup namespace (a
//     cgroup2 mount made from the host's namespace would apply its options,
//     nsdelegate and the like, to the whole host): in ModeHybrid the host's
//     v1 controller hierarchies and name=systemd, re-mounted with their own
//     controller sets, and cgroup2 at unified; in ModeUnified cgroup2 alone.
//     In hybrid mode, wherever systemd would mount a controller the host
//     keeps on its cgroup2 hierarchy (net_cls,net_prio, perf_event, hugetlb
//     on this host) as a new v1 hierarchy, a read-only placeholder tmpfs
//     stands instead: that mount would take the controller away from the
//     host's cgroup2. systemd logs "Failed to create symlink
//     /sys/fs/cgroup/cpu: File exists" where the host mounts cpu and cpuacct
//     apart; that is harmless.
//   - systemd executed with CAP_SYS_TIME, CAP_SYS_MODULE, CAP_WAKE_ALARM and
//     CAP_SYSLOG dropped from the bounding set, $container set, and a
//     private network namespace holding only lo.
//
// Stop powers systemd off (SIGRTMIN+4), kills what is left once the grace
// ends, removes every group it made (killing, through a pidfd and after
// checking the process is still in the container's groups, anything still
// inside) and the state directory, and returns an error naming whatever
// it could not remove. Every mount lives in the container's mount
// namespace and dies with it; no host mount is touched. If the test
// process dies without Stop, the container is killed with it (parent
// death signal), but its groups stay behind under their cgsem-test-sd-
// names.
//
// # Reaching systemd from the host
//
// BusAddress is the container's system bus, reached through a descriptor
// of the container's root that the Instance holds (never through the
// container's pid, which could name another process once the container
// is gone); dbus.Connect(addr) (EXTERNAL authentication as root, then
// Hello) works from the host, and Instance.Connect does exactly that.
// systemd's private socket does not work from the host: systemd refuses a
// peer whose pid it cannot see in its pid namespace.
//
// PIDs passed to systemd (StartTransientUnit's PIDs, AttachProcessesToUnit)
// are resolved in the container's pid namespace: a host process is not
// visible there. Exec starts a command inside every namespace of the
// container, in the groups of its PID 1 (init.scope on the unified
// hierarchy), before the command's first instruction; Process.PID is its
// pid inside, for systemd, and Process.HostPID its pid on the host, as
// host-side cgroup.procs files list it.
//
// A unit's ControlGroup ("/system.slice/x.scope") is relative to the
// container's group: HostPath(hierarchy, cg) is the host directory, and
// RootDir()+"/sys/fs/cgroup/..." reaches the same files through the
// container's own mounts, whose layout /proc/<InitPID>/mountinfo
// describes.
//
// Start to ready (Start + WaitReady: the bus answers and SystemState is
// running; the two coincide, as the boot target requires dbus.service)
// measures 0.15-0.65 s on this host (2 CPUs, median 0.26 s), in both
// modes, and up to 1.3 s under -race with four containers booting at once;
// Stop takes 0.08-0.3 s. See BenchmarkStartToReady.
//
// # Use from the systemd driver's tests
//
// The driver takes a bus address (tests) instead of the host's system bus,
// and a way to find the unit's cgroup files: either a function from
// hierarchy to the directory systemd calls "/" (Instance.CgroupPath), or a
// cgroupfs root and mountinfo to read (RootDir()+"/sys/fs/cgroup" and
// /proc/<InitPID>/mountinfo). A conformance harness then looks like this:
//
//	func newContainer(t *testing.T, mode string) *sdns.Instance {
//		if err := sdns.Check(sdns.Options{Mode: mode}); err != nil {
//			t.Skip(err) // not root, no systemd, no dbus, no nsenter, or no such layout
//		}
//		ctx := t.Context()
//		in, err := sdns.Start(ctx, sdns.Options{Mode: mode, Logger: logger})
//		if err != nil {
//			t.Fatal(err)
//		}
//		t.Cleanup(func() {
//			if err := in.Stop(context.WithoutCancel(ctx)); err != nil {
//				t.Error(err) // names any group left behind
//			}
//		})
//		if err := in.WaitReady(ctx); err != nil {
//			t.Fatal(err) // includes the tail of the console log
//		}
//		return in
//	}
//
// One container can serve a whole suite: each subtest's driver gets a
// fresh root slice of its own (a "cgsem-test-<random>.slice"), which its
// cleanup stops, and the harness's Leaks lists the units and groups left
// below it. The spawner starts test processes with Exec; to have a process
// in a scope before its first instruction, start "sh -c 'read _; exec
// CMD'" with a pipe as Stdin, give Process.PID to the driver, then write a
// line. Enforcement follows the mode: in ModeHybrid systemd sets memory,
// tasks and CPU weight through the host's v1 controllers and device
// policies through v1 devices; in ModeUnified on this host cgroup2 offers
// no controller, so only the structure (slices, scopes, processes) and
// device policies (systemd attaches device programs to cgroup2 groups)
// take effect. The package's tests prove each of these.
//
// Several containers may run at once, in one process or many: each has
// its own group, namespaces and state directory.
package sdns
