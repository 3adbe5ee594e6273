//go:build 386 || arm || mipsle

package devfilter

import "unsafe"

// ptr is an __aligned_u64 holding a user pointer (see ptr_64.go); on a
// 32-bit little-endian host the pointer is its low half.
type ptr struct {
	p unsafe.Pointer
	_ uint32
}
