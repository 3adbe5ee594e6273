package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// child starts a process the test owns, which waits until killed.
func child(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// keys returns the sorted keys of a decoded JSON object.
func keys(t *testing.T, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "not an object: %v", v)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &m), "output: %s", s)
	return m
}

func TestShowJSON(t *testing.T) {
	e := newEnv(t, fake.Options{})
	page := pageSize()
	e.must("create", "web/app", "--memory", fmt.Sprint(64*page), "--pids", "50", "--cpus", "1.5",
		"--devices", "deny", "--allow-device", "c 1:3 rw")
	proc := child(t)
	e.must("attach", "web/app", strconv.Itoa(proc.Process.Pid))

	out := e.must("show", "web/app", "--json")
	m := decode(t, out)
	assert.Equal(t, []string{"driver", "path", "processes", "resources", "stats"}, keys(t, m))
	assert.Equal(t, "fake", m["driver"])
	assert.Equal(t, "web/app", m["path"])
	assert.Equal(t, []any{float64(proc.Process.Pid)}, m["processes"])

	res := m["resources"].(map[string]any)
	mem := res["memory"].(map[string]any)
	assert.Equal(t, float64(64*page), mem["max"], "bytes are numbers")
	assert.Equal(t, "max", mem["high"], "no limit is the string max")
	cpu := res["cpu"].(map[string]any)
	assert.Equal(t, map[string]any{"cpus": 1.5, "period": float64(100 * time.Millisecond)}, cpu["max"], "durations are nanoseconds")
	assert.Equal(t, map[string]any{"max": float64(50)}, res["pids"])
	assert.Equal(t, map[string]any{"default": "deny", "rules": []any{map[string]any{"allow": true, "rule": "c 1:3 rw"}}}, res["devices"])

	stats := m["stats"].(map[string]any)
	pids := stats["pids"].(map[string]any)
	assert.Equal(t, float64(1), pids["current"])
	assert.Equal(t, float64(50), pids["limit"])
	assert.NotContains(t, stats, "pressure", "the fake has no pressure figures: absent, not zero")

	// The document is the driver's read-back. (Its JSON leaves empty
	// lists out, so compare encodings: managed-but-empty and unmanaged
	// lists read the same.)
	var doc showOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	want, err := json.Marshal(e.resources("web/app"))
	require.NoError(t, err)
	got, err := json.Marshal(doc.Resources)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got))
}

func TestShowHuman(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "web", "--memory", "1GiB", "--pids", "7", "--cpus", "0.5", "--cpu-period", "50ms",
		"--devices", "deny", "--allow-device", "c 1:3 rwm", "--deny-device", "c 1:3 m")
	out := e.must("show", "web")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^path +web$`),
		regexp.MustCompile(`(?m)^driver +fake$`),
		regexp.MustCompile(`(?m)^processes +none$`),
		regexp.MustCompile(`(?m)^  memory\.max +1GiB$`),
		regexp.MustCompile(`(?m)^  pids\.max +7$`),
		regexp.MustCompile(`(?m)^  cpu\.max +0\.5 CPUs per 50ms$`),
		regexp.MustCompile(`(?m)^  devices +deny by default$`),
		regexp.MustCompile(`(?m)^  devices\[1\] +allow c 1:3 rwm$`),
		regexp.MustCompile(`(?m)^  devices\[2\] +deny c 1:3 m$`),
		regexp.MustCompile(`(?m)^  pids\.current +0$`),
	} {
		assert.Regexp(t, want, out)
	}
	assert.NotRegexp(t, `(?m)[ \t]$`, out, "no trailing blanks")
	// Aligned: every value starts in the same column.
	col := -1
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		f := regexp.MustCompile(`^  \S+ +`).FindString(line)
		if f == "" {
			continue
		}
		if col == -1 {
			col = len(f)
		}
		assert.Equal(t, col, len(f), "misaligned line %q", line)
	}
}

func TestLs(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "web/app")
	e.must("create", "web/db")
	e.must("create", "batch")
	cases := []struct {
		name   string
		args   []string
		human  string
		groups []any
		path   string
	}{
		{"root", []string{"ls"}, "batch\nweb\n", []any{"batch", "web"}, ""},
		{"below a group", []string{"ls", "web"}, "web/app\nweb/db\n", []any{"web/app", "web/db"}, "web"},
		{"recursive", []string{"ls", "--recursive"}, "batch\nweb\nweb/app\nweb/db\n", []any{"batch", "web", "web/app", "web/db"}, ""},
		{"recursive short after the path", []string{"ls", "web", "-r"}, "web/app\nweb/db\n", []any{"web/app", "web/db"}, "web"},
		{"leaf", []string{"ls", "batch"}, "", []any{}, "batch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.human, e.must(tc.args...))
			m := decode(t, e.must(append(tc.args, "--json")...))
			assert.Equal(t, []string{"driver", "groups", "path"}, keys(t, m))
			assert.Equal(t, tc.groups, m["groups"])
			assert.Equal(t, tc.path, m["path"])
		})
	}
}

func TestPlan(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "web", "--pids", "5")
	before := e.resources("web")

	m := decode(t, e.must("plan", "web", "--pids", "9", "--memory", "1G", "--json"))
	assert.Equal(t, []string{"driver", "path", "steps"}, keys(t, m))
	steps := m["steps"].([]any)
	require.Len(t, steps, 2)
	for _, s := range steps {
		assert.Equal(t, []string{"action", "feature", "target", "value"}, keys(t, s))
	}
	var doc planOutput
	require.NoError(t, json.Unmarshal([]byte(e.must("plan", "web", "--pids", "9", "--json")), &doc))
	require.Len(t, doc.Steps, 1)
	assert.Equal(t, semantic.PidsMax, doc.Steps[0].Feature)
	assert.Equal(t, "9", doc.Steps[0].Value)

	human := e.must("plan", "web", "--pids", "9")
	assert.Regexp(t, `^write +\S*pids\S* +9 +\(pids\.max\)\n$`, human)
	assert.Equal(t, before, e.resources("web"), "plan changes nothing")
}

func TestDrivers(t *testing.T) {
	reg := func() *registry.Registry {
		r := &registry.Registry{}
		r.Register(registry.Registration{Name: "fake", New: func(semantic.Options) (semantic.Driver, error) { return fake.New(fake.Options{}), nil }})
		r.Register(registry.Registration{Name: "alpha", Priority: 20, Probe: func() (bool, string) { return true, "alpha fits" },
			New: func(semantic.Options) (semantic.Driver, error) { return fake.New(fake.Options{}), nil }})
		r.Register(registry.Registration{Name: "beta", Priority: 30, Probe: func() (bool, string) { return false, "beta needs PID 1" },
			New: func(semantic.Options) (semantic.Driver, error) { return fake.New(fake.Options{}), nil }})
		return r
	}
	cases := []struct {
		name     string
		env      map[string]string
		args     []string
		picked   string
		forced   bool
		sentence string
	}{
		{"auto", nil, nil, "alpha", false, `auto-selection picks "alpha": the highest priority whose probe accepts this host`},
		{"forced by flag", nil, []string{"--driver", "fake"}, "fake", true, `--driver forces "fake"; without it, auto-selection picks "alpha"`},
		{"forced by environment", map[string]string{registry.EnvDriver: "fake"}, nil, "fake", true, `CGSEM_DRIVER forces "fake"`},
		{"forced to an unknown name", nil, []string{"--driver", "gamma"}, "gamma", true, `"gamma", which is not registered (forgotten import?)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string { return tc.env[k] }
			r := reg()
			r.Getenv = env
			var out, errb strings.Builder
			code := run(context.Background(), append(append([]string{}, tc.args...), "drivers", "--json"), env, strings.NewReader(""), &out, &errb, r)
			require.Equal(t, 0, code, "stderr: %s", errb.String())
			m := decode(t, out.String())
			assert.Equal(t, []string{"auto", "forced", "picked", "verdicts"}, keys(t, m))
			assert.Equal(t, tc.picked, m["picked"])
			assert.Equal(t, tc.forced, m["forced"])
			assert.Equal(t, "alpha", m["auto"])
			assert.Equal(t, []any{
				map[string]any{"name": "beta", "priority": float64(30), "ok": false, "reason": "beta needs PID 1"},
				map[string]any{"name": "alpha", "priority": float64(20), "ok": true, "reason": "alpha fits"},
				map[string]any{"name": "fake", "priority": float64(0), "ok": false, "reason": "never auto-selected; force it by name"},
			}, m["verdicts"])

			out.Reset()
			code = run(context.Background(), append(append([]string{}, tc.args...), "drivers"), env, strings.NewReader(""), &out, &errb, reg())
			require.Equal(t, 0, code)
			assert.Regexp(t, `(?m)^DRIVER +PRIORITY +FITS +REASON$`, out.String())
			assert.Regexp(t, `(?m)^beta +30 +no +beta needs PID 1$`, out.String())
			assert.Regexp(t, `(?m)^alpha +20 +yes +alpha fits$`, out.String())
			assert.Contains(t, out.String(), tc.sentence)
		})
	}
}

func TestGroupLifecycle(t *testing.T) {
	// One fake, many commands, as a session on a real driver would go.
	e := newEnv(t, fake.Options{})
	e.must("create", "web/app", "--pids", "5")
	assert.True(t, e.exists("web"), "missing levels are created")
	e.must("set", "web/app", "--pids", "6")
	assert.Equal(t, semantic.Count(6), *e.resources("web/app").Pids.Max)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := e.group("web/app").Events(ctx)
	require.NoError(t, err)
	e.must("freeze", "web/app")
	assert.Equal(t, semantic.EventFrozen, nextEvent(t, events, semantic.EventFrozen).Kind)
	e.must("thaw", "web/app")
	assert.Equal(t, semantic.EventThawed, nextEvent(t, events, semantic.EventThawed).Kind)

	proc := child(t)
	e.must("attach", "web/app", strconv.Itoa(proc.Process.Pid))
	pids, err := e.group("web/app").Processes(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []int{proc.Process.Pid}, pids)

	r := e.run("rm", "web/app")
	assert.Equal(t, exitBusy, r.code, "a group with processes is refused")
	r = e.run("rm", "web", "--kill")
	assert.Equal(t, exitBusy, r.code, "a group with children is refused without --recursive")

	e.must("kill", "web/app")
	err = proc.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "kill SIGKILLed the process")

	e.must("rm", "web", "--recursive")
	assert.False(t, e.exists("web"))
	assert.False(t, e.exists("web/app"))
}

func TestRmKill(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "a")
	proc := child(t)
	e.must("attach", "a", strconv.Itoa(proc.Process.Pid))
	e.must("rm", "a", "--kill")
	assert.False(t, e.exists("a"))
	var ee *exec.ExitError
	require.ErrorAs(t, proc.Wait(), &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
}

func TestAttachThread(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "a")
	proc := child(t)
	// A single-threaded process's one thread has the process's id.
	r := e.run("attach", "--thread", "a", strconv.Itoa(proc.Process.Pid))
	if !e.drv.Capabilities().Supports(semantic.Threads) {
		assert.Equal(t, exitNotSupported, r.code, "stderr: %s", r.stderr)
		return
	}
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	pids, err := e.group("a").Processes(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []int{proc.Process.Pid}, pids)
}

func nextEvent(t *testing.T, events <-chan semantic.Event, kind semantic.EventKind) semantic.Event {
	t.Helper()
	for ev := range events {
		if ev.Kind == kind {
			return ev
		}
	}
	t.Fatalf("event channel closed before %s", kind)
	return semantic.Event{}
}
