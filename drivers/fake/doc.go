// Package fake is cgsem's in-memory driver: the executable specification
// of the semantic API. Every real driver is checked against the same
// conformance suite the fake passes, and a model-based test runs the same
// operations on the fake and on a real driver and compares the results,
// so the fake does what the kernel does wherever the semantic API can see
// the difference.
//
// The fake is registered as "fake" with a nil probe: it is never
// auto-selected and is used only when forced (registry.Open("fake", ...),
// CGSEM_DRIVER=fake, cgsem --driver fake). State lives only in the
// Driver value; Options.Root is ignored.
//
// # What it simulates
//
// Groups form a tree below the root. Create makes every missing level
// (intermediate levels carry no settings), fails with ErrExist if the
// group exists and leaves nothing behind when it fails. Open of a missing
// group, and any call on a group deleted meanwhile, is ErrNotExist. A
// Group is a handle on a path, as a cgroupfs path is: a group created
// again at the same path is the one it addresses. The root can be opened
// to list processes, stats and events, and take processes, but Apply,
// Resources, Plan, Freeze, Thaw, Kill and Delete on it are ErrInvalid.
//
// Apply validates the request, refuses unsupported fields with
// ErrNotSupported before changing anything, then writes one field at a
// time. If a write fails, every field already written is written back and
// the error names the failing field ("cgsem/fake: set memory.max on
// libvirt/lxc/web1: device or resource busy"). Read-back returns every
// supported field as semantic.Resources.Normalize leaves it (memory
// limits rounded down to Options.PageSize, CPU caps to whole microseconds
// of quota). Fields never set read back as the kernel's defaults: memory
// max, high and swap "max", low and min 0; CPU weight 100, no CPU cap with
// a 100ms period, the host's CPUs and memory nodes; IO weight 100 and no
// IO limits; no pids limit; devices allowed by default with no rules; no
// huge page limits. Like the kernel, the fake refuses CPUs and memory
// nodes the host does not have (Options.HostCPUs and HostMems, default
// {0}) with ErrInvalid wrapping EINVAL, when that field is written.
//
// Processes are real. AddProcess records a live process (ErrNotExist for
// none or an exited one, zombies included; a thread id stands for its
// process, as in cgroup.procs); AddThread records one thread (the fake
// does not check cgroup v2's threaded mode). A task is in exactly one
// group of the driver: adding it again moves it, and adding a process
// takes along its threads recorded elsewhere. Each task is held by a
// pidfd, watched from the runtime's poller: when it exits (a zombie has
// exited) it leaves its group. Start runs cmd.Start and records the child
// right after it started; the fake cannot, as a real driver does, place
// it before its first instruction. Processes lists the pids of the
// group itself.
//
// Freeze and Thaw change a state and fire EventFrozen and EventThawed; no
// process is stopped. Kill sends SIGKILL through the pidfds to every task
// of the group and its descendants, again to any that joins, and waits
// until they have exited or ctx ends; it leaves the subtree thawed, as
// v1 and v2 do, with EventThawed for each group that was frozen (v1 and
// v2, which freeze a group to kill it, also report that freeze and its
// thaw). Delete refuses a group with children (ErrBusy) unless
// DeleteOptions.Recursive, and one with
// processes in it or below unless DeleteOptions.Kill, checking before it
// changes anything.
//
// Stats count tasks (a process and each thread recorded on its own count
// one each) in the group and its descendants, sum the resident memory
// (/proc/PID/statm) and user and system CPU time (/proc/PID/stat) of
// their processes as they are now, and report the OOM and OOM-kill
// counters InjectOOM raises. Every other figure (peak, anon, file, swap,
// throttling, IO, pressure) is nil: the fake cannot know it.
//
// Events are per group, as cgroup.events and memory.events are:
// EventPopulated and EventEmpty when the group and its descendants gain
// their first or lose their last task, EventFrozen and EventThawed when
// the state changes, EventOOM and EventOOMKill with their counters from
// InjectOOM. Each Events channel buffers 256 events; a reader that falls
// further behind loses the oldest, so the driver never blocks. The
// channel is closed when its ctx ends or the driver is closed; it stays
// open, quiet, after its group is deleted.
//
// # What it does not simulate
//
// Limits are stored, never enforced: no process is throttled, frozen,
// denied a device or OOM-killed. Settings are not checked against the
// parent's (a real v1 cpuset child must be a subset of its parent), and
// cgroup v2's rule that a group with enabled controllers holds no
// processes of its own is not applied. There is no hierarchy above the
// root and no pressure information (the stats.pressure feature is
// unsupported).
//
// # Capabilities and faults
//
// Every feature is exact except stats.pressure, threads on kernels
// before Linux 6.9 (no PIDFD_THREAD), and those listed in
// Options.Unsupported (or the "unsupported" setting), which are
// unsupported with the reason "declared unsupported": requests touching
// them fail with ErrNotSupported and change nothing, read-back omits
// them, and unsupported event kinds are never delivered.
//
// InjectFault(n, err) makes the nth backend change from then on fail with
// err, counted as a real driver would make them: one per level Create
// makes, one per field Apply or Create writes, one per group Delete
// removes. Writes that undo a failed Apply or Create are neither counted
// nor failed. InjectOOM raises the OOM counters and events of a group.
//
// # Settings
//
// Through registry.Open, Options.Settings takes "unsupported" (a comma
// list of features) and "pagesize" (bytes, e.g. "64KiB"); any other key
// is ErrInvalid.
//
// # Errors
//
// Every error is an *semantic.Error naming the driver, the operation and
// the group, and wraps one kind: ErrInvalid (a refused value, an operation
// the root does not take, a closed driver), ErrNotExist (no such group, no
// such or an exited process), ErrExist, ErrBusy (Delete of a group with
// children or processes), ErrNotSupported (a declared-unsupported
// feature), ErrPermission (a process the caller may not signal), or the
// kind of an injected errno, which stays in the chain for errors.Is.
//
// # Example
//
// A test that needs a driver but no kernel:
//
//	d := fake.New(fake.Options{PageSize: 4096})
//	defer d.Close()
//	g, err := d.Create(ctx, semantic.MustPath("libvirt/lxc/web1"), &semantic.Resources{
//		Memory: &semantic.Memory{Max: &memMax},
//	})
//	...
//	err = g.Start(ctx, exec.Command("sleep", "60"))
//
// The runnable examples below show the first user story in full, fault
// injection and OOM events.
//
// Logging goes to Options.Logger named "fake"; every backend change,
// attach, exit and event is logged at trace level. The fake needs Linux
// 5.3 or later (pidfd_open).
package fake
