//go:build !linux

package conformance

import "syscall"

// forkPause is Linux-only: cgroups are.
func forkPause() (pid int, errno syscall.Errno) { return 0, syscall.ENOSYS }
