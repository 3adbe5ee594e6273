package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// Start starts cmd so that it is in the group's scope before it runs its
// first instruction. The child is started traced (PTRACE_TRACEME, as
// SysProcAttr.Ptrace does), so the kernel stops it right after its exec
// succeeded, before the new program runs; systemd then gets its pid (the
// scope starts with it, or takes it), and only once that job is done is
// the child let go (PTRACE_DETACH, its SIGTRAP dropped). A child of a
// process outside systemd's pid namespace is forked into that namespace,
// so systemd can be given its pid.
//
// If anything fails after the fork, the child is killed and reaped, and
// cmd.Process is nil again: a failed Start started nothing. The caller
// may not set SysProcAttr.Ptrace itself. A setuid program started by a
// caller without CAP_SYS_PTRACE runs without its privileges, as under any
// tracer.
func (g *group) Start(ctx context.Context, cmd *exec.Cmd) error {
	const op = "start"
	d := g.d
	if err := d.check(ctx, op, g.path); err != nil {
		return err
	}
	if cmd.Process != nil {
		return errorf(op, g.path, semantic.ErrInvalid, "the command was started already")
	}
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Ptrace {
		return errorf(op, g.path, semantic.ErrNotSupported, "the command asks to be traced, and Start traces it itself until it is in the group")
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	if _, err := d.active(ctx, op, g.path); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- g.startTraced(ctx, cmd) }()
	if err := <-done; err != nil {
		return wrap(op, g.path, err)
	}
	return nil
}

// startTraced forks, places and releases the child on one locked thread:
// the thread that forks is the child's tracer, and only it may detach.
func (g *group) startTraced(ctx context.Context, cmd *exec.Cmd) (err error) {
	d := g.d
	runtime.LockOSThread()
	keep := false
	defer func() {
		// A thread that could not return to its own pid namespace is
		// left locked, so the runtime ends it with this goroutine.
		if !keep {
			runtime.UnlockOSThread()
		}
	}()
	if !d.view.samePids() {
		restore, err := enterPidns(d.view.peer)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := restore(); rerr != nil {
				keep = true
				d.log.Warn("return to own pid namespace", "err", rerr)
			}
		}()
	}
	orig := cmd.SysProcAttr
	attr := &syscall.SysProcAttr{}
	if orig != nil {
		*attr = *orig
	}
	attr.Ptrace = true
	cmd.SysProcAttr = attr
	err = cmd.Start()
	cmd.SysProcAttr = orig
	if err != nil {
		return err
	}
	pid := cmd.Process.Pid
	fail := func(err error) error {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
		cmd.Process, cmd.ProcessState = nil, nil
		return err
	}
	// The traced child stops with SIGTRAP once its exec succeeded. WNOWAIT
	// leaves an exit (it was killed meanwhile) for cmd.Wait to reap.
	var info unix.Siginfo
	for {
		err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WSTOPPED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fail(fmt.Errorf("wait for pid %d to stop at its exec: %w", pid, err))
	}
	if info.Code != cldTrapped && info.Code != cldStopped {
		return fail(fmt.Errorf("pid %d ended before it could be placed", pid))
	}
	spid, err := d.view.systemdPID(pid)
	if err != nil {
		return fail(err)
	}
	if err := g.place(ctx, spid); err != nil {
		return fail(g.pidError("start", pid, err))
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fail(fmt.Errorf("release pid %d: %w", pid, err))
	}
	return nil
}

// siginfo codes of SIGCHLD (waitid's info.Code).
const (
	cldTrapped = 4
	cldStopped = 5
)

// enterPidns makes the calling (locked) thread fork its children into the
// pid namespace of peer, and returns how to come back.
func enterPidns(peer int) (restore func() error, err error) {
	own, err := unix.Open("/proc/thread-self/ns/pid_for_children", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	target, err := unix.Open("/proc/"+strconv.Itoa(peer)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(own)
		return nil, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWPID); err != nil {
		unix.Close(own)
		return nil, fmt.Errorf("enter systemd's pid namespace: %w", err)
	}
	return func() error {
		defer unix.Close(own)
		if err := unix.Setns(own, unix.CLONE_NEWPID); err != nil {
			return errors.Join(errors.New("leave systemd's pid namespace"), err)
		}
		return nil
	}, nil
}
