// Package v1 is cgsem's cgroup v1 driver: one directory per hierarchy per
// group, on a legacy host (v1 only) or a hybrid one (v1 controllers with a
// cgroup2 mount beside, which this driver leaves alone).
//
// It registers as "v1" with priority 10. Its probe accepts a host whose
// mountinfo shows v1 hierarchies with controllers, unless systemd is PID 1
// (then the systemd driver owns the tree, and changes made behind its back
// would be undone); the reason it gives names the layout, the controllers
// and PID 1.
//
// # Hierarchies and the root
//
// New reads /proc/self/mountinfo and /proc/self/cgroup and uses every
// writable v1 hierarchy visible to the process: one per controller,
// co-mounts such as "cpu,cpuacct" as one hierarchy, and named hierarchies
// such as "name=systemd" (so a started process is placed consistently
// everywhere). Options.Root places the driver's root in each of them:
//
//	""           the top of each hierarchy as mounted
//	"self"       the calling process's own cgroup in each hierarchy
//	"self/a/b"   the group a/b below that (it must exist)
//	"/a/b"       the cgroup path /a/b in every hierarchy
//
// The setting "hierarchies" (a comma-separated list of controllers, a
// named hierarchy as "name=systemd") narrows that to the hierarchies
// holding them, e.g. "memory,pids,cpu,devices,freezer" for a runtime that
// leaves cpuset and blkio to someone else: a group then has directories
// only there, a process placed in it stays where it was in the other
// hierarchies, and the features of the left-out controllers are
// unsupported. A name no usable hierarchy holds is ErrInvalid.
//
// Own cgroups differ per hierarchy (a process may sit in /user.slice for
// memory and / for cpuset); "self" follows each. The root must exist in
// every hierarchy; nothing outside it is ever touched. Each hierarchy's
// root is held as an O_PATH descriptor, and every file is reached through
// it with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) (internal/cgroupfs),
// so one attribute write costs openat, write and close.
//
// Processes are listed, and children found, in one primary hierarchy: the
// first of freezer, pids, memory, cpu, devices, cpuset, blkio, cpuacct
// that is mounted.
//
// # Groups
//
// Create makes the group's directory, and every missing level above it,
// in every hierarchy; each new cpuset level is seeded with its parent's
// cpuset.cpus and cpuset.mems (a v1 cpuset group starts empty and takes
// no task until both are set). A failed Create removes what it made. Open
// needs the directory in every hierarchy. The root takes processes and
// reports stats and events; Apply, Resources, Plan, Freeze, Thaw, Kill and
// Delete on it are ErrInvalid.
//
// Cost is system calls (TestSyscallCounts holds them). Creating a group
// at the top of the root costs one mkdirat per hierarchy, a pread each of
// the root's cpuset.cpus and cpuset.mems (held open for the driver's
// life) and a write of each into the group, and openat2, write and close
// per setting; deleting it, one unlinkat per hierarchy: the raw floor of
// the same writes, but for the two preads. A group further down pays an
// openat2 and a close of its parent around each mkdirat and unlinkat (so
// that nothing mounted inside the tree can lead a change outside it), and
// seeds from its parent by openat2, read and close. The device list
// compiled last is kept, with the writes that set it on a new group, so
// groups made with one policy compile it once.
//
// # Resources
//
// Every field is written to a v1 file, converted with a named formula, or
// refused with ErrNotSupported before anything changes:
//
//	memory.max   memory.limit_in_bytes ("-1" for max)
//	memory.low   memory.soft_limit_in_bytes; a new group's soft limit, and
//	             so its memory.low, reads max
//	memory.swap  memory.memsw.limit_in_bytes = max + swap
//	             (semantic.SwapToMemsw); unsupported without swap accounting,
//	             and a swap limit without a memory limit (memsw could only
//	             read max) is refused with ErrNotSupported
//	memory.high, memory.min
//	             unsupported: v1 has no throttle limit and no hard
//	             protection. With Options.AllowApproximate they become
//	             approximate, mapped to memory.soft_limit_in_bytes, which
//	             they then share with memory.low (one of the three per
//	             request; each reads back the soft limit)
//	cpu.weight   cpu.shares (semantic.WeightToShares, exact both ways)
//	cpu.max      cpu.cfs_quota_us and cpu.cfs_period_us (semantic.CPUsToQuota)
//	cpu.cpus/mems cpuset.cpus, cpuset.mems
//	io.weight    blkio.bfq.weight, the same number on 1..1000 (above 1000
//	             it would clamp: refused unless approximations are allowed);
//	             blkio.weight (semantic.IOWeightToBlkio) on a cfq kernel
//	io.limits    blkio.throttle.{read,write}_{bps,iops}_device
//	pids.max     pids.max
//	devices      devices.deny and devices.allow (below)
//	hugetlb      hugetlb.<size>.limit_in_bytes where a v1 hugetlb hierarchy
//	             is mounted
//
// Writes are ordered where the kernel checks one value against another.
// Memory and memsw: the kernel keeps memory <= memsw at every moment, so
// memsw is written first when the old memory limit fits under the new
// memsw, memory first otherwise; raising and lowering both work. A
// request that changes only memory.max keeps the swap allowance (memsw
// moves with it), as memory.swap.max does on v2. CPU quota and period are
// ordered so their ratio never exceeds the larger of the old and new ones
// between the two writes (v1 checks a child's ratio against its parent's).
// A value equal to the current one is not written.
//
// Apply is all or nothing: it reads the old value of each file it will
// write, and if a write fails (or ctx ends between two) it writes the old
// values back in reverse order, which passes through the same
// intermediate states, then returns an error naming the feature
// ("cgsem/v1: set memory.max on a/b: write "1024" to
// /sys/fs/cgroup/memory/.../memory.limit_in_bytes: device or resource
// busy"). Plan returns the same writes, in order, without making them.
//
// # Devices
//
// v1 keeps a behaviour (default allow or deny) and a list of exceptions;
// in default deny an access is granted when one exception holds every
// requested bit, and devices.list shows the exceptions, while in default
// allow it shows only "a *:* rwm" whatever is denied. A rule list is
// compiled into the v1 state the kernel evaluates exactly as the
// reference evaluator semantic.Devices.Allowed does, for every device and
// every request the kernel makes (r, w, rw, m): default allow with no
// exceptions when the list grants everything, otherwise default deny with
// the fewest exceptions found. A list v1 cannot express is refused with
// ErrNotSupported saying which device class and why: a wildcard that must
// grant a bit some device under it is denied ("allow c *:* rw, deny c 1:5
// w"), including every allow-by-default list with a deny rule (default
// allow with deny exceptions is never built: it could not be read back,
// nor reached from default deny without a moment of allowing everything).
//
// A change from the old list to the new never widens access: the writes
// first remove access, each state within the one before, down to a state
// within both the old and the new list, and only then add, each state
// within the new list. Changing the default needs a write of "a", which
// the kernel refuses while the group has children. The tests check the
// invariant against the reference evaluator for random lists.
//
// # Processes
//
// AddProcess writes the pid to cgroup.procs, AddThread the tid to tasks,
// in every hierarchy; if a later hierarchy refuses, the task is moved
// back where it was in the others when that is below the root.
//
// Start places the command in the group before its first instruction
// without a trampoline: on v1 a child is born in the cgroups of the
// thread that forks it, so Start locks a fresh OS thread, writes it into
// the group's tasks file in every hierarchy, and calls cmd.Start there;
// the thread is then discarded (the runtime ends a thread whose goroutine
// exits locked) and Start returns once it is gone. exec.Cmd's behaviour
// (arguments, argv[0], environment, errors) is untouched. While the
// command starts, the thread counts in the group's pids.current (a group
// needs room for one task more than the child), a frozen group is refused
// with ErrBusy (the thread would freeze too), and nil standard streams are
// opened on /dev/null before the thread joins (so a deny-all device list
// does not stop that open).
//
// Freeze writes FROZEN to freezer.state and waits through FREEZING until
// the group reads FROZEN (if ctx ends first, a group that was thawed is
// thawed again); Thaw writes THAWED and waits (ErrBusy when an ancestor
// is frozen, naming it). Kill freezes the group so nothing forks away,
// SIGKILLs every task in it and below, thaws it and any descendant frozen
// on its own, and waits until the subtree is empty. Below a frozen
// ancestor Kill is ErrBusy at once, naming the ancestor ("ancestor a is
// frozen: its tasks cannot exit until it is thawed"), and signals
// nothing: a v1 task frozen by an ancestor does not die of SIGKILL until
// that ancestor thaws, and thawing it is not Kill's to do (cgroup2 ends a
// frozen task on SIGKILL, so v2 and the fake kill there). An empty
// subtree is no reason to refuse; an ancestor frozen while Kill waits
// ends the wait with the same ErrBusy, the tasks signalled. Delete with
// Kill refuses the same way, removing nothing. Delete refuses a group with
// children (ErrBusy) unless Recursive and one with processes unless Kill;
// the common case costs one rmdir per hierarchy, and only a refused rmdir
// is inspected: a populated group is ErrBusy at once, an empty one is
// retried with backoff (the kernel's transient EBUSY).
//
// # Stats and events
//
// Stats reads memory.usage_in_bytes (usage), memory.max_usage_in_bytes
// (peak), memory.stat's hierarchical totals (anon from total_rss, file
// from total_cache, swap), memory.oom_control (OOM kills), cpuacct.usage
// and cpuacct.usage_all (usage, user, system), cpu.stat (periods,
// throttling), pids.current and pids.max, and the recursive blkio
// throttle statistics. The OOM count and pressure are absent: v1 has
// neither. The files are held open after the first call (setting
// "stat-files": "hold", the default; "reopen" opens them every time), so
// a later call costs one pread per file; Delete, Close and the collection
// of the Group release them. The files are parsed in one pass into one
// allocation, the result and every figure it points to (IO devices, when
// there are any, take two more); a group's read buffer is reused.
//
// Events: OOM through an eventfd registered on memory.oom_control with
// cgroup.event_control; OOM kills from memory.oom_control's oom_kill
// counter; populated and empty from cgroup.procs of the group and its
// descendants, and frozen and thawed from freezer.state, polled every
// 50ms (v1 notifies neither). Each channel buffers 256 events and drops
// the oldest when its reader falls behind; it closes when ctx ends or the
// driver closes, and goes quiet when its group is deleted.
//
// # Errors, logging, faults
//
// Errors are *semantic.Error values naming the driver, the operation and
// the group, wrapping a kind and the cause (the errno, with the file
// name). Every write, mkdir and rmdir is logged at trace level on
// Options.Logger named "v1". The package's tests inject faults through
// the cgroupfs hook of the driver's own value; nothing is global.
//
// # Example
//
//	d, err := v1.New(semantic.Options{Root: "self"})
//	...
//	defer d.Close()
//	g, err := d.Create(ctx, semantic.MustPath("jobs/build"), &semantic.Resources{
//		Memory: &semantic.Memory{Max: &limit},
//		Pids:   &semantic.Pids{Max: &tasks},
//	})
//	...
//	cmd := exec.Command("make")
//	err = g.Start(ctx, cmd) // in the group from its first instruction
package v1

// Name is the driver's registered name.
const Name = "v1"
