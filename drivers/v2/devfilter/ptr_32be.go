//go:build mips

package devfilter

import "unsafe"

// ptr is an __aligned_u64 holding a user pointer (see ptr_64.go); on a
// 32-bit big-endian host the pointer is its low half, the second word.
type ptr struct {
	_ uint32
	p unsafe.Pointer
}
