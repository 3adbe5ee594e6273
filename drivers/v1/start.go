package v1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// Start starts cmd with its process in the group from its first
// instruction.
//
// On v1 a child is born in the cgroups of the thread that forks it, and
// a thread can be moved on its own (the tasks file). So Start locks a
// fresh OS thread, writes that thread into the group's tasks file in
// every hierarchy, and runs cmd.Start there: the child is created inside
// the group, never outside, and its exec, arguments, environment and
// errors are exactly exec.Cmd's. The thread is then discarded (its
// goroutine exits locked, and the Go runtime ends such a thread), and
// Start returns once it is gone, so the group does not list the caller.
//
// Consequences: while cmd starts, the thread counts in the group's
// pids.current (a group needs room for the child plus one), and a frozen
// group is refused with ErrBusy (the thread would freeze with it); thaw
// it first. Standard streams left nil are opened on /dev/null before the
// thread moves, so the group's device rules do not apply to that open.
func (g *group) Start(ctx context.Context, cmd *exec.Cmd) error {
	const op = "start"
	release, err := g.d.enter(ctx, op, g.p)
	if err != nil {
		return err
	}
	defer release()
	if cmd == nil || cmd.Process != nil {
		return errorf(op, g.p, semantic.ErrInvalid, "a command that is not started yet is needed")
	}
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.UseCgroupFD {
		return errorf(op, g.p, semantic.ErrInvalid, "SysProcAttr.UseCgroupFD (CLONE_INTO_CGROUP) is cgroup v2's; the v1 driver places the command itself")
	}
	if h := g.d.byCtrl["freezer"]; h != nil && !g.p.IsRoot() {
		st, err := h.root.ReadString(file(g.p, "freezer.state"))
		if err != nil {
			return wrap(op, g.p, err)
		}
		if st != thawed {
			return errorf(op, g.p, semantic.ErrBusy, "the group is %s; thaw it before starting a command inside", st)
		}
	}
	restore, err := nullStreams(cmd)
	if err != nil {
		return wrap(op, g.p, err)
	}
	defer restore()

	type result struct {
		tid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread carries the group's membership and
		// must not run other goroutines; the runtime ends it when this
		// goroutine returns.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The runtime never ends the main thread, so start from
			// another one: while this goroutine holds the main thread,
			// the inner one gets a thread of its own.
			inner := make(chan result, 1)
			go func() {
				runtime.LockOSThread()
				tid := unix.Gettid()
				inner <- result{tid, g.startHere(cmd, tid)}
			}()
			r := <-inner
			runtime.UnlockOSThread()
			done <- r
			return
		}
		tid := unix.Gettid()
		done <- result{tid, g.startHere(cmd, tid)}
	}()
	r := <-done
	if werr := waitThreadGone(ctx, r.tid); werr != nil && r.err == nil {
		g.d.log.Debug("starting thread still present", "tid", r.tid, "error", werr)
	}
	if r.err != nil {
		return wrap(op, g.p, r.err)
	}
	g.d.log.Trace("started", "group", g.p.Display(), "pid", cmd.Process.Pid, "path", cmd.Path)
	return nil
}

// startHere moves the calling thread into the group in every hierarchy
// and starts cmd from it.
func (g *group) startHere(cmd *exec.Cmd, tid int) error {
	v := strconv.Itoa(tid)
	for _, h := range g.d.hs {
		// Not a change of the group's configuration: no fault hook.
		if err := h.undo.Write(file(g.p, "tasks"), v); err != nil {
			return err
		}
	}
	return cmd.Start()
}

// nullStreams opens /dev/null for the standard streams cmd leaves nil,
// as exec.Cmd would, but before the starting thread joins the group.
// restore puts the fields back and closes what it opened.
func nullStreams(cmd *exec.Cmd) (restore func(), err error) {
	var opened []*os.File
	restore = func() {
		for _, f := range opened {
			f.Close()
		}
	}
	open := func(flag int) (*os.File, error) {
		f, err := os.OpenFile(os.DevNull, flag, 0)
		if err == nil {
			opened = append(opened, f)
		}
		return f, err
	}
	if cmd.Stdin == nil {
		f, err := open(os.O_RDONLY)
		if err != nil {
			restore()
			return nil, err
		}
		cmd.Stdin = f
		prev := restore
		restore = func() { cmd.Stdin = nil; prev() }
	}
	if cmd.Stdout == nil {
		f, err := open(os.O_WRONLY)
		if err != nil {
			restore()
			return nil, err
		}
		cmd.Stdout = f
		prev := restore
		restore = func() { cmd.Stdout = nil; prev() }
	}
	if cmd.Stderr == nil {
		f, err := open(os.O_WRONLY)
		if err != nil {
			restore()
			return nil, err
		}
		cmd.Stderr = f
		prev := restore
		restore = func() { cmd.Stderr = nil; prev() }
	}
	return restore, nil
}

// waitThreadGone waits until thread tid of this process has exited.
func waitThreadGone(ctx context.Context, tid int) error {
	p := "/proc/self/task/" + strconv.Itoa(tid)
	wait := 20 * time.Microsecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); errors.Is(err, unix.ENOENT) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thread %d still present after 5s", tid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Millisecond)
	}
}
