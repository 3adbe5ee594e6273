// Package devfilter enforces a semantic.Devices list on a cgroup v2 group
// with a BPF_PROG_TYPE_CGROUP_DEVICE program. It is the v2 driver's device
// controller, built on golang.org/x/sys/unix alone.
//
// It has three layers: Compile, a pure function from rules to
// instructions; a thin loader (Load, OpenProgram, Attach, Detach, Query,
// Replace) over the bpf(2) system call; and Cache and Filter, which the
// driver holds to share loaded programs and to keep, per group, the
// program it attached (or adopted) and the list that program enforces.
//
// # Semantics
//
// The program grants exactly what semantic.Devices.Allowed grants: per
// access bit (read, write, mknod), the last rule that matches the device
// and names the bit decides, else the default. A request is allowed when
// every requested bit is granted. Access bits the kernel might add later
// can be named by no rule, so they follow the default like any unnamed bit.
//
// # Encoding
//
// The kernel calls the program with struct bpf_cgroup_dev_ctx:
//
//	u32 access_type   access<<16 | type   access: MKNOD 1, READ 2, WRITE 4
//	                                      type:   BLOCK 1, CHAR 2
//	u32 major
//	u32 minor
//
// and allows the access when it returns 1. The program keeps the granted
// mask in R0, starting from the default (all bits for allow, none for
// deny); each rule is a block of tests that skip it when type, major or
// minor differ, followed by "R0 |= access" (allow) or "R0 &= ^access"
// (deny); at the end it returns 1 iff requested &^ granted == 0:
//
//	r2 = *(u32 *)(r1 + 0)        access_type
//	r3 = r2; w3 &= 0xffff        type
//	r2 >>= 16                    requested access
//	r0 = default                 -1 (allow) or 0 (deny)
//	if r3 != 2 goto +5           rule "allow c 1:3 rwm"
//	r4 = *(u32 *)(r1 + 4)
//	if r4 != 1 goto +3
//	r5 = *(u32 *)(r1 + 8)
//	if r5 != 3 goto +1           (on a match, falls through to the op)
//	r0 |= 7
//	...
//	r0 ^= -1; r0 &= r2
//	if r0 == 0 goto +2; r0 = 0; exit; r0 = 1; exit
//
// insn.go documents the eleven opcodes used and their byte encoding. The
// major and minor are loaded again for each test so that the verifier's
// work stays linear in the rules (see emit); about 3.5 instructions are
// verified per instruction emitted. The verifier's limit of 8,192 pending
// branches caps a list at about 4,000 rules that name both numbers; a
// longer list fails to load with a *LoadError that says so.
//
// Before emitting, Compile drops what cannot change a decision: bits a
// later rule covering the same devices overrides, "a *:*" rules (folded
// into the starting mask), and bits that set what the mask already holds.
// Runs of rules on the same devices share one block. So lists that differ
// only in such rules compile to the same bytes, and share a program.
//
// # Replacement without a window
//
// Programs are attached with BPF_F_ALLOW_MULTI. The kernel runs every
// program attached to a group and to its ancestors, and an access needs
// all of them to allow it. Replace (and Filter.Set) attaches the new
// program before it detaches the old one, so during the swap an access
// needs both the old and the new list to allow it: it is never wider than
// either. If the old program cannot be detached, the new one is detached
// again and the group is as it was. A Filter detaches only the program it
// attached itself, named by the descriptor it loaded, so programs attached
// by others (systemd, another process, another Filter) are never touched,
// unless it adopted one.
//
// # Adoption
//
// A program outlives the process that attached it, and a later process
// has no descriptor of it, only its id (BPF_PROG_QUERY lists ids). So that
// such a process can still replace a list without a window, Filter.Adopt
// takes over a program by id, given the list it was recorded as enforcing:
// it opens the program (BPF_PROG_GET_FD_BY_ID, which needs CAP_SYS_ADMIN),
// and, holding that descriptor so the id cannot come to name another
// program, checks that it is a device program (BPF_OBJ_GET_INFO_BY_FD),
// that its tag (a hash of its instructions) is that of the list's
// compiled program, and that it is attached to the Filter's cgroup. Only
// then does the Filter treat it as its own: Set attaches the new program
// before detaching the adopted one, Remove detaches it. An adopted program
// is not in the cache (it is not the cache's load of its list); the Filter
// closes its descriptor when it lets it go. OpenProgram is the first step
// on its own.
//
// # The cache
//
// Verifying a program costs about 260 us; attaching a loaded one 10 us.
// A Cache keys loaded programs by their instruction bytes, loads each
// once, counts references (one per Filter using it), and closes the
// descriptor with the last Release. The kernel keeps an attached program
// alive on its own, and frees it when it is detached or its group is
// removed. A Cache is a value the driver owns; it is safe for concurrent
// use.
//
// # Errors and limits
//
// Compile refuses an invalid list with an error wrapping
// semantic.ErrInvalid. A program the kernel refuses comes back as a
// *LoadError with the verifier's log; it matches semantic.ErrNotSupported.
// EPERM on load means the process lacks CAP_BPF (or CAP_SYS_ADMIN);
// devfilter never raises RLIMIT_MEMLOCK, which kernels since 5.11 no longer
// charge BPF memory to. Filter methods return *semantic.Error values naming
// the group. Every descriptor opened is closed: by Loaded.Close, by the
// last Cache.Release, by Cache.Close, or, for an adopted program, by the
// Filter that lets it go.
//
// # Example
//
//	cache := devfilter.NewCache(logger)
//	defer cache.Close()
//	f := cache.NewFilter(groupDirFD, "libvirt/lxc/web1")
//	err := f.Set(ctx, &semantic.Devices{
//		Default: semantic.DenyByDefault,
//		Rules:   []semantic.DeviceRule{null}, // from ParseDeviceRule("/dev/null", true)
//	})
//	...
//	err = f.Verify()  // still attached?
//	err = f.Remove()  // detach ours
package devfilter
