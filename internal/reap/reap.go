// Package reap SIGKILLs the processes a cgroup lists without ever
// signalling one that is not in it.
//
// A driver that kills a group reads its pids from cgroup.procs and then
// signals them. Between the two, a listed process may exit, be reaped by
// a parent outside the group, and its pid be taken by an unrelated
// process: kill(2) would then hit that one. KillListed closes the window
// with pidfds: it opens one per listed pid, lists the group again, and
// signals a pidfd only if its pid is still listed and its process still
// alive afterwards. A live process keeps its pid, so a pid listed while
// the pidfd's process was alive was that process.
package reap

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// KillListed SIGKILLs the processes list names, as the package doc says.
// list returns the pids a group holds now (a read of its cgroup.procs);
// pids of 0 or less are ignored. It reports whether any process was
// listed. A process the caller may not signal does not stop the others:
// the first EPERM is returned once the rest are signalled. Where the
// kernel has no pidfd_open (before Linux 5.3) it falls back to kill(2).
func KillListed(list func() ([]int, error)) (listed bool, err error) {
	pids, err := list()
	if err != nil {
		return false, err
	}
	type handle struct{ pid, fd int }
	var hs []handle
	defer func() {
		for _, h := range hs {
			unix.Close(h.fd)
		}
	}()
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		listed = true
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			hs = append(hs, handle{pid, fd})
		case err == unix.ESRCH:
			// Gone already.
		case err == unix.ENOSYS:
			return listed, killAll(pids)
		default:
			return listed, fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
	}
	if len(hs) == 0 {
		return listed, nil
	}
	again, err := list()
	if err != nil {
		return listed, err
	}
	var denied error
	for _, h := range hs {
		if !slices.Contains(again, h.pid) {
			continue // left the group, or exited: its pid may be anyone's now
		}
		if err := unix.PidfdSendSignal(h.fd, 0, nil, 0); err != nil {
			continue // exited after the second listing: not signalled
		}
		err := unix.PidfdSendSignal(h.fd, unix.SIGKILL, nil, 0)
		switch {
		case err == nil, err == unix.ESRCH:
		case err == unix.EPERM:
			if denied == nil {
				denied = fmt.Errorf("kill %d: %w", h.pid, err)
			}
		default:
			return listed, fmt.Errorf("kill %d: %w", h.pid, err)
		}
	}
	return listed, denied
}

// killAll is KillListed without pidfds, for kernels that lack them.
func killAll(pids []int) error {
	var denied error
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		err := unix.Kill(pid, unix.SIGKILL)
		switch {
		case err == nil, err == unix.ESRCH:
		case errors.Is(err, unix.EPERM):
			if denied == nil {
				denied = fmt.Errorf("kill %d: %w", pid, err)
			}
		default:
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return denied
}
