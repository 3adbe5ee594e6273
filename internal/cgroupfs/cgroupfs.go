package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Op names a change made to a cgroup filesystem; the Faults hook sees it.
type Op string

// The changes a Dir makes.
const (
	OpWrite Op = "write"
	OpMkdir Op = "mkdir"
	OpRmdir Op = "rmdir"
)

// DefaultBusyTimeout bounds how long Rmdir retries the kernel's transient
// EBUSY when Config.BusyTimeout is 0.
const DefaultBusyTimeout = 2 * time.Second

// Config configures a tree of Dirs. The zero value is valid.
type Config struct {
	// Logger receives a trace line per write, mkdir and rmdir; nil is the
	// null logger.
	Logger hclog.Logger
	// Faults, if set, is called before every write, mkdir and rmdir with
	// the operation, the path relative to the root and the value (empty
	// for mkdir and rmdir). A non-nil result is returned as that
	// operation's cause, and the operation is not made; unix.EINTR itself
	// is the exception: like an interrupted system call it is retried,
	// calling the hook again. It is the seam tests use to fail the nth
	// change (or interrupt it); it may be called concurrently.
	Faults func(op Op, name, value string) error
	// BusyTimeout bounds Rmdir's retries of EBUSY; 0 means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
}

// shared is what every Dir and File opened from one root holds.
type shared struct {
	root    string
	log     hclog.Logger
	trace   bool
	faults  func(op Op, name, value string) error
	busy    time.Duration
	noOpen2 atomic.Bool // openat2 returned ENOSYS once: walk with openat
	// resolve is what openat2 resolves a path with: resolveFlags, less
	// RESOLVE_BENEATH on a cgroup filesystem (see kernfsResolveFlags).
	resolve uint64
	// kernfs is set when the root is on a cgroup filesystem, which cannot
	// hold symlinks (symlink(2) there is EPERM): fstatat takes a relative
	// path of plain names directly. Changes do not, as a mount inside the
	// tree can hold a symlink or lead outside itself.
	kernfs bool
}

// Error is a failed operation on one file or directory. errors.Is sees
// the cause (a unix.Errno, or what the Faults hook returned).
type Error struct {
	Op    string // "open", "read", "write", "mkdir", "rmdir", ...
	Path  string // absolute path of the file or directory
	Value string // what was written, for writes
	Err   error
}

func (e *Error) Error() string {
	if e.Op == string(OpWrite) {
		return fmt.Sprintf("write %q to %s: %v", e.Value, e.Path, e.Err)
	}
	return e.Op + " " + e.Path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Dir is a cgroup directory held open as an O_PATH descriptor. Files and
// subdirectories are reached relative to that descriptor, never by a path
// string the kernel resolves from "/", so a rename or a symlink planted
// above the root cannot redirect a write. A Dir is safe for concurrent
// use; Close it when done.
type Dir struct {
	fd  int
	rel string // path below the root, "" for the root itself
	sh  *shared
	// view is set on a Dir from Unhooked: it shares another Dir's
	// descriptor, skips the Faults hook and does not close.
	view bool
}

// OpenRoot opens the directory at path (absolute) as the root of a tree:
// every Dir opened from it stays beneath it.
func OpenRoot(p string, cfg Config) (*Dir, error) {
	if !path.IsAbs(p) {
		return nil, &Error{Op: "open", Path: p, Err: fmt.Errorf("root must be an absolute path: %w", unix.EINVAL)}
	}
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &Error{Op: "open", Path: p, Err: err}
	}
	sh := &shared{root: path.Clean(p), log: cfg.Logger, faults: cfg.Faults, busy: cfg.BusyTimeout}
	if sh.log == nil {
		sh.log = hclog.NewNullLogger()
	}
	sh.trace = sh.log.IsTrace()
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil {
		sh.kernfs = st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC
	}
	sh.resolve = resolveFlags
	if sh.kernfs {
		sh.resolve = kernfsResolveFlags
	}
	if sh.busy <= 0 {
		sh.busy = DefaultBusyTimeout
	}
	return &Dir{fd: fd, sh: sh}, nil
}

// Path is the directory's absolute path, for messages and for programs
// that need a path (it may be stale if someone renamed a parent).
func (d *Dir) Path() string { return d.abs("") }

// Name is the directory's path below the root ("" for the root).
func (d *Dir) Name() string { return d.rel }

// Fd is the O_PATH descriptor, valid until Close (for CLONE_INTO_CGROUP,
// BPF attach or fstatfs).
func (d *Dir) Fd() int { return d.fd }

// Unhooked returns a view of d whose writes, mkdirs and rmdirs skip the
// Faults hook (they are still logged): a driver restores a state after a
// failure through it, so an injected fault hits only the change under
// test. The view shares d's descriptor, is valid while d is open, and its
// Close does nothing.
func (d *Dir) Unhooked() *Dir { return &Dir{fd: d.fd, rel: d.rel, sh: d.sh, view: true} }

// Close releases the descriptor. Closing twice is an error.
func (d *Dir) Close() error {
	if d.view {
		return nil
	}
	if d.fd < 0 {
		return &Error{Op: "close", Path: d.Path(), Err: unix.EBADF}
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return &Error{Op: "close", Path: d.Path(), Err: err}
	}
	return nil
}

func (d *Dir) abs(name string) string { return path.Join(d.sh.root, d.rel, name) }

func (d *Dir) relName(name string) string {
	if d.rel == "" {
		return name
	}
	if name == "" {
		return d.rel
	}
	return d.rel + "/" + name
}

// checkPath refuses anything but a relative path of plain names
// ("memory.max", "a/b/memory.max"): no empty component, ".", ".." or NUL.
// single reports whether it is one name.
func checkPath(name string) (single bool, err error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 || name[0] == '/' {
		return false, fmt.Errorf("%q is not a relative path of plain names: %w", name, unix.EINVAL)
	}
	single = true
	for rest := name; rest != ""; {
		c, tail, more := strings.Cut(rest, "/")
		if c == "" || c == "." || c == ".." {
			return false, fmt.Errorf("%q is not a relative path of plain names: %w", name, unix.EINVAL)
		}
		if more {
			single = false
			if tail == "" {
				return false, fmt.Errorf("%q is not a relative path of plain names: %w", name, unix.EINVAL)
			}
		}
		rest = tail
	}
	return single, nil
}

// resolveFlags keep a path beneath its directory: no "..", no symlink,
// and no mount crossing (a bind mount inside a cgroup tree can lead
// anywhere; a cgroup hierarchy below a root is one mount).
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// kernfsResolveFlags are resolveFlags for a root on a cgroup filesystem,
// without RESOLVE_BENEATH, whose scoped lookup costs about 0.1us an open
// here (a tenth of a stats read's opens). It adds nothing there: every
// path given to openat2 is relative and has no "." or ".." (checkPath,
// OpenDir), no symlink or mount is crossed (the other flags), and a
// cgroup directory cannot be renamed out from under the walk (cgroup v1
// renames only within one parent, cgroup2 not at all), so each component
// is a child of the one before, beneath the root.
const kernfsResolveFlags = resolveFlags &^ unix.RESOLVE_BENEATH

// OpenDir opens the directory rel ("a/b/c", relative) beneath d. It
// resolves with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS); on a kernel without openat2 (ENOSYS) it walks
// one component at a time with openat(O_NOFOLLOW), refusing "." and "..",
// which gives the same guarantee.
func (d *Dir) OpenDir(rel string) (*Dir, error) {
	clean := path.Clean(rel)
	if rel == "" || path.IsAbs(rel) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, &Error{Op: "open", Path: d.abs(rel), Err: fmt.Errorf("%q is not a relative path beneath %s: %w", rel, d.Path(), unix.EINVAL)}
	}
	if clean == "." {
		fd, err := retryEINTR(func() (int, error) {
			return unix.Openat(d.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			return nil, &Error{Op: "open", Path: d.Path(), Err: err}
		}
		return &Dir{fd: fd, rel: d.rel, sh: d.sh}, nil
	}
	fd, err := d.openBeneath(clean, unix.O_PATH|unix.O_DIRECTORY, false)
	if err != nil {
		return nil, &Error{Op: "open", Path: d.abs(clean), Err: err}
	}
	return &Dir{fd: fd, rel: d.relName(clean), sh: d.sh}, nil
}

// openBeneath opens name (checked by checkPath) beneath d with flags
// (O_CLOEXEC added): with openat2 and the resolve flags, so that neither
// a symlink nor a mount (a file bind-mounted over an attribute file)
// is followed, one name in d or a path; where the kernel has no openat2,
// by walking with openat(O_NOFOLLOW), which refuses symlinks but cannot
// see mounts. It costs one syscall on a current kernel.
func (d *Dir) openBeneath(name string, flags int, single bool) (int, error) {
	fd, err := d.resolveBeneath(name, flags, single)
	if err == unix.ENODEV {
		// kernfs answers an open inside a group that is being removed
		// with ENODEV: the file is gone, as for a read below.
		return -1, removedError{}
	}
	return fd, err
}

func (d *Dir) resolveBeneath(name string, flags int, single bool) (int, error) {
	flags |= unix.O_CLOEXEC
	if !d.sh.noOpen2.Load() {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: d.sh.resolve}
		for range 16 {
			fd, err := openat2(d.fd, name, &how)
			switch err {
			case unix.EINTR, unix.EAGAIN: // EAGAIN: a concurrent rename or mount; the kernel asks for a retry
				continue
			case unix.ENOSYS:
				d.sh.noOpen2.Store(true)
			default:
				return fd, err
			}
			break
		}
		if !d.sh.noOpen2.Load() {
			return -1, unix.EAGAIN
		}
	}
	if single {
		return retryEINTR(func() (int, error) { return openat(d.fd, name, flags|unix.O_NOFOLLOW) })
	}
	dir, base := path.Split(name)
	parent, err := walk(d.fd, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	return retryEINTR(func() (int, error) { return openat(parent, base, flags|unix.O_NOFOLLOW) })
}

// walk opens the directory rel one component at a time, never following
// a symlink.
func walk(dirfd int, rel string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd := -1
	cur := dirfd
	for _, c := range strings.Split(rel, "/") {
		if _, err := checkPath(c); err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			return -1, err
		}
		next, err := retryEINTR(func() (int, error) { return unix.Openat(cur, c, flags, 0) })
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd, cur = next, next
	}
	return fd, nil
}

// atParent runs fn with a directory descriptor and a name such that the
// pair names name beneath d, for the *at calls that have no resolve
// flags (mkdirat, unlinkat, fstatat). For a single name that is d
// itself; otherwise the parent directory is opened beneath d first,
// unless change is false and d is on a cgroup filesystem. A cgroup
// filesystem holds no symlink, but something mounted inside it can (or
// can itself lead outside, as a bind mount does), and a path given to
// mkdirat or unlinkat follows both: a change pays the extra open and
// close to stay beneath the root, a look (fstatat) does not.
func (d *Dir) atParent(name string, single, change bool, fn func(dirfd int, name string) error) error {
	if single || d.sh.kernfs && !change {
		_, err := retryEINTR(func() (int, error) { return 0, fn(d.fd, name) })
		return err
	}
	dir, base := path.Split(name)
	parent, err := d.openBeneath(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY, false)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	_, err = retryEINTR(func() (int, error) { return 0, fn(parent, base) })
	return err
}

// Mkdir creates the directory name ("g" or "a/b/g") beneath d.
func (d *Dir) Mkdir(name string, mode uint32) error {
	single, err := checkPath(name)
	if err == nil {
		err = d.change(OpMkdir, name, "")
	}
	if err == nil {
		err = d.atParent(name, single, true, func(fd int, n string) error { return mkdirat(fd, n, mode) })
	}
	if err != nil {
		return &Error{Op: string(OpMkdir), Path: d.abs(name), Err: err}
	}
	return nil
}

// TryRmdir removes the directory name beneath d once, without retrying
// EBUSY, so a caller can tell a populated group from a transient refusal.
func (d *Dir) TryRmdir(name string) error {
	single, err := checkPath(name)
	if err == nil {
		err = d.change(OpRmdir, name, "")
	}
	if err == nil {
		err = d.atParent(name, single, true, func(fd int, n string) error { return unlinkat(fd, n, unix.AT_REMOVEDIR) })
	}
	if err != nil {
		return &Error{Op: string(OpRmdir), Path: d.abs(name), Err: err}
	}
	return nil
}

// Rmdir removes the directory name beneath d. The kernel refuses a
// cgroup with tasks or children with EBUSY, and also does so for a
// moment after the last task exited; Rmdir retries EBUSY with backoff for
// Config.BusyTimeout, or until ctx ends, then returns the last EBUSY (or
// ctx's error, which also matches unix.EBUSY).
func (d *Dir) Rmdir(ctx context.Context, name string) error {
	single, err := checkPath(name)
	if err == nil {
		err = d.change(OpRmdir, name, "")
	}
	if err != nil {
		return &Error{Op: string(OpRmdir), Path: d.abs(name), Err: err}
	}
	deadline := time.Now().Add(d.sh.busy)
	wait := time.Millisecond
	for {
		err := d.atParent(name, single, true, func(fd int, n string) error { return unlinkat(fd, n, unix.AT_REMOVEDIR) })
		if err != unix.EBUSY || time.Now().Add(wait).After(deadline) {
			if err != nil {
				return &Error{Op: string(OpRmdir), Path: d.abs(name), Err: err}
			}
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			return &Error{Op: string(OpRmdir), Path: d.abs(name), Err: errors.Join(err, unix.EBUSY)}
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// change logs a change and consults the Faults hook.
func (d *Dir) change(op Op, name, value string) error {
	rel := d.relName(name)
	if d.sh.trace {
		if op == OpWrite {
			d.sh.log.Trace(string(op), "file", d.abs(name), "value", value)
		} else {
			d.sh.log.Trace(string(op), "dir", d.abs(name))
		}
	}
	if d.sh.faults != nil && !d.view {
		// An injected EINTR stands for an interrupted system call and is
		// retried like one, by the same loop.
		_, err := retryEINTR(func() (int, error) { return 0, d.sh.faults(op, rel, value) })
		if err != nil {
			return injected{err}
		}
	}
	return nil
}

// injected marks an error the Faults hook made.
type injected struct{ error }

func (i injected) Unwrap() error { return i.error }

// IsInjected reports whether err came from the Config.Faults hook: the
// operation never reached the kernel, so a caller must not take an
// injected EBUSY for a transient kernel state and retry it away.
func IsInjected(err error) bool {
	var i injected
	return errors.As(err, &i)
}

// Exists reports whether name ("memory.max", "a/b") exists beneath d.
func (d *Dir) Exists(name string) (bool, error) {
	single, err := checkPath(name)
	if err != nil {
		return false, &Error{Op: "stat", Path: d.abs(name), Err: err}
	}
	var st unix.Stat_t
	err = d.atParent(name, single, false, func(fd int, n string) error { return unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) })
	switch err {
	case nil:
		return true, nil
	case unix.ENOENT:
		return false, nil
	}
	return false, &Error{Op: "stat", Path: d.abs(name), Err: err}
}

// Subdirs lists d's subdirectories (its child groups), sorted.
func (d *Dir) Subdirs() ([]string, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &Error{Op: "open", Path: d.Path(), Err: err}
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Getdents(fd, buf) })
		if err != nil {
			return nil, &Error{Op: "readdir", Path: d.Path(), Err: err}
		}
		if n <= 0 {
			break
		}
		names = appendDirs(names, buf[:n])
	}
	slices.Sort(names)
	return names, nil
}

// appendDirs appends the directory entries of a getdents64 buffer, less
// "." and "..".
func appendDirs(names []string, b []byte) []string {
	for len(b) >= 19 {
		// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
		reclen := int(b[16]) | int(b[17])<<8
		if reclen < 19 || reclen > len(b) {
			break
		}
		typ := b[18]
		name := b[19:reclen]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i]
		}
		if typ == unix.DT_DIR && string(name) != "." && string(name) != ".." {
			names = append(names, string(name))
		}
		b = b[reclen:]
	}
	return names
}

// Read returns the content of the attribute file name.
func (d *Dir) Read(name string) ([]byte, error) { return d.ReadInto(name, nil) }

// ReadString returns the content of name with surrounding white space
// (the kernel's trailing newline) removed.
func (d *Dir) ReadString(name string) (string, error) {
	var buf [512]byte // most attribute files fit: no allocation but the result
	b, err := d.ReadInto(name, buf[:0])
	return strings.TrimSpace(string(b)), err
}

// ReadInto reads the attribute file name ("memory.max" or
// "a/b/memory.max") into buf[:0], growing it as needed, and returns the
// filled slice: callers that read often pass the same buffer back. It
// costs three syscalls: open, read, close.
func (d *Dir) ReadInto(name string, buf []byte) ([]byte, error) {
	single, err := checkPath(name)
	if err != nil {
		return nil, &Error{Op: "open", Path: d.abs(name), Err: err}
	}
	fd, err := d.openBeneath(name, unix.O_RDONLY, single)
	if err != nil {
		return nil, &Error{Op: "open", Path: d.abs(name), Err: err}
	}
	defer unix.Close(fd)
	b, err := readAt(fd, buf[:0], false)
	if err != nil {
		return nil, &Error{Op: "read", Path: d.abs(name), Err: err}
	}
	return b, nil
}

// readAt reads fd to its end into buf. cgroup attribute files are
// seq_files, which fill a read as far as their content goes, so a short
// read is the end and the usual extra read that returns 0 is saved.
func readAt(fd int, buf []byte, positional bool) ([]byte, error) {
	if cap(buf) < 512 {
		buf = make([]byte, 0, 4096)
	}
	for {
		space := buf[len(buf):cap(buf)]
		n, err := retryEINTR(func() (int, error) {
			if positional {
				return unix.Pread(fd, space, int64(len(buf)))
			}
			return unix.Read(fd, space)
		})
		if err == unix.ENODEV {
			return nil, removedError{}
		}
		if err != nil {
			return nil, err
		}
		buf = buf[:len(buf)+n]
		if n < len(space) {
			return buf, nil
		}
		buf = slices.Grow(buf, cap(buf))
	}
}

// removedError is an open or read of a file whose group was removed
// meanwhile: kernfs answers it with ENODEV. For a read the group is
// gone, so errors.Is and errors.As see ENOENT first (and ENODEV too); a
// write's ENODEV keeps its own meaning (a value naming no device).
type removedError struct{}

func (removedError) Error() string {
	return "no such file or directory (the group was removed meanwhile)"
}

func (removedError) Unwrap() []error { return []error{unix.ENOENT, unix.ENODEV} }

// Write writes value to the attribute file name in one write(2),
// retrying EINTR (memory.limit_in_bytes returns it when a signal is
// pending, and Go's preemption signals are enough). It costs three
// syscalls: open, write, close. name is "memory.max" or "a/b/memory.max".
func (d *Dir) Write(name, value string) error {
	single, err := checkPath(name)
	if err == nil {
		err = d.change(OpWrite, name, value)
	}
	if err != nil {
		return &Error{Op: string(OpWrite), Path: d.abs(name), Value: value, Err: err}
	}
	fd, err := d.openBeneath(name, unix.O_WRONLY, single)
	if err != nil {
		return &Error{Op: string(OpWrite), Path: d.abs(name), Value: value, Err: err}
	}
	err = writeAll(fd, value)
	unix.Close(fd)
	if err != nil {
		return &Error{Op: string(OpWrite), Path: d.abs(name), Value: value, Err: err}
	}
	return nil
}

func writeAll(fd int, value string) error {
	// The kernel only reads the buffer, so the string's bytes are passed
	// without a copy.
	b := unsafe.Slice(unsafe.StringData(value), len(value))
	n, err := retryEINTR(func() (int, error) { return unix.Write(fd, b) })
	if err == nil && n != len(b) {
		err = fmt.Errorf("short write: %d of %d bytes: %w", n, len(b), unix.EIO)
	}
	return err
}

// File is an attribute file held open, for reading it repeatedly (stats)
// or writing it repeatedly (cgroup.procs), or to pass its descriptor to
// the kernel (cgroup.event_control). Close it when done.
type File struct {
	fd   int
	name string // below the directory
	dir  *Dir
}

// OpenFile opens the attribute file name ("memory.max" or
// "a/b/memory.max") with flag (unix.O_RDONLY or unix.O_WRONLY; O_CLOEXEC
// is added, and nothing is followed).
func (d *Dir) OpenFile(name string, flag int) (*File, error) {
	single, err := checkPath(name)
	if err != nil {
		return nil, &Error{Op: "open", Path: d.abs(name), Err: err}
	}
	fd, err := d.openBeneath(name, flag, single)
	if err != nil {
		return nil, &Error{Op: "open", Path: d.abs(name), Err: err}
	}
	return &File{fd: fd, name: name, dir: d}, nil
}

// Fd is the file's descriptor, valid until Close.
func (f *File) Fd() int { return f.fd }

// Path is the file's absolute path.
func (f *File) Path() string { return f.dir.abs(f.name) }

// ReadInto re-reads the whole file from offset 0 with pread into
// buf[:0], growing it as needed: one syscall for a file that fits.
func (f *File) ReadInto(buf []byte) ([]byte, error) {
	b, err := readAt(f.fd, buf[:0], true)
	if err != nil {
		return nil, &Error{Op: "read", Path: f.Path(), Err: err}
	}
	return b, nil
}

// Write writes value in one write(2), retrying EINTR, through the same
// logging and Faults hook as Dir.Write.
func (f *File) Write(value string) error {
	if err := f.dir.change(OpWrite, f.name, value); err != nil {
		return &Error{Op: string(OpWrite), Path: f.Path(), Value: value, Err: err}
	}
	if err := writeAll(f.fd, value); err != nil {
		return &Error{Op: string(OpWrite), Path: f.Path(), Value: value, Err: err}
	}
	return nil
}

// Close releases the descriptor.
func (f *File) Close() error {
	if f.fd < 0 {
		return &Error{Op: "close", Path: f.Path(), Err: unix.EBADF}
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &Error{Op: "close", Path: f.Path(), Err: err}
	}
	return nil
}

// retryEINTR runs a syscall until it stops failing with EINTR.
func retryEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != unix.EINTR {
			return n, err
		}
	}
}
