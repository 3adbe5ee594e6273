package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// Exit codes; see the package doc.
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitNotSupported = 3
	exitNotExist     = 4
	exitBusy         = 5
)

// EnvRoot names the environment variable that gives --root's default.
const EnvRoot = "CGSEM_ROOT"

// cli is one invocation's environment: everything a command reads or
// writes outside its arguments, so tests run commands in-process.
type cli struct {
	env    func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	reg    *registry.Registry
	// notify and stopNotify are signal.Notify and signal.Stop; tests
	// replace them to deliver signals without signalling the test binary.
	notify     func(chan<- os.Signal, ...os.Signal)
	stopNotify func(chan<- os.Signal)

	g globals
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	driver      string
	root        string
	json        bool
	logLevel    string
	approximate bool
	// settings are the driver's own knobs (semantic.Options.Settings).
	settings map[string]string
}

var globalFlagNames = []string{"driver", "root", "json", "log-level", "approximate", "setting"}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.driver, "driver", g.driver, "force the driver `NAME` (default: $CGSEM_DRIVER, else auto-selection)")
	fs.StringVar(&g.root, "root", g.root, "manage groups beneath `PATH`, or \"self\" for beneath this process's own cgroup (default: $CGSEM_ROOT, else the backend's top)")
	fs.BoolVar(&g.json, "json", g.json, "print machine-readable JSON (see the package doc for the schema)")
	fs.StringVar(&g.logLevel, "log-level", g.logLevel, "log to stderr at `LEVEL`: off, error, warn, info, debug, trace (trace shows every file write)")
	fs.BoolVar(&g.approximate, "approximate", g.approximate, "apply approximate conversions instead of refusing them")
	fs.Func("setting", "pass the driver a setting `KEY=VALUE` it documents (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		if g.settings == nil {
			g.settings = map[string]string{}
		}
		g.settings[k] = v
		return nil
	})
}

// run is the whole tool: it parses args (without the program name), runs
// one command and returns the exit code.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer, reg *registry.Registry) int {
	c := &cli{
		env: env, stdin: stdin, stdout: stdout, stderr: stderr, reg: reg,
		notify: signal.Notify, stopNotify: signal.Stop,
	}
	return c.main(ctx, args)
}

func (c *cli) main(ctx context.Context, args []string) int {
	c.g = globals{driver: c.env(registry.EnvDriver), root: c.env(EnvRoot), logLevel: "off"}
	top := newFlagSet("cgsem")
	c.g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return exitOK
		}
		return c.fail("", &usageError{msg: err.Error()})
	}
	rest := top.Args()
	if len(rest) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return c.help(rest)
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		return c.fail("", &usageError{msg: fmt.Sprintf("unknown command %q; commands: %s", name, strings.Join(commandNames(), ", "))})
	}
	err := cmd.run(ctx, c, rest)
	if errors.Is(err, flag.ErrHelp) {
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	return c.fail(cmd.name, err)
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	cmd := lookupCommand(args[0])
	if cmd == nil {
		return c.fail("help", &usageError{msg: fmt.Sprintf("unknown command %q", args[0])})
	}
	c.commandUsage(c.stdout, cmd)
	return exitOK
}

// fail prints err (if any) and returns its exit code.
func (c *cli) fail(cmd string, err error) int {
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var st *exitStatus
	if errors.As(err, &st) && st.err == nil {
		return code
	}
	prefix := "cgsem: "
	if cmd != "" {
		prefix += cmd + ": "
	}
	fmt.Fprintln(c.stderr, prefix+message(err))
	var ue *usageError
	if errors.As(err, &ue) {
		hint := "cgsem --help"
		if cmd != "" {
			hint = "cgsem " + cmd + " --help"
		}
		fmt.Fprintf(c.stderr, "run '%s' for usage\n", hint)
	}
	return code
}

// message renders err without a leading "cgsem: " or "cgsem/" (the
// caller adds "cgsem: "), so a driver error reads "cgsem: create: fake:
// create on a/b: already exists".
func message(err error) string {
	m := err.Error()
	m = strings.TrimPrefix(m, "cgsem: ")
	return strings.TrimPrefix(m, "cgsem/")
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// exitStatus carries an exit code decided by the command (run's child
// status); err, if set, is printed.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e *exitStatus) Unwrap() error { return e.err }

// interrupted is the cancellation cause when a signal ends a command.
type interrupted struct{ sig os.Signal }

func (e *interrupted) Error() string { return "interrupted by " + e.sig.String() }

// exitCode maps an error to the tool's exit code. The outermost cgsem
// error's kind decides; an error without one is classified by errors.Is.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var intr *interrupted
	if errors.As(err, &intr) {
		if s, ok := intr.sig.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return exitFailure
	}
	var se *semantic.Error
	if errors.As(err, &se) && se.Kind != nil {
		if code, ok := kindCode(se.Kind); ok {
			return code
		}
	}
	if code, ok := kindCode(semantic.Classify(err)); ok {
		return code
	}
	return exitFailure
}

func kindCode(kind error) (int, bool) {
	switch kind {
	case semantic.ErrInvalid:
		return exitUsage, true
	case semantic.ErrNotSupported:
		return exitNotSupported, true
	case semantic.ErrNotExist:
		return exitNotExist, true
	case semantic.ErrBusy:
		return exitBusy, true
	case nil:
		return 0, false
	}
	return exitFailure, true
}

// logger builds the --log-level logger; nil when logging is off.
func (c *cli) logger() (hclog.Logger, error) {
	switch strings.ToLower(c.g.logLevel) {
	case "", "off", "none":
		return nil, nil
	}
	lvl := hclog.LevelFromString(c.g.logLevel)
	if lvl == hclog.NoLevel {
		return nil, usagef("--log-level %q: want off, error, warn, info, debug or trace", c.g.logLevel)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "cgsem", Level: lvl, Output: c.stderr}), nil
}

// open opens the driver --driver (or CGSEM_DRIVER) names, or the one
// auto-selection picks.
func (c *cli) open() (semantic.Driver, error) {
	log, err := c.logger()
	if err != nil {
		return nil, err
	}
	opts := semantic.Options{Root: c.g.root, Logger: log, AllowApproximate: c.g.approximate, Settings: c.g.settings}
	name := c.g.driver
	if name != "" {
		// Forced: no probe runs (a probe may cost a D-Bus round trip).
		if !slices.Contains(c.reg.Drivers(), name) {
			_, err := c.reg.Open(name, opts)
			return nil, &usageError{msg: message(err)}
		}
	} else {
		sel := c.selection()
		if sel.Picked == "" {
			return nil, &semantic.Error{Op: "select driver", Kind: semantic.ErrNotSupported,
				Err: fmt.Errorf("%w; force one with --driver:\n%s", registry.ErrNoDriver, strings.TrimRight(formatVerdicts(sel), "\n"))}
		}
		name = sel.Picked
	}
	if log != nil {
		log.Debug("driver selected", "driver", name, "forced", c.g.driver != "", "root", c.g.root)
	}
	return c.reg.Open(name, opts)
}

// selection is the registry's verdicts with the pick decided by this
// invocation's --driver and environment, not the process environment the
// registry would read.
func (c *cli) selection() registry.Selection {
	sel := c.reg.Probe()
	sel.Picked, sel.Forced = "", false
	if c.g.driver != "" {
		sel.Picked, sel.Forced = c.g.driver, true
		return sel
	}
	for _, v := range sel.Verdicts {
		if v.OK {
			sel.Picked = v.Name
			break
		}
	}
	return sel
}

// interruptible returns ctx cancelled by SIGINT or SIGTERM, with the
// signal as its cause, and the function that stops listening.
func (c *cli) interruptible(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	sigs := make(chan os.Signal, 1)
	c.notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			cancel(&interrupted{sig: s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		c.stopNotify(sigs)
		cancel(nil)
	}
}

// withCause returns err, or the interruption that cancelled ctx when err
// is only the cancellation.
func withCause(ctx context.Context, err error) error {
	if err == nil || !errors.Is(err, context.Canceled) {
		return err
	}
	var intr *interrupted
	if errors.As(context.Cause(ctx), &intr) {
		return intr
	}
	return err
}
