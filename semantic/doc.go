// Package semantic is the one interface of cgsem: the types that name a
// control group and say what limits it has, and the Driver and Group
// interfaces that every backend (cgroup v1, cgroup v2, systemd, the
// in-memory fake) implements with the same meaning.
//
// A program says what it means, "put this process under libvirt/lxc/web1,
// deny every device but /dev/null, cap memory at 512 MiB", and a driver
// turns that into controller files or D-Bus properties. Nothing in this
// package touches the kernel except StatDevice (and the parsers that take a
// device node path); everything else is pure and safe for concurrent use.
// Drivers come from package registry; the conformance package proves that
// they agree with this one.
//
// # Paths
//
// A Path names a group by its segments below the driver's root, e.g.
// libvirt/lxc/web1; the zero Path (Root) is the root itself. ParsePath,
// NewPath and Path.Join validate every segment, so a Path value is always
// valid. A segment is refused when it is empty, "." or "..", contains "/",
// NUL or another control character, is not UTF-8, has leading or trailing
// white space, is longer than MaxSegmentLen (255) bytes, is a v1 attribute
// name (tasks, notify_on_release, release_agent) or begins with a
// controller prefix (cgroup., memory., cpu., cpuacct., cpuset., io.,
// blkio., pids., devices., freezer., hugetlb., rdma., misc., net_cls.,
// net_prio., perf_event.), because such a directory could be mistaken for
// an attribute file of its parent. A path deeper than MaxDepth (32) is
// refused. Every refusal wraps ErrInvalid and says which segment and why:
//
//	cgsem: parse path on "app/../x": segment 2: ".." is not allowed
//
// Intermediate levels of a path are created as needed and carry no
// settings of their own.
//
// # Resources
//
// Resources is a backend-neutral set of limits: memory, CPU, IO, pids,
// devices and huge pages. A nil section, and a nil field inside a section,
// means "not managed: leave as it is", so Group.Apply changes exactly the
// fields that are set, and Merge computes the state a group reaches after
// an Apply. Resources.Validate checks ranges without consulting the host;
// Resources.Fields lists the features a request touches, which is what
// Capabilities.Check and the drivers use to refuse a request before
// changing anything.
//
// # Units
//
// Values are in real units, with parsers for what users type:
//
//   - Bytes (memory limits, huge pages): ParseBytes reads "4096", "512MiB",
//     "512M", "1.5G" and "max"; every suffix is binary (M = MiB = 2^20) and
//     "MB" style suffixes are refused as ambiguous. Bytes.String renders a
//     value so that ParseBytes reads it back; Unlimited is "max". In JSON a
//     Bytes is a number or the string "max".
//   - Count (pids): a whole number or "max"; see ParseCount.
//   - CPU bandwidth: CPUMax caps a group at a number of CPUs (1.5) per
//     period (default 100ms); ParseCPUs reads "1.5" or "max".
//   - CPU and memory-node sets: CPUSet, sorted and unique, in the kernel's
//     list format "0-3,7"; see ParseCPUSet and CPUSet.String.
//   - Weights (CPU and IO): 1..10000 with 100 the default, systemd's and
//     cgroup v2's scale.
//   - IO throttles: IOLimit per block device, read from
//     "8:0:rbps=10M,wiops=100" or "/dev/sda:wbps=1G" by ParseIOLimit; 0 is
//     no limit.
//   - Huge pages: HugeTLBLimit per page size, "2MiB=1GiB" for ParseHugeTLB.
//
// The kernel stores some values in coarser units than users give them.
// Normalize rounds a request to what the kernel keeps and reads back:
// memory limits down to the page size, huge page limits down to their page
// size, CPU caps to whole microseconds of quota with the period made
// explicit, sets and per-device lists sorted. Every driver's
// Group.Resources returns the Normalize of what was applied, the fake
// included.
//
// # Conversions
//
// Where a backend has another scale, the conversion is a pure function
// here, named by a Conv* constant that Capabilities quote, and pinned by
// exact tests: WeightToShares and SharesToWeight (CPU weight and v1
// cpu.shares, 100 = 1024; weight -> shares -> weight is the identity for
// every weight), IOWeightToBlkio and BlkioToIOWeight (exact for weights
// 2..200, clamped and reported outside), SwapToMemsw and MemswToSwap (v2
// swap "in addition to memory" and v1 memory+swap), CPUsToQuota and
// QuotaToCPUs.
//
// # Devices
//
// Devices is a default policy (DenyByDefault or AllowByDefault) and an
// ordered list of DeviceRule values. A rule allows or denies some of read,
// write and mknod on the devices of a type (char, block or any) whose major
// and minor match (each may be Wildcard). The list is evaluated per access
// bit: for each of r, w and m, the last rule that matches the device and
// names that bit decides, and a bit no rule names follows the default.
// Devices.Allowed is the reference evaluator; every driver enforces exactly
// what it computes, and none ever widens access, even for a moment, while
// it changes the list. ParseDeviceRule reads "c 1:3 rwm", "b *:* r", "a",
// "/dev/null" and "/dev/null:rw"; a node path is stat'ed when parsed.
//
// # Capabilities
//
// A driver reports a Capability per Feature: Exact (stored and read back
// as given, after Normalize), Approximate (converted with the named,
// lossy formula; applied only when Options.AllowApproximate is set) or
// Unsupported. A request touching an unsupported feature fails with
// ErrNotSupported, names the field and changes nothing; a lossy conversion
// is never applied silently.
//
// # Stats and events
//
// Stats is one struct across drivers; a figure the driver cannot provide is
// nil, never 0. Events (EventOOM, EventOOMKill, EventPopulated, EventEmpty,
// EventFrozen, EventThawed) arrive on the channel Group.Events returns.
//
// # Errors
//
// Every error a driver returns is an *Error carrying the driver, the
// operation, the group and the cause, and reading
//
//	cgsem/v2: set memory.max on libvirt/lxc/web1: device or resource busy
//
// Its Kind is one of ErrNotExist, ErrExist, ErrInvalid, ErrBusy,
// ErrPermission and ErrNotSupported; errors.Is matches both the kind and
// anything in the cause chain (a syscall.Errno, context.Canceled). The
// kinds also match the standard library's equivalents: ErrNotExist is
// fs.ErrNotExist, ErrExist fs.ErrExist, ErrInvalid fs.ErrInvalid,
// ErrPermission fs.ErrPermission and ErrNotSupported
// errors.ErrUnsupported. Wrap and Classify turn a raw cause such as an
// errno into the right kind. Every parser and validator error wraps
// ErrInvalid.
package semantic
