package cgroupfs

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls a group's lifecycle and stats make, taking the name as
// a string that is copied into a buffer on the stack with its NUL, where
// golang.org/x/sys copies each into a new allocation: a Create and Delete
// makes dozens of them.

// nameBuf holds a NUL-terminated name; longer names are allocated.
type nameBuf [256]byte

// cstring returns s NUL-terminated, in buf when it fits. A name holding a
// NUL is EINVAL, as golang.org/x/sys has it.
func cstring(buf *nameBuf, s string) (*byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, unix.EINVAL
	}
	b := buf[:]
	if len(s) >= len(buf) {
		b = make([]byte, len(s)+1)
	}
	copy(b, s)
	b[len(s)] = 0
	return &b[0], nil
}

func openat(dirfd int, name string, flags int) (int, error) {
	var buf nameBuf
	p, err := cstring(&buf, name)
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func openat2(dirfd int, name string, how *unix.OpenHow) (int, error) {
	var buf nameBuf
	p, err := cstring(&buf, name)
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT2, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(how)), unsafe.Sizeof(*how), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func mkdirat(dirfd int, name string, mode uint32) error {
	var buf nameBuf
	p, err := cstring(&buf, name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MKDIRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode)); e != 0 {
		return e
	}
	return nil
}

func unlinkat(dirfd int, name string, flags int) error {
	var buf nameBuf
	p, err := cstring(&buf, name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_UNLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags)); e != 0 {
		return e
	}
	return nil
}
