package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// The end-to-end tests run the real cgsem binary, as a user would, against
// the real v1 driver on this host. Each test gets a fresh scratch group
// beneath the test process's own cgroup in every v1 hierarchy and passes
// --root self/<scratch>; cgsem inherits the test's cgroups, so "self"
// means the same place to it. The tests check the kernel's own files and
// the processes themselves, not only what cgsem prints.

// e2eControllers are the v1 controllers these tests exercise; the scratch
// is made in every writable v1 hierarchy, since the driver uses them all.
var e2eControllers = []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer"}

// e2eTimeout bounds one cgsem invocation and every wait for an effect: a
// hang fails the test instead of stalling the run.
const e2eTimeout = 2 * time.Minute

// buildCLI builds the cgsem binary into a temporary directory, with the
// race detector when the test binary has it, so the CLI and the driver
// run under -race as separate processes too.
func buildCLI(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "cgsem")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// v1Hier is one v1 hierarchy as the driver sees it from the scratch.
type v1Hier struct {
	key         string // as /proc/PID/cgroup names it: "memory", "cpu,cpuacct", "name=systemd"
	controllers []string
	cgroup      string // the scratch's cgroup path in it, as /proc/PID/cgroup shows paths
	dir         string // the scratch's directory
}

// v1CLI runs the cgsem binary with --driver v1 --root self/<scratch>.
type v1CLI struct {
	t       *testing.T
	bin     string
	scratch *testenv.Scratch
	hiers   []v1Hier
}

// newV1CLI makes a scratch in every writable v1 hierarchy the driver can
// use. Its cleanup fails the test if a process is left anywhere in the
// scratch; testenv's does the same for groups, then removes the scratch.
func newV1CLI(t *testing.T, bin string) *v1CLI {
	t.Helper()
	host := testenv.LoadHost(t)
	type found struct {
		h        mountinfo.Hierarchy
		selfKey  string
		ownGroup string
	}
	var use []found
	for _, h := range host.Hierarchies {
		if h.Version != 1 || h.Mounts[len(h.Mounts)-1].ReadOnly() {
			continue
		}
		own, err := mountinfo.Lookup(host.Self, h)
		if err != nil {
			continue // the driver skips it too
		}
		selfKey := "name=" + h.Name
		if len(h.Controllers) > 0 {
			selfKey = h.Controllers[0]
		}
		use = append(use, found{h: h, selfKey: selfKey, ownGroup: own})
	}
	keys := make([]string, len(use))
	for i, f := range use {
		keys[i] = f.selfKey
	}
	s := testenv.NewScratch(t, keys...)
	c := &v1CLI{t: t, bin: bin, scratch: s}
	for _, f := range use {
		c.hiers = append(c.hiers, v1Hier{key: f.h.Key(), controllers: f.h.Controllers,
			cgroup: path.Join(f.ownGroup, s.Name), dir: s.Dirs[f.selfKey]})
	}
	t.Cleanup(c.assertNoProcesses)
	return c
}

// assertNoProcesses fails the test if any group in the scratch still
// holds a process (testenv's cleanup then kills it).
func (c *v1CLI) assertNoProcesses() {
	for _, h := range c.hiers {
		below, err := testenv.Leaks(h.dir)
		if err != nil {
			c.t.Errorf("walk %s: %v", h.dir, err)
		}
		for _, d := range append([]string{"."}, below...) {
			if pids := testenv.Procs(filepath.Join(h.dir, d)); len(pids) > 0 {
				c.t.Errorf("processes %v left in %s group %s of the scratch", pids, h.key, d)
			}
		}
	}
}

// hier returns the hierarchy that has controller.
func (c *v1CLI) hier(controller string) v1Hier {
	c.t.Helper()
	for _, h := range c.hiers {
		if slices.Contains(h.controllers, controller) {
			return h
		}
	}
	c.t.Fatalf("no v1 hierarchy has %s", controller)
	return v1Hier{}
}

// dir is group's directory in the hierarchy of controller.
func (c *v1CLI) dir(controller, group string) string {
	return filepath.Join(c.hier(controller).dir, group)
}

// read returns a cgroup file of group, trimmed; the test fails if it
// cannot be read.
func (c *v1CLI) read(controller, group, file string) string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir(controller, group), file))
	require.NoError(c.t, err)
	return strings.TrimSpace(string(b))
}

// exists reports whether group has a directory in every hierarchy; it
// fails the test if it exists in only some of them.
func (c *v1CLI) exists(group string) bool {
	c.t.Helper()
	var in, out []string
	for _, h := range c.hiers {
		if _, err := os.Stat(filepath.Join(h.dir, group)); err == nil {
			in = append(in, h.key)
		} else {
			out = append(out, h.key)
		}
	}
	if len(in) > 0 && len(out) > 0 {
		c.t.Errorf("group %s exists in %v but not in %v", group, in, out)
	}
	return len(out) == 0
}

// settingFiles are the v1 files that hold a group's settings (and its
// membership); comparing them before and after shows what a command wrote.
var settingFiles = []string{
	"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness",
	"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus", "cpuset.mems",
	"blkio.weight", "blkio.bfq.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device",
	"pids.max", "devices.list", "freezer.state", "cgroup.procs", "notify_on_release",
}

// settings reads every setting file group has, keyed "hierarchy:file".
func (c *v1CLI) settings(group string) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, h := range c.hiers {
		for _, f := range settingFiles {
			b, err := os.ReadFile(filepath.Join(h.dir, group, f))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			require.NoError(c.t, err)
			out[h.key+":"+f] = string(b)
		}
	}
	require.NotEmpty(c.t, out, "group %s has no setting files", group)
	return out
}

// setting is the settings key of file in the hierarchy of controller.
func (c *v1CLI) setting(controller, file string) string { return c.hier(controller).key + ":" + file }

// command builds a cgsem invocation on the scratch; later global flags
// (a second --root) override these.
func (c *v1CLI) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--driver", "v1", "--root", "self/" + c.scratch.Name}, args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	// The environment must not choose for the flags.
	cmd.Env = append(os.Environ(), registry.EnvDriver+"=", EnvRoot+"=")
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs cgsem to completion.
func (c *v1CLI) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("cgsem %q did not finish in %v; stderr: %s", args, e2eTimeout, errb.String())
	}
	if cmd.ProcessState == nil {
		c.t.Fatalf("cgsem %q: %v", args, err)
	}
	code := cmd.ProcessState.ExitCode()
	if code < 0 {
		c.t.Fatalf("cgsem %q died: %v; stderr: %s", args, cmd.ProcessState, errb.String())
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// must runs cgsem and fails the test unless it exits 0.
func (c *v1CLI) must(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, 0, r.code, "cgsem %q: stderr: %s", args, r.stderr)
	return r.stdout
}

// show runs show --json and decodes it.
func (c *v1CLI) show(group string) showOutput {
	c.t.Helper()
	var out showOutput
	s := c.must("show", group, "--json")
	require.NoError(c.t, json.Unmarshal([]byte(s), &out), "show --json: %s", s)
	return out
}

// assertInGroup checks /proc/PID/cgroup (or such a file's text) names
// group in every hierarchy the driver uses.
func (c *v1CLI) assertInGroup(procCgroup, group string) {
	c.t.Helper()
	entries, err := mountinfo.ParseCgroup(strings.NewReader(procCgroup))
	require.NoError(c.t, err, "%q", procCgroup)
	for _, h := range c.hiers {
		want := path.Join(h.cgroup, group)
		got := ""
		for _, e := range entries {
			if !e.IsV2() && e.Key() == h.key {
				got = e.Path
			}
		}
		assert.Equal(c.t, want, got, "cgroup of hierarchy %s", h.key)
	}
}

// waitFor polls cond until it holds or e2eTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proc is a process the test started itself. Its cleanup fails the test
// if it is still running (each test ends what it starts), then ends it.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		if !t.Failed() {
			t.Errorf("process %d (%s) left running", cmd.Process.Pid, name)
		}
		_ = cmd.Process.Kill()
		// A frozen process cannot die until the scratch's cleanup thaws it.
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to end and returns how it ended.
func (p *proc) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState
	case <-time.After(e2eTimeout):
		t.Fatalf("process %d did not end", p.pid())
		return nil
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// procStat returns a process's state letter and CPU time in clock ticks
// from /proc/PID/stat.
func procStat(t *testing.T, pid int) (state string, ticks uint64) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	// The command name may hold spaces; the fields start after its ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	require.NoError(t, errors.Join(err1, err2))
	return f[0], utime + stime
}

func lines(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
}

func signaled(ps *os.ProcessState) (syscall.Signal, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// memoryHog is a shell command line that needs far more than 16MiB: tail
// keeps its whole input, which has no line break, in memory.
const memoryHog = "head -c 1073741824 /dev/zero | tail"

// hogLimits are the flags that cap a group at 16MiB without swap (when
// the host accounts swap at all).
func (c *v1CLI) hogLimits() []string {
	flags := []string{"--memory", "16MiB"}
	if _, err := os.Stat(filepath.Join(c.hier("memory").dir, "memory.memsw.limit_in_bytes")); err == nil {
		flags = append(flags, "--swap", "0")
	}
	return flags
}

func TestV1EndToEnd(t *testing.T) {
	testenv.RequireV1(t, e2eControllers...)
	bin := buildCLI(t)

	t.Run("Configure", func(t *testing.T) { testE2EConfigure(t, newV1CLI(t, bin)) })
	t.Run("Run", func(t *testing.T) { testE2ERun(t, bin) })
	t.Run("RunForwardsSignals", func(t *testing.T) { testE2ERunSignals(t, newV1CLI(t, bin)) })
	t.Run("OOMKill", func(t *testing.T) { testE2EOOM(t, newV1CLI(t, bin)) })
	t.Run("PidsLimit", func(t *testing.T) { testE2EPids(t, newV1CLI(t, bin)) })
	t.Run("Devices", func(t *testing.T) { testE2EDevices(t, newV1CLI(t, bin)) })
	t.Run("AttachFreezeThawKill", func(t *testing.T) { testE2EFreeze(t, newV1CLI(t, bin)) })
	t.Run("RmKillRecursive", func(t *testing.T) { testE2ERm(t, newV1CLI(t, bin)) })
	t.Run("Events", func(t *testing.T) { testE2EEvents(t, newV1CLI(t, bin)) })
	t.Run("ExitCodes", func(t *testing.T) { testE2EExitCodes(t, bin) })
}

func testE2EConfigure(t *testing.T, c *v1CLI) {
	cpu := firstCPU(t, c)
	c.must("create", "web/app", "--memory", "64MiB", "--pids", "50", "--cpu-weight", "200", "--cpus", "0.5",
		"--cpuset", cpu.String(), "--devices", "deny", "--allow-device", "/dev/null", "--allow-device", "c 1:5 r")

	// What show reads back is what was asked for...
	shown := c.show("web/app")
	assert.Equal(t, "v1", shown.Driver)
	assert.Equal(t, "web/app", shown.Path.String())
	assert.Empty(t, shown.Processes)
	res := shown.Resources
	require.NotNil(t, res)
	require.NotNil(t, res.Memory)
	require.NotNil(t, res.Memory.Max)
	assert.Equal(t, semantic.Bytes(64<<20), *res.Memory.Max)
	require.NotNil(t, res.Pids)
	require.NotNil(t, res.Pids.Max)
	assert.Equal(t, semantic.Count(50), *res.Pids.Max)
	require.NotNil(t, res.CPU)
	require.NotNil(t, res.CPU.Weight)
	assert.Equal(t, uint64(200), *res.CPU.Weight)
	require.NotNil(t, res.CPU.Max)
	assert.Equal(t, 0.5, res.CPU.Max.CPUs)
	assert.Equal(t, cpu, res.CPU.Cpus)
	require.NotNil(t, res.Devices)
	assert.Equal(t, semantic.DenyByDefault, res.Devices.Default)
	assert.ElementsMatch(t, []string{"allow c 1:3 rwm", "allow c 1:5 r"}, ruleStrings(res.Devices.Rules))

	// ...and what the kernel's files hold.
	assert.Equal(t, "67108864", c.read("memory", "web/app", "memory.limit_in_bytes"))
	assert.Equal(t, "50", c.read("pids", "web/app", "pids.max"))
	assert.Equal(t, strconv.FormatUint(semantic.WeightToShares(200), 10), c.read("cpu", "web/app", "cpu.shares"))
	assert.Equal(t, "50000", c.read("cpu", "web/app", "cpu.cfs_quota_us"))
	assert.Equal(t, "100000", c.read("cpu", "web/app", "cpu.cfs_period_us"))
	assert.Equal(t, cpu.String(), c.read("cpuset", "web/app", "cpuset.cpus"))
	assert.ElementsMatch(t, []string{"c 1:3 rwm", "c 1:5 r"}, lines(c.read("devices", "web/app", "devices.list")))
	// The level create made above the group carries no settings of its own.
	assert.Equal(t, "max", c.read("pids", "web", "pids.max"))
	assert.Equal(t, c.read("memory", ".", "memory.limit_in_bytes"), c.read("memory", "web", "memory.limit_in_bytes"))
	assert.Equal(t, "a *:* rwm", c.read("devices", "web", "devices.list"))

	t.Run("SetChangesOneField", func(t *testing.T) {
		before := c.settings("web/app")
		c.must("set", "web/app", "--pids", "20")
		after := c.settings("web/app")
		key := c.setting("pids", "pids.max")
		assert.Equal(t, "20\n", after[key])
		delete(before, key)
		delete(after, key)
		assert.Equal(t, before, after, "set --pids wrote nothing but pids.max")

		want := *res
		want.Pids = &semantic.Pids{Max: ptr(semantic.Count(20))}
		assert.Equal(t, &want, c.show("web/app").Resources)
	})

	t.Run("PlanChangesNothing", func(t *testing.T) {
		flags := []string{"--memory", "32MiB", "--pids", "10", "--cpu-weight", "300"}
		before := c.settings("web/app")
		out := c.must(append([]string{"plan", "web/app", "--json"}, flags...)...)
		assert.Equal(t, before, c.settings("web/app"), "plan wrote nothing")
		var plan planOutput
		require.NoError(t, json.Unmarshal([]byte(out), &plan), "plan --json: %s", out)
		assert.Equal(t, "v1", plan.Driver)
		writes := map[string]string{}
		for _, s := range plan.Steps {
			if s.Action == "write" {
				writes[s.Target] = s.Value
			}
		}
		assert.Equal(t, map[string]string{
			"memory.limit_in_bytes": "33554432",
			"pids.max":              "10",
			"cpu.shares":            strconv.FormatUint(semantic.WeightToShares(300), 10),
		}, writes)

		// What plan predicts is what set then does.
		c.must(append([]string{"set", "web/app"}, flags...)...)
		for _, s := range plan.Steps {
			assert.Equal(t, s.Value, c.readAnywhere("web/app", s.Target), "%s after set", s.Target)
		}
		// Now there is nothing left to change.
		assert.Equal(t, "nothing to change\n", c.must(append([]string{"plan", "web/app"}, flags...)...))
		assert.Contains(t, c.must("plan", "web/app", "--pids", "11"), "pids.max")
		assert.Equal(t, "10", c.read("pids", "web/app", "pids.max"))
	})

	t.Run("Ls", func(t *testing.T) {
		assert.Equal(t, "web\n", c.must("ls"))
		assert.Equal(t, "web\nweb/app\n", c.must("ls", "-r"))
		var ls lsOutput
		require.NoError(t, json.Unmarshal([]byte(c.must("ls", "web", "--json")), &ls))
		assert.Equal(t, []string{"web/app"}, pathStrings(ls.Groups))
	})

	t.Run("Rm", func(t *testing.T) {
		r := c.run("rm", "web")
		assert.Equal(t, exitBusy, r.code, "a group with children: stderr: %s", r.stderr)
		assert.True(t, c.exists("web/app"))
		c.must("rm", "web/app")
		assert.False(t, c.exists("web/app"))
		r = c.run("show", "web/app")
		assert.Equal(t, exitNotExist, r.code, "stderr: %s", r.stderr)
		c.must("rm", "web")
		assert.False(t, c.exists("web"))
		assert.Equal(t, "", c.must("ls"))
	})
}

// readAnywhere reads file of group in whichever hierarchy has it.
func (c *v1CLI) readAnywhere(group, file string) string {
	c.t.Helper()
	for _, h := range c.hiers {
		b, err := os.ReadFile(filepath.Join(h.dir, group, file))
		if err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	c.t.Errorf("no hierarchy has %s in %s", file, group)
	return ""
}

func firstCPU(t *testing.T, c *v1CLI) semantic.CPUSet {
	t.Helper()
	set, err := semantic.ParseCPUSet(c.read("cpuset", ".", "cpuset.cpus"))
	require.NoError(t, err)
	require.NotEmpty(t, set)
	return semantic.CPUSet{set[0]}
}

func ruleStrings(rules []semantic.DeviceRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

func pathStrings(ps []semantic.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func testE2ERun(t *testing.T, bin string) {
	cases := []struct {
		name   string
		setup  [][]string
		args   []string
		code   int
		exist  []string
		gone   []string
		stdout string
	}{
		{name: "exit status", args: []string{"--path", "job", "--", "sh", "-c", "exit 7"}, code: 7, exist: []string{"job"}},
		{name: "killed by SIGKILL", args: []string{"--path", "job", "--rm", "--", "sh", "-c", "kill -KILL $$"}, code: 128 + 9, gone: []string{"job"}},
		{name: "killed by SIGTERM", args: []string{"--path", "job", "--rm", "--", "sh", "-c", "kill -TERM $$"}, code: 128 + 15, gone: []string{"job"}},
		{name: "output passes through", args: []string{"--path", "job", "--rm", "echo", "hello"}, stdout: "hello\n", gone: []string{"job"}},
		{name: "rm removes the group and the levels run made", setup: [][]string{{"create", "keep"}},
			args: []string{"--path", "keep/x/y", "--rm", "true"}, exist: []string{"keep"}, gone: []string{"keep/x", "keep/x/y"}},
		{name: "rm after a failing command", args: []string{"--path", "a/b", "--rm", "--", "sh", "-c", "exit 4"}, code: 4, gone: []string{"a"}},
		{name: "rm keeps a group that existed", setup: [][]string{{"create", "job"}}, args: []string{"--path", "job", "--rm", "true"}, exist: []string{"job"}},
		{name: "command not found", args: []string{"--path", "job", "--rm", "cgsem-test-no-such-command"}, code: 127, gone: []string{"job"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newV1CLI(t, bin)
			for _, s := range tc.setup {
				c.must(s...)
			}
			r := c.run(append([]string{"run"}, tc.args...)...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			if tc.stdout != "" {
				assert.Equal(t, tc.stdout, r.stdout)
			}
			for _, g := range tc.exist {
				assert.True(t, c.exists(g), "group %s exists", g)
			}
			for _, g := range tc.gone {
				assert.False(t, c.exists(g), "group %s is gone", g)
			}
			removeAll(t, c)
		})
	}

	t.Run("first act sees the group", func(t *testing.T) {
		c := newV1CLI(t, bin)
		// cat's first act is reading its own cgroup file: it has been in
		// the group since before it ran, in every hierarchy.
		out := c.must("run", "--path", "jobs/build", "--rm", "--", "cat", "/proc/self/cgroup")
		c.assertInGroup(out, "jobs/build")
		assert.False(t, c.exists("jobs"))
	})
}

// removeAll deletes every group left in the scratch through cgsem.
func removeAll(t *testing.T, c *v1CLI) {
	t.Helper()
	for _, g := range lines(c.must("ls")) {
		c.must("rm", "--kill", "--recursive", g)
	}
}

func testE2ERunSignals(t *testing.T, c *v1CLI) {
	cases := []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
			defer cancel()
			cmd := c.command(ctx, "run", "--path", "sig", "--rm", "--", "sleep", "3600")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			require.NoError(t, cmd.Start())
			// Signal only once the command is in the group: before, cgsem
			// would answer the signal itself.
			waitFor(t, "sleep in the group", func() bool { return len(testenv.Procs(c.dir("freezer", "sig"))) > 0 })
			require.NoError(t, cmd.Process.Signal(tc.sig))
			err := cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "stderr: %s", errb.String())
			assert.Equal(t, 128+int(tc.sig), ee.ExitCode(), "stderr: %s", errb.String())
			assert.False(t, c.exists("sig"), "--rm removed the group")
		})
	}
}

func testE2EOOM(t *testing.T, c *v1CLI) {
	r := c.run(append(append([]string{"run", "--path", "hog"}, c.hogLimits()...), "--", "sh", "-c", memoryHog)...)
	assert.Equal(t, 128+9, r.code, "the hog is OOM-killed: stderr: %s", r.stderr)

	shown := c.show("hog")
	require.NotNil(t, shown.Stats)
	require.NotNil(t, shown.Stats.Memory)
	require.NotNil(t, shown.Stats.Memory.OOMKill, "v1 reports OOM kills")
	assert.GreaterOrEqual(t, *shown.Stats.Memory.OOMKill, uint64(1))
	assert.Contains(t, c.read("memory", "hog", "memory.oom_control"), "oom_kill "+strconv.FormatUint(*shown.Stats.Memory.OOMKill, 10))
	assert.Contains(t, c.must("show", "hog"), "memory.oom_kill")
	c.must("rm", "hog")
}

func testE2EPids(t *testing.T, c *v1CLI) {
	// The shell gives up at the first fork that fails; the sleepers it
	// did start stay in the group (their output goes nowhere, so that
	// they do not hold cgsem's pipes open).
	script := `n=0; while [ $n -lt 10 ]; do sleep 3600 >/dev/null 2>&1 & n=$((n+1)); done; echo started $n`
	r := c.run("run", "--path", "forks", "--pids", "4", "--", "sh", "-c", script)
	assert.NotEqual(t, 0, r.code)
	assert.NotContains(t, r.stdout, "started 10")
	assert.Contains(t, strings.ToLower(r.stderr), "fork")
	events := c.read("pids", "forks", "pids.events")
	n, err := strconv.Atoi(strings.TrimPrefix(events, "max "))
	require.NoError(t, err, "pids.events: %q", events)
	assert.GreaterOrEqual(t, n, 1, "the kernel refused a fork")

	// The sleepers are still there: rm refuses, rm --kill does it.
	assert.NotEmpty(t, c.show("forks").Processes)
	r = c.run("rm", "forks")
	assert.Equal(t, exitBusy, r.code, "stderr: %s", r.stderr)
	assert.True(t, c.exists("forks"))
	c.must("rm", "--kill", "forks")
	assert.False(t, c.exists("forks"))
}

func testE2EDevices(t *testing.T, c *v1CLI) {
	script := `echo x > /dev/null && echo null-written; head -c 1 /dev/null && echo null-read; head -c 1 /dev/zero || echo zero-refused`
	r := c.run("run", "--path", "dev", "--rm", "--devices", "deny", "--allow-device", "/dev/null", "--", "sh", "-c", script)
	assert.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Equal(t, "null-written\nnull-read\nzero-refused\n", r.stdout)
	assert.Contains(t, strings.ToLower(r.stderr), syscall.EPERM.Error(), "/dev/zero: EPERM")
	assert.False(t, c.exists("dev"))
}

func testE2EFreeze(t *testing.T, c *v1CLI) {
	c.must("create", "box")
	spinner := startProc(t, "sh", "-c", "while :; do :; done")
	sleeper := startProc(t, "sleep", "3600")
	c.must("attach", "box", strconv.Itoa(spinner.pid()), strconv.Itoa(sleeper.pid()))
	for _, p := range []*proc{spinner, sleeper} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/cgroup")
		require.NoError(t, err)
		c.assertInGroup(string(b), "box")
	}
	want := []int{spinner.pid(), sleeper.pid()}
	slices.Sort(want)
	assert.Equal(t, want, c.show("box").Processes)

	c.must("freeze", "box")
	assert.Equal(t, "FROZEN", c.read("freezer", "box", "freezer.state"))
	for _, p := range []*proc{spinner, sleeper} {
		state, _ := procStat(t, p.pid())
		assert.Equal(t, "D", state, "process %d is frozen", p.pid())
	}
	_, before := procStat(t, spinner.pid())
	time.Sleep(300 * time.Millisecond)
	_, after := procStat(t, spinner.pid())
	assert.Equal(t, before, after, "a frozen spinner uses no CPU")

	r := c.run("rm", "box")
	assert.Equal(t, exitBusy, r.code, "a group with processes: stderr: %s", r.stderr)
	assert.True(t, c.exists("box"))
	assert.True(t, spinner.running() && sleeper.running(), "rm without --kill kills nothing")

	c.must("thaw", "box")
	assert.Equal(t, "THAWED", c.read("freezer", "box", "freezer.state"))
	waitFor(t, "the thawed spinner to run", func() bool {
		_, now := procStat(t, spinner.pid())
		return now > after
	})

	c.must("kill", "box")
	for _, h := range c.hiers {
		assert.Empty(t, testenv.Procs(filepath.Join(h.dir, "box")), "%s group empty after kill", h.key)
	}
	for _, p := range []*proc{spinner, sleeper} {
		sig, ok := signaled(p.wait(t))
		assert.True(t, ok && sig == syscall.SIGKILL, "process %d ended by SIGKILL: %v", p.pid(), p.cmd.ProcessState)
	}
	assert.Empty(t, c.show("box").Processes)
	c.must("rm", "box")
	assert.False(t, c.exists("box"))
}

func testE2ERm(t *testing.T, c *v1CLI) {
	c.must("create", "top/mid/leaf")
	sleeper := startProc(t, "sleep", "3600")
	c.must("attach", "top/mid/leaf", strconv.Itoa(sleeper.pid()))

	cases := []struct {
		name string
		args []string
		code int
	}{
		{"children without recursive", []string{"rm", "top"}, exitBusy},
		{"processes without kill", []string{"rm", "--recursive", "top"}, exitBusy},
		{"processes in the group itself", []string{"rm", "top/mid/leaf"}, exitBusy},
	}
	for _, tc := range cases {
		r := c.run(tc.args...)
		assert.Equal(t, tc.code, r.code, "%s: stderr: %s", tc.name, r.stderr)
		assert.True(t, c.exists("top/mid/leaf"), "%s: nothing removed", tc.name)
		assert.True(t, sleeper.running(), "%s: nothing killed", tc.name)
	}

	c.must("rm", "--kill", "--recursive", "top")
	sig, ok := signaled(sleeper.wait(t))
	assert.True(t, ok && sig == syscall.SIGKILL, "sleeper ended by SIGKILL: %v", sleeper.cmd.ProcessState)
	assert.False(t, c.exists("top"))
	assert.Equal(t, "", c.must("ls", "-r"))
}

func testE2EEvents(t *testing.T, c *v1CLI) {
	c.must("create", "ev")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	// Trace logging shows the OOM eventfd being registered, the last
	// thing the driver does before it watches: the sign to start.
	cmd := c.command(ctx, "--log-level", "trace", "events", "ev", "--json")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// The reader never blocks: an OOM storm prints many events while the
	// test waits for the hog, and a stalled pipe would make the driver
	// drop the oldest events, the one the test waits for among them.
	events := &eventLog{more: make(chan struct{}, 1), done: make(chan struct{})}
	go events.read(stdout)
	ready := make(chan struct{})
	stderrDone := make(chan struct{})
	var logBuf lockedBuffer
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if !seen && strings.Contains(sc.Text(), "cgroup.event_control") {
				seen = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(e2eTimeout):
		t.Fatalf("events never started watching; stderr: %s", logBuf.tail(20))
	}

	next := func(kind semantic.EventKind) semantic.Event {
		t.Helper()
		ev, ok := events.next(kind)
		require.True(t, ok, "no %s event; stderr: %s", kind, logBuf.tail(20))
		return ev
	}

	sleeper := startProc(t, "sleep", "3600")
	c.must("attach", "ev", strconv.Itoa(sleeper.pid()))
	next(semantic.EventPopulated)
	require.NoError(t, sleeper.cmd.Process.Kill())
	sleeper.wait(t)
	next(semantic.EventEmpty)

	r := c.run(append(append([]string{"run", "--path", "ev"}, c.hogLimits()...), "--", "sh", "-c", memoryHog)...)
	assert.Equal(t, 128+9, r.code, "stderr: %s", r.stderr)
	ev := next(semantic.EventOOMKill)
	assert.GreaterOrEqual(t, ev.Count, uint64(1))

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	// Wait closes the pipes: read them to their end first.
	for _, done := range []chan struct{}{events.done, stderrDone} {
		select {
		case <-done:
		case <-time.After(e2eTimeout):
			t.Fatalf("events did not end on SIGINT; stderr: %s", logBuf.tail(20))
		}
	}
	err = cmd.Wait()
	assert.NoError(t, err, "events ends with 0 on SIGINT; stderr: %s", logBuf.tail(20))
	all, bad := events.all()
	assert.Empty(t, bad, "every line is an event")
	for _, ev := range all {
		assert.Equal(t, "ev", ev.Group.String(), "event %v", ev)
	}
	c.must("rm", "ev")
}

// eventLog collects the lines of events --json as they come.
type eventLog struct {
	mu     sync.Mutex
	events []semantic.Event
	bad    []string // lines that are not events
	ended  bool
	seen   int // events next has gone past
	more   chan struct{}
	done   chan struct{} // closed at the end of the output
}

func (l *eventLog) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev semantic.Event
		err := json.Unmarshal(sc.Bytes(), &ev)
		l.mu.Lock()
		if err != nil {
			l.bad = append(l.bad, sc.Text())
		} else {
			l.events = append(l.events, ev)
		}
		l.mu.Unlock()
		l.wake()
	}
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	l.wake()
	close(l.done)
}

func (l *eventLog) wake() {
	select {
	case l.more <- struct{}{}:
	default:
	}
}

// next returns the next event of kind after those already returned or
// skipped; false if the output ends or e2eTimeout passes first.
func (l *eventLog) next(kind semantic.EventKind) (semantic.Event, bool) {
	deadline := time.After(e2eTimeout)
	for {
		l.mu.Lock()
		for ; l.seen < len(l.events); l.seen++ {
			if ev := l.events[l.seen]; ev.Kind == kind {
				l.seen++
				l.mu.Unlock()
				return ev, true
			}
		}
		ended := l.ended
		l.mu.Unlock()
		if ended {
			return semantic.Event{}, false
		}
		select {
		case <-l.more:
		case <-deadline:
			return semantic.Event{}, false
		}
	}
}

// all returns every event and bad line so far.
func (l *eventLog) all() ([]semantic.Event, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events), slices.Clone(l.bad)
}

// lockedBuffer is a strings.Builder safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail returns the last n lines, for a failure message.
func (l *lockedBuffer) tail(n int) string {
	ls := lines(l.String())
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}

func testE2EExitCodes(t *testing.T, bin string) {
	cases := []struct {
		name string
		args []string
		code int
		msg  string
		// made is the group the command creates on success.
		made string
	}{
		{name: "memory.high has no v1 meaning", args: []string{"create", "x", "--memory-high", "1GiB"}, code: exitNotSupported, msg: "memory.high"},
		{name: "memory.min has no v1 meaning", args: []string{"create", "x", "--memory-min", "1GiB"}, code: exitNotSupported, msg: "memory.min"},
		{name: "allow by default with a deny rule", args: []string{"create", "x", "--devices", "allow", "--deny-device", "/dev/zero"}, code: exitNotSupported, msg: "devices"},
		{name: "memory.high approximated when asked", args: []string{"create", "x", "--memory-high", "1GiB", "--approximate"}, code: exitOK, made: "x"},
		{name: "show a missing group", args: []string{"show", "nope"}, code: exitNotExist, msg: "nope"},
		{name: "set a missing group", args: []string{"set", "nope", "--pids", "3"}, code: exitNotExist},
		{name: "freeze a missing group", args: []string{"freeze", "nope"}, code: exitNotExist},
		{name: "rm a missing group", args: []string{"rm", "nope"}, code: exitNotExist},
		{name: "events of a missing group", args: []string{"events", "nope"}, code: exitNotExist},
		{name: "ls a missing group", args: []string{"ls", "nope"}, code: exitNotExist},
		{name: "create twice", args: []string{"create", "dup"}, code: exitFailure, msg: "exists", made: "dup"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newV1CLI(t, bin)
			if tc.code == exitFailure {
				c.must(tc.args...)
			}
			r := c.run(tc.args...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, tc.msg)
			if tc.code != exitOK {
				assert.True(t, strings.HasPrefix(r.stderr, "cgsem: "+tc.args[0]+": v1: "), "stderr: %s", r.stderr)
			}
			var want []string
			if tc.made != "" {
				want = []string{tc.made}
			}
			for _, h := range c.hiers {
				got, err := testenv.Leaks(h.dir)
				require.NoError(t, err)
				assert.Equal(t, want, got, "groups in %s", h.key)
			}
			if tc.made == "x" {
				// The approximation reads back, and lands in the soft limit.
				var shown showOutput
				require.NoError(t, json.Unmarshal([]byte(c.must("show", "x", "--json", "--approximate")), &shown))
				require.NotNil(t, shown.Resources.Memory)
				assert.Equal(t, ptr(semantic.Bytes(1<<30)), shown.Resources.Memory.High)
				assert.Equal(t, "1073741824", c.read("memory", "x", "memory.soft_limit_in_bytes"))
			}
			removeAll(t, c)
		})
	}

	t.Run("attach to a missing group", func(t *testing.T) {
		c := newV1CLI(t, bin)
		sleeper := startProc(t, "sleep", "3600")
		before, err := os.ReadFile("/proc/" + strconv.Itoa(sleeper.pid()) + "/cgroup")
		require.NoError(t, err)
		r := c.run("attach", "nope", strconv.Itoa(sleeper.pid()))
		assert.Equal(t, exitNotExist, r.code, "stderr: %s", r.stderr)
		after, err := os.ReadFile("/proc/" + strconv.Itoa(sleeper.pid()) + "/cgroup")
		require.NoError(t, err)
		assert.Equal(t, string(before), string(after), "the process did not move")
		require.NoError(t, sleeper.cmd.Process.Kill())
		sleeper.wait(t)
	})
}
