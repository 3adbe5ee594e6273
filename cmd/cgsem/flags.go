package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are printed once, by cli.fail, with a pointer to --help
	// instead of the whole flag list.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses fs's flags out of args and returns the positional
// arguments. With interspersed, flags may come before, between or after
// the positional arguments (as in "cgsem show web --json"); without, the
// first positional argument ends the flags (run's command line). "--"
// always ends the flags.
func parseArgs(fs *flag.FlagSet, args []string, interspersed bool) ([]string, error) {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if !interspersed {
				positional = append(positional, args[i:]...)
				break
			}
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		// A flag that takes a value takes the next argument, whatever it
		// looks like, as the flag package itself does.
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) || i+1 == len(args) {
			continue
		}
		i++
		flags = append(flags, args[i])
	}
	if err := fs.Parse(flags); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, &usageError{msg: err.Error()}
	}
	return positional, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// printFlags lists the named flags of fs, in the given order, aligned.
func printFlags(w io.Writer, fs *flag.FlagSet, names []string) {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			continue
		}
		arg, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if len(f.Name) == 1 {
			left = "-" + f.Name
		}
		if arg != "" && !isBoolFlag(f) {
			left += " " + arg
		}
		width = max(width, len(left))
		rows = append(rows, row{left, usage})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.usage)
	}
}
