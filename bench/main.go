// Command bench measures cgsem against the raw-syscall floor,
// github.com/opencontainers/cgroups and github.com/containerd/cgroups/v3
// on this machine, in one run, and writes the medians and their ratios to
// RESULTS.md. It is a module of its own so that the library never depends
// on the peers.
//
// Run it as root from this directory (make bench does):
//
//	go run .                      # everything, about 2 minutes here
//	go run . -only v1,v2 -factor 0.2
//
// Every group it makes lives below one directory named cgsem-bench-PID-RAND
// beneath this process's own cgroup in each hierarchy (read from
// /proc/self/cgroup); that tree is removed at the end, also after a
// failure or SIGINT/SIGTERM, and a leak check then looks for any
// cgsem-bench-* directory left there. The only processes it moves are the
// sleepers it starts itself.
//
// Budgets from the issues are reported, not asserted: a row that misses
// its budget is marked OVER in the table and listed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench is what every workload gets: where to make groups, how long to
// run, and the sleepers it may move around.
type bench struct {
	h    *host
	root *benchRoot
	// factor scales iteration counts (1 is the default run).
	factor float64
	// mainDir is the cgsem module's directory (for the binary size
	// workload's replace directive).
	mainDir string
	out     io.Writer

	mu       sync.Mutex
	sleepers []*exec.Cmd
}

// sleeper starts a child that sleeps until killed and moves it into the
// run's root in every v1 hierarchy, so that workloads can move it
// between groups they made and back. It dies with this process.
func (b *bench) sleeper(ctx context.Context) (int, error) {
	cmd := exec.Command("sleep", "1000000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	b.sleepers = append(b.sleepers, cmd)
	b.mu.Unlock()
	pid := cmd.Process.Pid
	for _, k := range b.h.keys() {
		if err := writeFile(filepath.Join(b.root.v1[k], "cgroup.procs"), fmt.Sprint(pid)); err != nil {
			return 0, err
		}
	}
	return pid, ctx.Err()
}

// stopSleepers kills and reaps every sleeper.
func (b *bench) stopSleepers() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.sleepers {
		c.Process.Kill()
		c.Wait()
	}
	b.sleepers = nil
}

// progress prints a finished section at once, so a long run shows its
// figures as it goes.
func (b *bench) progress(s section) {
	fmt.Fprint(b.out, render([]section{s}))
}

// workload is one part of the run.
type workload struct {
	name string
	// root: needs root and cgroups (everything but compile, fake and sizes).
	root bool
	run  func(ctx context.Context, b *bench) []section
}

func workloads() []workload {
	return []workload{
		{"v1", true, v1Workloads},
		{"v2", true, v2Workloads},
		{"scale", true, scaleWorkloads},
		{"systemd", true, systemdWorkloads},
		{"compile", false, compileWorkloads},
		{"fake", false, fakeWorkloads},
		{"sizes", false, sizeWorkloads},
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	out := fl.String("out", "RESULTS.md", "file to write the results to (\"\" for none)")
	factor := fl.Float64("factor", 1, "scale every iteration count by this (0.1 for a quick look)")
	only := fl.String("only", "", "comma-separated workloads to run (default all): "+strings.Join(names(), ","))
	if err := fl.Parse(args); err != nil {
		return 2
	}
	selected, err := pick(*only)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	b := &bench{factor: *factor, out: stdout}
	if b.mainDir, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	needRoot := slices.ContainsFunc(selected, func(w workload) bool { return w.root })
	if needRoot {
		if os.Geteuid() != 0 {
			fmt.Fprintln(stderr, "bench: the cgroup workloads need root; run as root, or pick -only compile,fake,sizes")
			return 2
		}
		if b.h, err = loadHost(); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		if b.root, err = makeRoot(b.h); err != nil {
			fmt.Fprintln(stderr, "bench: make the run's root:", err)
			return 1
		}
	}
	code := 0
	cleanup := func() {
		b.stopSleepers()
		if b.root == nil {
			return
		}
		// A group whose last process was just killed can stay busy for a
		// moment: try again before calling it a leak.
		var err error
		for try := range 5 {
			if err = b.root.remove(killChild); err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench: cleanup:", err)
			code = 1
		}
		if l := leaks(b.h); len(l) > 0 {
			fmt.Fprintln(stderr, "bench: LEAK: left behind:", strings.Join(l, " "))
			code = 1
		} else {
			fmt.Fprintln(stdout, "leak check: no cgsem-bench-* group left below this process's cgroups")
		}
	}
	started := time.Now()
	host := machine(started)
	fmt.Fprint(stdout, host.String()+"\n")
	var secs []section
	func() {
		defer cleanup()
		for _, w := range selected {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(stdout, "## %s\n\n", w.name)
			secs = append(secs, w.run(ctx, b)...)
		}
	}()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted; groups removed, results not written")
		return 130
	}
	over := overBudget(secs)
	summary := summaryText(over)
	fmt.Fprintln(stdout, summary)
	if *out != "" && code == 0 {
		doc := results(host, time.Since(started), args, secs, summary)
		if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprintln(stdout, "wrote", *out)
	}
	return code
}

func names() []string {
	var ns []string
	for _, w := range workloads() {
		ns = append(ns, w.name)
	}
	return ns
}

// pick returns the workloads named in a comma-separated list, in run
// order; "" is all of them.
func pick(list string) ([]workload, error) {
	all := workloads()
	if list == "" {
		return all, nil
	}
	want := strings.Split(list, ",")
	for _, n := range want {
		if !slices.Contains(names(), n) {
			return nil, fmt.Errorf("unknown workload %q (have %s)", n, strings.Join(names(), ", "))
		}
	}
	var out []workload
	for _, w := range all {
		if slices.Contains(want, w.name) {
			out = append(out, w)
		}
	}
	return out, nil
}

func summaryText(over []string) string {
	if len(over) == 0 {
		return "Every budget is met."
	}
	return "Over budget:\n- " + strings.Join(over, "\n- ")
}
