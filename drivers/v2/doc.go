// Package v2 is cgsem's cgroup v2 driver: groups are directories of the
// unified hierarchy, limits are its controllers' attribute files, device
// access lists are eBPF programs (package devfilter), and freeze, kill,
// start-inside and events use what cgroup v2 has for them (cgroup.freeze,
// cgroup.kill, clone3's CLONE_INTO_CGROUP, cgroup.events watched with
// inotify).
//
// It registers as "v2", priority 20, and is auto-selected when
// /sys/fs/cgroup is cgroup2 and systemd is not PID 1 (where systemd is,
// it owns the hierarchy, and the systemd driver is picked). On a hybrid
// host it is opened by name, on the cgroup2 mount at
// /sys/fs/cgroup/unified.
//
// # Root
//
// semantic.Options.Root is "" (the top of the cgroup2 mount), "self" (the
// caller's own cgroup, from the "0::" line of /proc/self/cgroup) or a
// cgroup path as /proc/PID/cgroup names it ("/machine.slice/x"); a path
// with "." or ".." is refused. The mount is /sys/fs/cgroup when that is
// cgroup2, else /sys/fs/cgroup/unified, else the first cgroup2 mount of
// /proc/self/mountinfo; the setting "mount" names one. The root must
// exist. The driver writes nothing above it: the only file of the root it
// writes is its cgroup.subtree_control.
//
// # Controllers
//
// A controller can serve a group only if the root has it in
// cgroup.controllers, that is, if the root's parent enabled it: a feature
// whose controller the root lacks is unsupported, and Capabilities says
// so and why ("the memory controller is not available at the root ...").
// On a hybrid host's unified mount no controller is there (they are bound
// to v1), so memory, CPU, IO, pids, cpuset and huge page limits are
// unsupported, and devices, freeze, kill, start-inside and events work.
// Files that depend on the kernel's configuration are probed too:
// memory.swap.max (swap accounting), cpu.max (CFS bandwidth), io.weight
// (blk-iocost), io.max, cgroup.freeze (Linux 5.2) and cgroup.kill (5.14).
//
// Controllers are enabled top-down, from the root's cgroup.subtree_control
// to the group's parent's, only where a request needs them and only
// where they are missing: a group without resources enables nothing. They
// stay enabled afterwards, also when an Apply fails: disabling one would
// erase its settings in every sibling, which may be another caller's.
// Enabling a controller at a level needs that level to hold no processes
// of its own; where it does (typically a "self" root holding the caller),
// the error says so, with ErrBusy.
//
// # The leaf rule
//
// cgroup v2 lets a group that hands controllers down to children hold no
// processes of its own. The driver keeps that rule for every group it
// manages, whatever is enabled, so that a program behaves the same on
// every host: AddProcess and Start into a group that has child groups
// fail with ErrBusy ("put the process in a child"), and so does Create
// below a group that holds processes. The driver's root is exempt (it may
// hold the caller itself), as is a threaded subtree. The driver never
// moves processes on its own to make room. A group whose last child was
// deleted still hands down the controllers enabled for it, which the
// kernel lets hold no process: AddProcess and Start disable them first
// (nothing below uses them). The root's controllers are the caller's, as
// are its processes: once a group below needs a controller, the root
// takes no process, and a root holding processes gets no controller
// enabled (ErrBusy from the kernel).
//
// # Resources
//
// Every field maps to one file, written as the kernel takes it:
//
//	Memory.Max, High, Low, Min, Swap  memory.max, .high, .low, .min, memory.swap.max ("max" or bytes)
//	CPU.Weight                        cpu.weight (the same 1..10000 scale)
//	CPU.Max                           cpu.max "QUOTA PERIOD" in µs (semantic.CPUsToQuota)
//	CPU.Cpus, Mems                    cpuset.cpus, cpuset.mems
//	IO.Weight                         io.weight "default N"
//	IO.Limits                         io.max, one line per device, every key written (0 is "max")
//	Pids.Max                          pids.max
//	HugeTLB                           hugetlb.<2MB|1GB|...>.max
//	Devices                           a BPF_PROG_TYPE_CGROUP_DEVICE program
//
// Every feature is exact. Apply writes the fields in that order, after
// the subtree_control writes and before the device program, reading each
// file first; when a change fails, the files written are written back,
// newest first, and the error names the field ("cgsem/v2: set memory.max
// on web1: ..."). Read-back reads the files: memory limits come back
// rounded to the page and CPU caps to whole microseconds, as Normalize
// says; a field whose controller is not enabled for the group reads as the
// kernel's default (max, 0, weight 100, no cap), and cpus and mems without
// a set of their own as the effective set the group gets. Huge page
// limits list every size of the host, "max" included.
//
// Plan returns exactly the changes Apply makes, in order, targets
// relative to the group: "write ../cgroup.subtree_control +memory",
// "write memory.max 268435456", "attach device program deny; allow c 1:3
// rwm".
//
// # Devices
//
// A device list compiles to one program (devfilter.Compile); programs of
// identical lists are loaded once per driver and shared (devfilter.Cache),
// and the programs of the 8 lists set last stay loaded after their last
// group is gone, so that groups made and removed with the same list (a
// container runtime's default) skip the kernel's verifier, most of the
// cost of such a group. Closing the driver releases them.
// A change attaches the new program before it detaches the old one, so
// access is never wider than the old or the new list, even for a moment
// (the kernel grants what every attached program allows). A list that
// allows everything detaches the driver's program instead. Programs the
// driver did not attach (another manager's) are never detached, and keep
// applying beside it.
//
// Read-back returns the list the driver's program enforces, after
// checking with BPF_PROG_QUERY that it is still attached (if someone
// detached it, read-back fails with ErrNotExist, unless another cgsem
// process replaced it, recording its own, or lifted it). So that a later
// process (the cgsem command run again) reads the list back too, it is
// recorded with the program's id in the directory's trusted.cgsem.devices
// extended attribute; a recorded list is read back only while its program
// is attached and runs that list's instructions.
//
// Such a process can also change the list: before a change to a group
// whose program is not its own, the driver adopts the recorded program
// (devfilter.Filter.Adopt: it opens it by id, and checks it is a device
// program, runs the recorded list's instructions and is attached to that
// group), then replaces or removes it as its own, new program first.
// Nothing is adopted from a record that does not name a program attached
// to the group. Where adoption is impossible the change is refused with
// ErrBusy, saying why, rather than narrowed silently to the intersection
// of the old list and the new: when the recorded program fails those
// checks, or is no longer attached while programs nobody recorded are.
// Another manager's programs (no record) are left alone, as above.
//
// # Threaded groups
//
// The setting threaded=true makes every group the driver creates threaded
// (cgroup.type), the root becoming the subtree's threaded domain. Then
// AddThread moves single threads (cgroup.threads), Processes lists the
// processes of a group's threads, the leaf rule does not apply, and only
// the threaded controllers (cpu, cpuset, pids) serve: memory, IO and huge
// page limits and OOM events are unsupported. A thread whose process is
// outside the driver's subtree is refused with ErrInvalid. Without the
// setting, threads are unsupported.
//
// # Operations
//
// Start starts a command with clone3(CLONE_INTO_CGROUP) through
// exec.Cmd.SysProcAttr.UseCgroupFD, so the child is in the group before
// its first instruction. Freeze and Thaw write cgroup.freeze and wait,
// through inotify on cgroup.events, for "frozen 1" or "frozen 0" (or ctx;
// a Freeze cut short by ctx is undone). Kill writes cgroup.kill and waits
// for "populated 0", writing it again every 200ms for processes moved in
// meanwhile, then thaws the group and every descendant frozen on its own,
// as v1 and the fake leave them: a killed group is empty and thawed. Delete tries one rmdir, which the kernel refuses for a group
// with children or processes; only then does it look why, refusing
// children without Recursive and processes without Kill (ErrBusy) before
// it changes anything, then removes the directories deepest first,
// retrying the kernel's transient EBUSY.
//
// Events come from cgroup.events and memory.events, watched with inotify:
// EventPopulated and EventEmpty, EventFrozen and EventThawed, EventOOM and
// EventOOMKill with the kernel's counts; the channel closes when its ctx
// ends or the driver is closed. Stats read memory.current, memory.peak,
// memory.stat, memory.swap.current, memory.events, cpu.stat, io.stat,
// pids.current, pids.max and the pressure files through descriptors held
// between calls; a figure the group's controllers do not provide is nil.
//
// # Errors and logging
//
// Errors are *semantic.Error values: ErrInvalid (a refused value or name,
// an operation the root does not take, an unknown setting), ErrNotExist,
// ErrExist, ErrBusy (children, processes, the leaf rule, a recorded
// device program that cannot be adopted), ErrPermission, ErrNotSupported (naming
// every unsupported field of a request), or the kind of the kernel's errno,
// which stays in the chain for errors.Is. Logs go to Options.Logger named
// "v2"; every write, mkdir, rmdir and program attach is logged at trace
// level.
//
// # Testing
//
// New takes options beyond semantic.Options: WithFaults installs a hook
// that sees, and may fail, every change the driver makes, which is how
// the conformance suite checks that Apply and Create are all or nothing.
//
//	d, err := v2.New(semantic.Options{Root: "self"})
//	...
//	g, err := d.Create(ctx, semantic.MustPath("web1"), &semantic.Resources{
//		Memory:  &semantic.Memory{Max: &max},
//		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: rules},
//	})
//	...
//	err = g.Start(ctx, exec.Command("/usr/bin/server"))
package v2
