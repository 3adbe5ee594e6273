package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/cgsem/cgsem/semantic"
)

// command is one subcommand of the tool.
type command struct {
	name     string
	synopsis string // the arguments after the name
	summary  string // one line for the command list
	detail   string // a paragraph for the command's --help
	// flags registers the command's own flags (beyond the global ones)
	// and returns their names, in help order.
	flags func(fs *flag.FlagSet, o *cmdOptions) []string
	// resources says whether the command takes the resource flags.
	resources bool
	// interspersed allows flags after positional arguments.
	interspersed bool
	exec         func(ctx context.Context, c *cli, o *cmdOptions, args []string) error
}

// cmdOptions are the parsed flags of one command.
type cmdOptions struct {
	res       resourceFlags
	path      string
	rm        bool
	kill      bool
	recursive bool
	thread    bool
}

var commands = []*command{
	{
		name: "drivers", synopsis: "", summary: "list the registered drivers and which one auto-selection picks",
		detail:       "Runs every registered driver's probe and prints its verdict, then which driver\nauto-selection picks and why (or which one --driver / CGSEM_DRIVER forces).",
		interspersed: true, exec: cmdDrivers,
	},
	{
		name: "create", synopsis: "PATH [resource flags]", summary: "create a group (and the missing levels above it)",
		detail:    "Creates the group at PATH with the given resources. Missing levels above it are\ncreated with no settings of their own. Fails (exit 1) if the group exists.",
		resources: true, interspersed: true, exec: cmdCreate,
	},
	{
		name: "set", synopsis: "PATH resource flags", summary: "change a group's resources, all or nothing",
		detail:    "Applies the given resources to an existing group. Fields not given are left as\nthey are. If any change fails the group is restored to what it was.",
		resources: true, interspersed: true, exec: cmdSet,
	},
	{
		name: "show", synopsis: "PATH", summary: "print a group's settings, processes and stats",
		detail:       "Prints the settings the group has (read back from the backend), the processes\nin the group itself, and usage figures. Absent figures are left out.",
		interspersed: true, exec: cmdShow,
	},
	{
		name: "ls", synopsis: "[PATH]", summary: "list the groups below PATH (default: the root)",
		detail: "Lists the groups directly below PATH, or below the driver's root, one path a\nline; --recursive lists every descendant, parents before children.",
		flags: func(fs *flag.FlagSet, o *cmdOptions) []string {
			fs.BoolVar(&o.recursive, "recursive", false, "list every descendant, not only children")
			fs.BoolVar(&o.recursive, "r", false, "short for --recursive")
			return []string{"recursive", "r"}
		},
		interspersed: true, exec: cmdLs,
	},
	{
		name: "run", synopsis: "--path PATH [--rm] [resource flags] [--] CMD [ARGS...]", summary: "run a command inside a group",
		detail: "Creates the group as needed (or applies the resource flags to an existing one),\n" +
			"starts CMD inside it before CMD runs its first instruction, forwards SIGINT and\n" +
			"SIGTERM to it, waits, and exits with CMD's exit status, or 128+N if signal N\n" +
			"killed it. Flags end at CMD: everything after it is CMD's. With --rm, the group\n" +
			"(and the levels above it that run created) is deleted afterwards, killing what\n" +
			"is left in it, also when CMD fails to start; a group that existed is kept.\n" +
			"Before CMD starts, the exit codes are cgsem's; 127 means CMD was not found,\n" +
			"126 that it could not be executed.",
		flags: func(fs *flag.FlagSet, o *cmdOptions) []string {
			fs.StringVar(&o.path, "path", "", "the group `PATH` to run in (required)")
			fs.BoolVar(&o.rm, "rm", false, "delete the group afterwards if run created it")
			return []string{"path", "rm"}
		},
		resources: true, exec: cmdRun,
	},
	{
		name: "attach", synopsis: "PATH PID...", summary: "move processes into a group",
		detail: "Moves each process (all its threads) into the group, in order; stops at the\nfirst failure. With --thread the ids are thread ids and only those threads move.",
		flags: func(fs *flag.FlagSet, o *cmdOptions) []string {
			fs.BoolVar(&o.thread, "thread", false, "move single threads (TIDs) instead of whole processes")
			return []string{"thread"}
		},
		interspersed: true, exec: cmdAttach,
	},
	{
		name: "freeze", synopsis: "PATH", summary: "stop every process in a group",
		detail:       "Freezes the group and returns once every process in it is frozen.",
		interspersed: true, exec: groupOp(func(ctx context.Context, g semantic.Group) error { return g.Freeze(ctx) }),
	},
	{
		name: "thaw", synopsis: "PATH", summary: "resume a frozen group",
		detail:       "Thaws the group and returns once it runs again.",
		interspersed: true, exec: groupOp(func(ctx context.Context, g semantic.Group) error { return g.Thaw(ctx) }),
	},
	{
		name: "kill", synopsis: "PATH", summary: "SIGKILL every process in a group and its descendants",
		detail:       "Kills every process in the group and its descendants and returns once the\ngroup is empty.",
		interspersed: true, exec: groupOp(func(ctx context.Context, g semantic.Group) error { return g.Kill(ctx) }),
	},
	{
		name: "rm", synopsis: "PATH [--kill] [--recursive]", summary: "delete a group",
		detail: "Deletes the group. A group with processes is refused (exit 5) unless --kill;\none with child groups unless --recursive.",
		flags: func(fs *flag.FlagSet, o *cmdOptions) []string {
			fs.BoolVar(&o.kill, "kill", false, "kill the group's processes (and its descendants') first")
			fs.BoolVar(&o.recursive, "recursive", false, "delete descendant groups first")
			return []string{"kill", "recursive"}
		},
		interspersed: true, exec: cmdRm,
	},
	{
		name: "plan", synopsis: "PATH resource flags", summary: "print what set would write, changing nothing",
		detail:    "Prints, in order, the file writes (or D-Bus properties) that set with the same\nflags would make on the existing group at PATH, without making them.",
		resources: true, interspersed: true, exec: cmdPlan,
	},
	{
		name: "events", synopsis: "PATH", summary: "print a group's events until interrupted",
		detail:       "Prints one line per event (oom, oom_kill, populated, empty, frozen, thawed)\nuntil interrupted; SIGINT or SIGTERM ends it with exit code 0.",
		interspersed: true, exec: cmdEvents,
	},
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// flagSet builds the command's flag set: its own flags, the resource
// flags if it takes them, and the global flags.
func (cmd *command) flagSet(c *cli, o *cmdOptions) (*flag.FlagSet, []string) {
	fs := newFlagSet("cgsem " + cmd.name)
	var own []string
	if cmd.flags != nil {
		own = cmd.flags(fs, o)
	}
	if cmd.resources {
		o.res.register(fs)
	}
	c.g.register(fs)
	return fs, own
}

// run parses the command's arguments and executes it.
func (cmd *command) run(ctx context.Context, c *cli, args []string) error {
	var o cmdOptions
	fs, _ := cmd.flagSet(c, &o)
	pos, err := parseArgs(fs, args, cmd.interspersed)
	if err != nil {
		return err
	}
	return cmd.exec(ctx, c, &o, pos)
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "Usage: cgsem [global flags] COMMAND [ARGS]\n\n"+
		"Manage Linux control groups by what they mean: one interface over cgroup v1,\n"+
		"cgroup v2 and systemd. Run 'cgsem COMMAND --help' for a command's flags.\n\nCommands:\n")
	width := 0
	for _, cmd := range commands {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	fmt.Fprint(w, "\nGlobal flags (also accepted after the command):\n")
	fs := newFlagSet("cgsem")
	g := c.g
	g.register(fs)
	printFlags(w, fs, globalFlagNames)
	fmt.Fprint(w, "\nExit codes: 0 ok, 1 failure, 2 invalid input or usage, 3 not supported by\n"+
		"this driver, 4 no such group, 5 busy; run exits with its command's status.\n")
}

func (c *cli) commandUsage(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: cgsem %s %s\n\n%s\n", cmd.name, cmd.synopsis, cmd.detail)
	var o cmdOptions
	g := c.g
	tmp := &cli{g: g}
	fs, own := cmd.flagSet(tmp, &o)
	if len(own) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs, own)
	}
	if cmd.resources {
		fmt.Fprint(w, "\nResource flags (a flag not given leaves that setting as it is):\n")
		printFlags(w, fs, resourceFlagNames)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, fs, globalFlagNames)
}

// onePath checks that args is exactly one group path and parses it.
func onePath(args []string) (semantic.Path, error) {
	switch len(args) {
	case 0:
		return semantic.Path{}, usagef("missing PATH")
	case 1:
		return parsePath(args[0])
	}
	return semantic.Path{}, usagef("want one PATH, got %d arguments: %q", len(args), args)
}

func parsePath(s string) (semantic.Path, error) {
	p, err := semantic.ParsePath(s)
	if err != nil {
		return semantic.Path{}, &usageError{msg: message(err)}
	}
	return p, nil
}

// withGroup opens the driver and the group at path and runs fn on them,
// cancelled by SIGINT or SIGTERM.
func (c *cli) withGroup(ctx context.Context, path semantic.Path, fn func(ctx context.Context, d semantic.Driver, g semantic.Group) error) error {
	d, err := c.open()
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, stop := c.interruptible(ctx)
	defer stop()
	g, err := d.Open(ctx, path)
	if err == nil {
		err = fn(ctx, d, g)
	}
	return withCause(ctx, err)
}

func groupOp(op func(ctx context.Context, g semantic.Group) error) func(context.Context, *cli, *cmdOptions, []string) error {
	return func(ctx context.Context, c *cli, _ *cmdOptions, args []string) error {
		p, err := onePath(args)
		if err != nil {
			return err
		}
		return c.withGroup(ctx, p, func(ctx context.Context, _ semantic.Driver, g semantic.Group) error { return op(ctx, g) })
	}
}

func cmdCreate(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	res, err := o.res.resources()
	if err != nil {
		return err
	}
	d, err := c.open()
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, stop := c.interruptible(ctx)
	defer stop()
	_, err = d.Create(ctx, p, res)
	return withCause(ctx, err)
}

// requiredResources is the resource flags of set and plan: at least one.
func requiredResources(o *cmdOptions) (*semantic.Resources, error) {
	res, err := o.res.resources()
	if err == nil && res == nil {
		err = usagef("no resource flags given: nothing to change")
	}
	return res, err
}

func cmdSet(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	res, err := requiredResources(o)
	if err != nil {
		return err
	}
	return c.withGroup(ctx, p, func(ctx context.Context, _ semantic.Driver, g semantic.Group) error {
		return g.Apply(ctx, res)
	})
}

func cmdPlan(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	res, err := requiredResources(o)
	if err != nil {
		return err
	}
	return c.withGroup(ctx, p, func(ctx context.Context, d semantic.Driver, g semantic.Group) error {
		plan, err := g.Plan(ctx, res)
		if err != nil {
			return err
		}
		return c.printPlan(d.Name(), p, plan)
	})
}

func cmdShow(ctx context.Context, c *cli, _ *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	return c.withGroup(ctx, p, func(ctx context.Context, d semantic.Driver, g semantic.Group) error {
		res, err := g.Resources(ctx)
		if err != nil {
			return err
		}
		pids, err := g.Processes(ctx)
		if err != nil {
			return err
		}
		stats, err := g.Stats(ctx)
		if err != nil {
			return err
		}
		return c.printShow(showOutput{Path: p, Driver: d.Name(), Processes: pids, Resources: res, Stats: stats})
	})
}

func cmdLs(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	p := semantic.Root
	switch len(args) {
	case 0:
	case 1:
		var err error
		if p, err = parsePath(args[0]); err != nil {
			return err
		}
	default:
		return usagef("want at most one PATH, got %d arguments: %q", len(args), args)
	}
	d, err := c.open()
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, stop := c.interruptible(ctx)
	defer stop()
	groups, err := listGroups(ctx, d, p, o.recursive)
	if err != nil {
		return withCause(ctx, err)
	}
	return c.printLs(d.Name(), p, groups)
}

// listGroups lists below p, depth first with parents before children.
func listGroups(ctx context.Context, d semantic.Driver, p semantic.Path, recursive bool) ([]semantic.Path, error) {
	children, err := d.Children(ctx, p)
	if err != nil || !recursive {
		return children, err
	}
	out := []semantic.Path{}
	for _, ch := range children {
		out = append(out, ch)
		below, err := listGroups(ctx, d, ch, true)
		if err != nil {
			// A child deleted while we walk is not an error of the listing.
			if errors.Is(err, semantic.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, below...)
	}
	return out, nil
}

func cmdAttach(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	if len(args) < 2 {
		return usagef("want PATH and at least one PID")
	}
	p, err := parsePath(args[0])
	if err != nil {
		return err
	}
	var ids []int
	for _, a := range args[1:] {
		id, err := strconv.Atoi(a)
		if err != nil || id <= 0 {
			return usagef("%q is not a process id: want a positive whole number", a)
		}
		ids = append(ids, id)
	}
	return c.withGroup(ctx, p, func(ctx context.Context, _ semantic.Driver, g semantic.Group) error {
		add := g.AddProcess
		if o.thread {
			add = g.AddThread
		}
		// The driver's error names the id that failed.
		for _, id := range ids {
			if err := add(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func cmdRm(ctx context.Context, c *cli, o *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	return c.withGroup(ctx, p, func(ctx context.Context, _ semantic.Driver, g semantic.Group) error {
		return g.Delete(ctx, &semantic.DeleteOptions{Kill: o.kill, Recursive: o.recursive})
	})
}

func cmdEvents(ctx context.Context, c *cli, _ *cmdOptions, args []string) error {
	p, err := onePath(args)
	if err != nil {
		return err
	}
	err = c.withGroup(ctx, p, func(ctx context.Context, _ semantic.Driver, g semantic.Group) error {
		events, err := g.Events(ctx)
		if err != nil {
			return err
		}
		for ev := range events {
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
		return nil
	})
	// Interrupting is how events ends.
	var intr *interrupted
	if errors.As(err, &intr) {
		return nil
	}
	return err
}

func cmdDrivers(_ context.Context, c *cli, _ *cmdOptions, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments, got %q", args)
	}
	return c.printDrivers(c.selection())
}
