package conformance

import "syscall"

// forkPause forks a child that only pauses, dies with its parent and
// takes one task of a pids limit. It forks without exec (a Go child would
// need threads of its own), so the child runs nothing but raw system
// calls: no stack growth, no race instrumentation, no runtime.
//
//go:norace
//go:nosplit
func forkPause() (pid int, errno syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	if e != 0 {
		return 0, e
	}
	if r == 0 {
		syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
		for {
			syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
		}
	}
	return int(r), 0
}
