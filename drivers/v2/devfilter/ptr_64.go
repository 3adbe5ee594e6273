//go:build !(386 || arm || mips || mipsle)

package devfilter

import "unsafe"

// ptr is an __aligned_u64 holding a user pointer. Keeping it an
// unsafe.Pointer (not a uint64) lets the garbage collector and stack
// copying see it between building the attr and the system call.
type ptr struct {
	p unsafe.Pointer
}
