package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"

	"github.com/cgsem/cgsem/semantic"
)

// Exit codes of run before its command starts, as env(1) and the shells
// use them.
const (
	exitCannotExecute = 126
	exitNotFound      = 127
)

func cmdRun(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	if o.path == "" {
		return usagef("--path is required")
	}
	if len(args) == 0 {
		return usagef("no command given: cgsem run --path PATH [flags] [--] CMD [ARGS...]")
	}
	p, err := parsePath(o.path)
	if err != nil {
		return err
	}
	if p.IsRoot() {
		return usagef("--path must name a group below the root")
	}
	res, err := o.res.resources()
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	if cmd.Err != nil {
		// Nothing is created for a command that cannot be found.
		return &exitStatus{code: exitNotFound, err: cmd.Err}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr

	d, err := c.open()
	if err != nil {
		return err
	}
	defer d.Close()

	// Signals are caught from here on so that one arriving before the
	// command starts does not kill cgsem with the group half made; after
	// the start they are forwarded.
	sigs := make(chan os.Signal, 4)
	c.notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer c.stopNotify(sigs)

	g, created, err := ensureGroup(ctx, d, p, res)
	if err != nil {
		return err
	}
	// Removal must happen even when ctx has ended: it undoes our own work.
	cleanup := func() error {
		if !o.rm || len(created) == 0 {
			return nil
		}
		return removeCreated(context.WithoutCancel(ctx), d, created)
	}
	select {
	case s := <-sigs:
		return errors.Join(&interrupted{sig: s}, cleanup())
	default:
	}
	if err := g.Start(ctx, cmd); err != nil {
		return errors.Join(startError(cmd, err), cleanup())
	}

	done := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case s := <-sigs:
				// The process may have exited already; nothing to forward to.
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	waitErr := cmd.Wait()
	close(done)
	<-forwarded

	code, ok := exitStatusOf(cmd.ProcessState)
	if !ok {
		return errors.Join(fmt.Errorf("wait for %s: %w", args[0], waitErr), cleanup())
	}
	if err := cleanup(); err != nil {
		if code == 0 {
			code = exitCode(err)
		}
		return &exitStatus{code: code, err: err}
	}
	return &exitStatus{code: code}
}

// exitStatusOf is the status a shell reports for a finished process:
// its exit code, or 128+N when signal N ended it.
func exitStatusOf(ps *os.ProcessState) (int, bool) {
	if ps == nil {
		return 0, false
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), true
	}
	return ps.ExitCode(), ps.ExitCode() >= 0
}

// startError gives a failure to execute the command the shell's codes,
// and leaves the driver's own failures (the group, start-inside) to the
// usual mapping.
func startError(cmd *exec.Cmd, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == cmd.Path {
		code := exitCannotExecute
		if errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		return &exitStatus{code: code, err: err}
	}
	return err
}

// ensureGroup opens the group at p and applies res, or creates it with
// res. It returns the paths it created, the group first and then the
// levels above it that did not exist, deepest first.
func ensureGroup(ctx context.Context, d semantic.Driver, p semantic.Path, res *semantic.Resources) (semantic.Group, []semantic.Path, error) {
	g, err := d.Open(ctx, p)
	if err == nil {
		return g, nil, applyIf(ctx, g, res)
	}
	if !errors.Is(err, semantic.ErrNotExist) {
		return nil, nil, err
	}
	created := []semantic.Path{p}
	for n := p.Len() - 1; n > 0; n-- {
		_, err := d.Open(ctx, p.Prefix(n))
		if err == nil {
			break
		}
		if !errors.Is(err, semantic.ErrNotExist) {
			return nil, nil, err
		}
		created = append(created, p.Prefix(n))
	}
	g, err = d.Create(ctx, p, res)
	if errors.Is(err, semantic.ErrExist) {
		// Someone made it between our open and create: use theirs.
		if g, err = d.Open(ctx, p); err != nil {
			return nil, nil, err
		}
		return g, nil, applyIf(ctx, g, res)
	}
	if err != nil {
		return nil, nil, err
	}
	return g, created, nil
}

func applyIf(ctx context.Context, g semantic.Group, res *semantic.Resources) error {
	if res == nil {
		return nil
	}
	return g.Apply(ctx, res)
}

// removeCreated deletes what ensureGroup created: the group with whatever
// is left in it, then each level above it that is still empty. A level
// someone else has started using (busy) or removed is left to them.
func removeCreated(ctx context.Context, d semantic.Driver, created []semantic.Path) error {
	for i, p := range created {
		g, err := d.Open(ctx, p)
		if err == nil {
			opts := &semantic.DeleteOptions{}
			if i == 0 {
				opts = &semantic.DeleteOptions{Kill: true, Recursive: true}
			}
			err = g.Delete(ctx, opts)
		}
		switch {
		case err == nil:
		case i > 0 && (errors.Is(err, semantic.ErrBusy) || errors.Is(err, semantic.ErrNotExist)):
			return nil
		default:
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return nil
}
