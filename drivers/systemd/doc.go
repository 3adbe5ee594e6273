// Package systemd is the cgsem driver that manages groups as systemd
// units, over D-Bus (github.com/godbus/dbus/v5), so that systemd, which
// owns the cgroup tree on a systemd host, knows every group and keeps its
// settings: a `systemctl daemon-reload` rebuilds the units from their
// files and writes the same limits to the kernel again.
//
// It registers as "systemd" with priority 30, the highest of the built-in
// drivers: auto-selection picks it when systemd is PID 1 (/proc/1/comm,
// and /run/systemd/system as sd_booted checks) and its manager answers on
// the system bus.
//
// # Groups are slices; processes live in a scope per group
//
// A group is a transient slice, one per path level, named as systemd
// derives the cgroup tree from slice names: below the root slice "-.slice"
// the path libvirt/lxc/web1 is libvirt.slice, libvirt-lxc.slice and
// libvirt-lxc-web1.slice, in the cgroup
// /libvirt.slice/libvirt-lxc.slice/libvirt-lxc-web1.slice. Each segment is
// escaped as systemd-escape does (every byte outside [a-zA-Z0-9:_.] as
// \xNN, "-" included, and a leading "."), so "a-b" is a\x2db and never a
// level separator, and every valid segment comes back from its name. A
// segment whose escaped form would make the unit name longer than systemd
// takes (255 bytes) is named by the hash of it instead (\x5fh and 32 hex
// digits, a form escaping never writes), and read back from the slice's
// Description, which names the group's path; a path too long even so is
// refused with ErrNotSupported.
//
// Slices, not scopes, because a group must exist without processes (a
// scope ends with its last process), hold child groups, and carry limits
// that bind everything below it; intermediate levels of a path are
// ordinary slices with no settings, so a caller's namespace levels
// (app/driver/domain) cost nothing. A group's processes go into one scope
// in its slice, named after the slice: libvirt-lxc-web1.scope in
// libvirt-lxc-web1.slice (unit names are global, so a fixed name like
// "cgsem.scope" could exist once only; a scope never collides with a child
// slice, whose name has one more level). The first process starts the
// scope (StartTransientUnit with PIDs=), the next ones join it
// (AttachProcessesToUnit, which systemd allows only into a delegated unit:
// the scope has Delegate=yes). The scope goes when its last process
// exits, and comes back with the next one. Scopes have TasksMax=infinity
// (systemd gives scopes DefaultTasksMax= otherwise) and
// CollectMode=inactive-or-failed: every limit is the slice's. Slices are
// started with Memory/CPU/Tasks/IOAccounting=yes, so each has a group in
// every controller's hierarchy to read stats from, and with
// CollectMode=inactive-or-failed, so no failed unit keeps a name.
//
// Options.Root names the root slice: "" (or "/", "-.slice") for systemd's
// root slice, a slice unit ("machine.slice"), or a slice's cgroup path
// ("/machine.slice"). It must be active: the driver does not start it,
// since systemd would then start its parents too, outside the root.
// "self" is refused: a process's own cgroup is a scope or a service, and
// systemd places units only in slices. The root's own properties are not
// changed (Apply, Resources, Plan, Freeze, Thaw, Kill and Delete on the
// root are ErrInvalid) and it takes no processes.
//
// # Properties
//
// Apply sets the properties of a request with one SetUnitProperties call
// (runtime=false; for a transient unit systemd keeps the drop-in in its
// transient directory, where daemon-reload reads it and from where it goes
// with the unit). systemd checks every property before it sets any; if the
// call fails anyway, the driver sets the previous values back. Create
// passes them to StartTransientUnit with the slice. Read-back is the
// slice's properties (GetAll of org.freedesktop.systemd1.Slice), and Plan
// lists the properties Apply would set:
//
//	memory.max   MemoryMax (rounded down to the page size before it is sent)
//	memory.high  MemoryHigh          memory.low  MemoryLow
//	memory.min   MemoryMin           memory.swap MemorySwapMax
//	cpu.weight   CPUWeight
//	cpu.max      CPUQuotaPerSecUSec + CPUQuotaPeriodUSec
//	cpu.cpus     AllowedCPUs (byte-array bitmask)
//	cpu.mems     AllowedMemoryNodes (byte-array bitmask)
//	io.weight    IOWeight
//	io.limits    IOReadBandwidthMax, IOWriteBandwidthMax, IOReadIOPSMax,
//	             IOWriteIOPSMax, per device "/dev/block/MAJOR:MINOR"
//	             (systemd parses the numbers without a node there)
//	pids.max     TasksMax
//	devices      DevicePolicy=strict (or auto) + DeviceAllow
//
// cpu.max is approximate: systemd keeps CPUQuota= in whole percent of a
// CPU in its unit files (CPUQuotaPerSecUSec in 10ms steps), and the kernel
// gets quota = CPUQuotaPerSecUSec × period / 1s. A cap those steps keep
// (1.5 CPUs, 0.25 per 50ms) is applied as is; another (a third of a CPU)
// only with Options.AllowApproximate, rounded to the nearest step, and is
// refused with ErrNotSupported otherwise.
//
// cpu.cpus and cpu.mems must name CPUs and nodes the host has (the
// cgroup2 root's cpuset.cpus.effective and cpuset.mems.effective), or they
// are ErrInvalid: systemd takes any AllowedCPUs= and only logs the
// kernel's refusal. A slice with no set of its own reads back what it gets
// from above (the nearest cpuset.*.effective of its group or an
// ancestor's), as with the v2 driver; not the unit's EffectiveCPUs, which
// stays empty until systemd enables cpuset for the slice.
//
// Devices are compiled into an allow list: a node c 1:3 is
// "/dev/char/1:3", every character device "char-*", a whole major
// "char-NAME" when /proc/devices names that major once and no other
// major that name; a deny rule is taken out of the allow entries it
// covers whole. A list that needs a deny entry (an exception carved out
// of a wider allow, or a default allow with exceptions), a minor of every
// major, or a major /proc/devices does not name uniquely is refused with
// ErrNotSupported saying which rule and why: systemd's DeviceAllow= has no
// deny entries, and the driver never widens access to say a list.
// DevicePolicy is strict (closed would add /dev/null and friends).
//
// What systemd does with a property depends on the cgroup layout it runs
// on, and the capabilities say so:
//
//   - unified (cgroup2): every feature above whose controller the root
//     group offers; devices are BPF programs and need none; freeze through
//     FreezeUnit/ThawUnit (systemd 246, kernel cgroup.freeze).
//   - hybrid and legacy (cgroup v1 controllers): systemd writes only
//     MemoryMax (memory.limit_in_bytes), CPUWeight (cpu.shares = weight ×
//     1024 / 100 truncated), the CPU quota (cfs files), TasksMax, the
//     device list, IOWeight (blkio weight, approximate) and the bandwidth
//     IO limits, and ignores MemoryHigh/Low/Min/SwapMax, AllowedCPUs/
//     MemoryNodes and the IOPS limits, so those are unsupported (IO limits
//     as a whole, not half of them), as is freezing. On v1 the kernel
//     refuses to reset the device list of a group with child groups in the
//     devices hierarchy, and systemd would then keep the old entries
//     beside the new ones, so a change of the list of such a slice is
//     refused (set it at Create); a scope without device settings of its
//     own is not such a child.
//   - every layout: no huge page limits (systemd has no property) and no
//     threads (it moves whole processes).
//
// The driver reads the manager's Version once when it opens and refuses
// the properties a release lacks (MemoryMin needs 240, CPUQuotaPeriodUSec
// 242, AllowedCPUs 244, FreezeUnit 246; systemd before 238, which has no
// AttachProcessesToUnit, is refused).
//
// # Jobs and contexts
//
// StartTransientUnit and StopUnit queue jobs; the driver subscribes to the
// manager's signals when it connects, and every such call waits for its
// job's JobRemoved with the caller's ctx, never on a timer (a job that
// ends otherwise than "done" is an error naming its result). A name still
// loaded by a unit on its way out (inactive or failed, not yet collected)
// is waited out through UnitRemoved (ResetFailedUnit first for a failed
// one) before a unit of that name is started again. Every call checks its
// ctx first; a Create whose ctx ends midway stops what it started.
// Such an undo (Create's stops, Apply's restore) is not cut short by the
// ctx that ended, but it is by a systemd that does not answer within 30
// seconds: the call returns its error then, and the undo's own failure
// is logged at warn level.
//
// # Operations
//
//   - Start starts the command traced (SysProcAttr.Ptrace): the kernel
//     stops it right after its exec, before its first instruction, the
//     scope takes its pid, and then it is let go (PTRACE_DETACH). The
//     caller may not ask for Ptrace itself.
//   - Processes reads the scope's cgroup.procs (a scope systemd removes
//     during the read, as it does soon after its last process died, has
//     none: kernfs fails that read with ENODEV); Stats the slice's group
//     files (cgroup2, or the v1 controllers' with cgroup2's cpu.stat and
//     pressure files where cgroup2 is mounted). v1 counts an OOM kill only
//     in the victim's own group, the scope, which systemd removes when the
//     scope ends: on v1 the OOM-kill count is absent.
//   - Events watch the slice's cgroup.events (populated, frozen) and
//     memory.events with inotify on cgroup2; on v1 an eventfd on
//     memory.oom_control gives OOM events (no OOM-kill events, as above).
//   - Kill sends SIGKILL through KillUnit to every scope of the subtree and
//     waits until the slice's group is empty (cgroup.events).
//   - Delete refuses a slice with child slices (ErrBusy) unless Recursive,
//     and one with processes below it unless Kill, before it changes
//     anything; then it stops the slices deepest first (ResetFailedUnit
//     for one whose stop failed).
//
// # Settings and namespaces
//
// Options.Settings takes one key, "bus": "system" (the default: the
// system bus, DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket),
// "user" (the calling user's bus, where the user manager is, for rootless
// use with delegation), or a D-Bus address such as
// "unix:path=/proc/1234/root/run/dbus/system_bus_socket". Any other key
// is ErrInvalid.
//
// A systemd reached through an address may live in other namespaces (a
// container's systemd seen from its host). The driver finds out from the
// bus socket's peer, the bus daemon, which shares systemd's namespaces:
// when its mount namespace differs, systemd's /sys/fs/cgroup, /dev and
// /proc/devices are read through /proc/PEER/root; when its pid namespace
// differs, pids are translated into it (the process must live there or in
// a namespace below), and Start forks the command into it (setns on the
// forking thread), so systemd can be given its pid. systemd refuses
// AttachProcessesToUnit to a caller it cannot see in its pid namespace, so
// from outside a group takes its first process but not a second
// (ErrNotSupported).
//
// # Errors
//
// Errors are *semantic.Error values: D-Bus errors are classified
// (NoSuchUnit and an unknown pid are ErrNotExist, UnitExists ErrExist,
// InvalidArgs ErrInvalid, AccessDenied ErrPermission), and errors.Is sees
// the D-Bus error and any errno beneath.
//
//	d, err := registry.Open("systemd", semantic.Options{Root: "machine.slice"})
//	...
//	g, err := d.Create(ctx, semantic.MustPath("libvirt/lxc/web1"), &semantic.Resources{
//		Memory: &semantic.Memory{Max: &limit},
//	})
//	// machine-libvirt-lxc-web1.slice, MemoryMax=limit
//	err = g.Start(ctx, exec.Command("/usr/sbin/init"))
//	// in machine-libvirt-lxc-web1.scope before it runs
//
// Every D-Bus call is logged at trace level on the logger named "systemd".
package systemd
