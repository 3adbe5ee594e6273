// Package cgroupfs reads and writes cgroup filesystem attribute files with
// raw system calls, relative to directory descriptors held open.
//
// A tree starts at OpenRoot (an O_PATH descriptor of a directory, such as
// a driver's root in one hierarchy). Dir.OpenDir opens a group below it
// with openat2 and RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV, so no path, symlink, mount or
// ".." can lead outside the root; on kernels without openat2 (ENOSYS) it
// walks one component at a time with O_NOFOLLOW instead, refusing "."
// and ".." (that walk does not see mounts). On a cgroup filesystem
// (checked with fstatfs at OpenRoot) RESOLVE_BENEATH is left out: with no
// "." or ".." in a path, no symlink or mount crossed, and cgroup
// directories renamed only within their parent (v1) or not at all (v2),
// every component is beneath the root already, and the scoped lookup
// would cost a tenth of each open.
//
// The other methods take a name that is a relative path of plain names
// ("memory.max", or "a/b/memory.max" for a group below d): a single name
// is opened with openat(O_NOFOLLOW), a path with openat2 and the same
// resolve flags, so a driver can hold one descriptor per hierarchy root
// and reach any group's file in one syscall. Mkdir, Rmdir and Exists use
// mkdirat, unlinkat and fstatat, which have no resolve flags, so for a
// path Mkdir and Rmdir open the parent directory beneath d first (two
// syscalls more): a cgroup filesystem holds no symlink, but a tmpfs or a
// bind mount placed inside it can lead outside. Exists, which changes
// nothing, takes the path directly on a cgroup filesystem (checked with
// fstatfs at OpenRoot).
//
// Cost is syscalls: Write is openat+write+close (about 7.5us here, against
// 20us through os.WriteFile), Read is openat+read+close, and a File held
// open is re-read with one pread at offset 0 (a cgroup file is a seq_file
// that regenerates its content, and fills a read as far as its content
// goes, so a short read is taken as the end). None of them allocates on
// success: names reach openat, openat2, mkdirat and unlinkat through a
// NUL-terminated copy on the stack, and ReadInto fills the caller's
// buffer.
//
// Writes retry EINTR: the kernel returns it from some cgroup writes
// (memory.limit_in_bytes while reclaiming) when a signal is pending, and
// Go's preemption signals are enough. Rmdir retries EBUSY with backoff for
// Config.BusyTimeout or until its context ends: the kernel refuses a group
// for a moment after its last task exited. TryRmdir makes one attempt, for
// callers that first want to tell a populated group from that moment.
//
// Every write, mkdir and rmdir is logged at trace level on Config.Logger
// and passes Config.Faults first, the fault-injection seam: a hook that
// returns an error makes that operation fail with it, without touching
// the kernel. The hook belongs to the Config value, so two trees in one
// process have their own.
//
// Errors are *Error values naming the operation, the absolute path and,
// for writes, the value; errors.Is sees the cause (a unix.Errno such as
// unix.EBUSY, which also matches fs.ErrNotExist and friends).
//
//	root, err := cgroupfs.OpenRoot("/sys/fs/cgroup/pids/mine", cgroupfs.Config{Logger: log})
//	...
//	defer root.Close()
//	if err := root.Mkdir("job", 0o755); err != nil { ... }
//	job, err := root.OpenDir("job")
//	...
//	defer job.Close()
//	err = job.Write("pids.max", "100")
package cgroupfs
