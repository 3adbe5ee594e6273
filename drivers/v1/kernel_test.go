package v1

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// These tests use the kernel: root, v1 hierarchies, and groups created
// only below a scratch group beneath the test's own cgroup.

func kernelDriver(t *testing.T, opts semantic.Options) *Driver {
	t.Helper()
	testenv.RequireV1(t, suiteControllers...)
	d, _ := newTestDriver(t, opts)
	return d
}

func mustCreate(t *testing.T, d *Driver, path string, res *semantic.Resources) semantic.Group {
	t.Helper()
	p := semantic.MustPath(path)
	g, err := d.Create(t.Context(), p, res)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		top, err := d.Open(ctx, p.Prefix(1))
		if errors.Is(err, semantic.ErrNotExist) {
			return
		}
		if err == nil {
			err = top.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true})
		}
		if err != nil && !errors.Is(err, semantic.ErrNotExist) {
			t.Errorf("delete %s: %v", p.Prefix(1), err)
		}
	})
	return g
}

// TestKernelStartInside proves the started process is in the group before
// its first instruction: its first act prints /proc/self/cgroup.
func TestKernelStartInside(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	g := mustCreate(t, d, "start/leaf", nil)
	selfBefore, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)

	const n = 8 // concurrently: each Start moves a thread of its own
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("cat", "/proc/self/cgroup")
			cmd.Stdout = &outs[i]
			if errs[i] = g.Start(t.Context(), cmd); errs[i] == nil {
				errs[i] = cmd.Wait()
			}
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		entries, err := mountinfo.ParseCgroup(&outs[i])
		require.NoError(t, err)
		for _, h := range d.hs {
			want := strings.TrimSuffix(h.cgroupRoot, "/") + "/start/leaf"
			got, err := mountinfo.Lookup(entries, mountinfo.Hierarchy{Version: 1, Controllers: withoutName(h.controllers), Name: nameOf(h.controllers)})
			require.NoError(t, err)
			assert.Equal(t, want, got, "hierarchy %s of child %d", h.key, i)
		}
	}
	selfAfter, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	assert.Equal(t, string(selfBefore), string(selfAfter), "the test process stays where it was")
	pids, err := g.Processes(t.Context())
	require.NoError(t, err)
	assert.NotContains(t, pids, os.Getpid(), "no thread of the caller is left in the group")

	t.Run("frozen group refused", func(t *testing.T) {
		require.NoError(t, g.Freeze(t.Context()))
		defer func() { require.NoError(t, g.Thaw(context.Background())) }()
		cmd := exec.Command("true")
		err := g.Start(t.Context(), cmd)
		assert.ErrorIs(t, err, semantic.ErrBusy)
		assert.Nil(t, cmd.Process)
	})
	t.Run("nil streams are /dev/null even where devices are denied", func(t *testing.T) {
		dg := mustCreate(t, d, "start/nodev", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault}})
		cmd := exec.Command("sh", "-c", "exit 7")
		require.NoError(t, dg.Start(t.Context(), cmd))
		var exit *exec.ExitError
		require.ErrorAs(t, cmd.Wait(), &exit)
		assert.Equal(t, 7, exit.ExitCode())
		assert.Nil(t, cmd.Stdin, "the caller's fields are as they were")
	})
}

func withoutName(cs []string) []string {
	var out []string
	for _, c := range cs {
		if !strings.HasPrefix(c, "name=") {
			out = append(out, c)
		}
	}
	return out
}

func nameOf(cs []string) string {
	for _, c := range cs {
		if n, ok := strings.CutPrefix(c, "name="); ok {
			return n
		}
	}
	return ""
}

// TestKernelMemswOrdering raises and lowers memory and swap together; the
// kernel refuses any write order that would put memory above memsw.
func TestKernelMemswOrdering(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	if !d.caps.Supports(semantic.MemorySwap) {
		t.Skip("no swap accounting: " + d.caps.Get(semantic.MemorySwap).Reason)
	}
	g := mustCreate(t, d, "memsw", &semantic.Resources{Memory: &semantic.Memory{Max: ptr(64 * semantic.MiB), Swap: ptr(semantic.Bytes(0))}})
	tests := []struct {
		name      string
		max, swap *semantic.Bytes
		wantMax   semantic.Bytes
		wantSwap  semantic.Bytes
		firstFile string // the write the order needs first
	}{
		{"raise both", ptr(256 * semantic.MiB), ptr(128 * semantic.MiB), 256 * semantic.MiB, 128 * semantic.MiB, "memory.memsw.limit_in_bytes"},
		{"lower both", ptr(32 * semantic.MiB), ptr(16 * semantic.MiB), 32 * semantic.MiB, 16 * semantic.MiB, "memory.limit_in_bytes"},
		{"raise memory, keep swap", ptr(96 * semantic.MiB), nil, 96 * semantic.MiB, 16 * semantic.MiB, "memory.memsw.limit_in_bytes"},
		{"lower memory, keep swap", ptr(48 * semantic.MiB), nil, 48 * semantic.MiB, 16 * semantic.MiB, "memory.limit_in_bytes"},
		{"unlimited", ptr(semantic.Bytes(semantic.Unlimited)), ptr(semantic.Bytes(semantic.Unlimited)), semantic.Unlimited, semantic.Unlimited, "memory.memsw.limit_in_bytes"},
		{"back to limited", ptr(64 * semantic.MiB), ptr(semantic.Bytes(0)), 64 * semantic.MiB, 0, "memory.limit_in_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &semantic.Resources{Memory: &semantic.Memory{Max: tt.max, Swap: tt.swap}}
			plan, err := g.Plan(t.Context(), req)
			require.NoError(t, err)
			require.NotEmpty(t, plan.Steps)
			assert.Equal(t, tt.firstFile, plan.Steps[0].Target)
			require.NoError(t, g.Apply(t.Context(), req))
			res, err := g.Resources(t.Context())
			require.NoError(t, err)
			assert.Equal(t, tt.wantMax, *res.Memory.Max)
			assert.Equal(t, tt.wantSwap, *res.Memory.Swap)
		})
	}
}

// TestKernelPlanIsWhatApplyWrites compares a plan with the trace log of
// the Apply that follows it.
func TestKernelPlanIsWhatApplyWrites(t *testing.T) {
	var logs syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace, JSONFormat: true})
	d := kernelDriver(t, semantic.Options{Logger: log})
	g := mustCreate(t, d, "plan", &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault,
		Rules: []semantic.DeviceRule{rule(t, true, "c 1:3 rwm"), rule(t, true, "c 1:5 r")}}})
	req := &semantic.Resources{
		Memory:  &semantic.Memory{Max: ptr(128 * semantic.MiB)},
		CPU:     &semantic.CPU{Weight: ptr[uint64](200), Max: &semantic.CPUMax{CPUs: 0.5}},
		Pids:    &semantic.Pids{Max: ptr(semantic.Count(40))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{rule(t, true, "c 1:3 rw"), rule(t, true, "c 1:9 r")}},
	}
	plan, err := g.Plan(t.Context(), req)
	require.NoError(t, err)
	logs.Reset()
	require.NoError(t, g.Apply(t.Context(), req))
	var written []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var e struct {
			Message string `json:"@message"`
			File    string `json:"file"`
			Value   string `json:"value"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		if e.Message == "write" {
			written = append(written, filepath.Base(e.File)+" "+e.Value)
		}
	}
	var planned []string
	for _, s := range plan.Steps {
		planned = append(planned, s.Target+" "+s.Value)
	}
	assert.Equal(t, planned, written)
	assert.Contains(t, planned, "devices.deny c 1:3 m", "narrowing comes as removals")
	assert.Contains(t, planned, "devices.deny c 1:5 r")
	assert.Contains(t, planned, "devices.allow c 1:9 r")
	again, err := g.Plan(t.Context(), req)
	require.NoError(t, err)
	assert.Empty(t, again.Steps, "once applied, nothing is left to write")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// TestKernelCpusetSeededPerLevel creates three levels at once; each new
// level gets its parent's CPUs and memory nodes, so a task can join the
// deepest.
func TestKernelCpusetSeededPerLevel(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	g := mustCreate(t, d, "a/b/c", nil)
	h := d.byCtrl["cpuset"]
	parent, err := h.root.ReadString("cpuset.cpus")
	require.NoError(t, err)
	for _, lvl := range []string{"a", "a/b", "a/b/c"} {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := h.root.ReadString(lvl + "/" + f)
			require.NoError(t, err)
			assert.NotEmpty(t, v, "%s of %s", f, lvl)
		}
		v, _ := h.root.ReadString(lvl + "/cpuset.cpus")
		assert.Equal(t, parent, v, "level %s copies its parent", lvl)
	}
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	require.NoError(t, g.AddProcess(t.Context(), cmd.Process.Pid))
	pids, err := g.Processes(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []int{cmd.Process.Pid}, pids)
}

// TestKernelDelete covers the refusals and the kill-first delete.
func TestKernelDelete(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	g := mustCreate(t, d, "del/leaf", nil)
	top, err := d.Open(t.Context(), semantic.MustPath("del"))
	require.NoError(t, err)
	err = top.Delete(t.Context(), nil)
	assert.ErrorIs(t, err, semantic.ErrBusy, "a group with children")

	cmd := exec.Command("sleep", "60")
	require.NoError(t, g.Start(t.Context(), cmd))
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	start := time.Now()
	err = g.Delete(t.Context(), nil)
	assert.ErrorIs(t, err, semantic.ErrBusy, "a group with a process")
	assert.Less(t, time.Since(start), time.Second, "a populated group is refused at once, not retried")
	ok, err := d.primary.root.Exists("del/leaf")
	require.NoError(t, err)
	assert.True(t, ok, "a refused delete changes nothing")

	require.NoError(t, top.Delete(t.Context(), &semantic.DeleteOptions{Kill: true, Recursive: true}))
	<-waited
	assert.Equal(t, "signal: killed", cmd.ProcessState.String())
	for _, h := range d.hs {
		ok, err := h.root.Exists("del")
		require.NoError(t, err)
		assert.False(t, ok, "del removed from %s", h.key)
	}
	assert.ErrorIs(t, g.Delete(t.Context(), nil), semantic.ErrNotExist)
}

// TestKernelDevicesOnKernel applies lists in turn and compares what the
// kernel then holds with the reference evaluator; a list v1 cannot
// express is refused and leaves the last one in force.
func TestKernelDevicesOnKernel(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	g := mustCreate(t, d, "dev", nil)
	lists := []*semantic.Devices{
		list(t, semantic.DenyByDefault, "c 1:3 rwm"),
		list(t, semantic.DenyByDefault, "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 136:* rw"),
		list(t, semantic.DenyByDefault, "c 1:3 r", "c 1:3 w", "!c 136:* w"),
		list(t, semantic.AllowByDefault),
		list(t, semantic.DenyByDefault, "c 1:* r", "c *:3 w"),
		list(t, semantic.DenyByDefault),
	}
	current := &semantic.Devices{Default: semantic.AllowByDefault}
	for i, l := range append(lists, list(t, semantic.DenyByDefault, "c *:* rw", "!c 1:5 w")) {
		err := g.Apply(t.Context(), &semantic.Resources{Devices: l})
		if i == len(lists) {
			require.ErrorIs(t, err, semantic.ErrNotSupported, "a wildcard with a hole")
		} else {
			require.NoError(t, err, "list %d", i)
			current = l
		}
		raw, err := d.byCtrl["devices"].root.Read("dev/devices.list")
		require.NoError(t, err)
		s := devicesFromList(observeDevices(t, strings.TrimSpace(string(raw))).Rules)
		if strings.TrimSpace(string(raw)) == "a *:* rwm" {
			s = devState{allow: true}
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) { sameAsReference(t, s, current) })
	}
}

// TestKernelStats reads figures from a group that ran a process, and
// again after the group was deleted and made again at the same path
// (the held descriptors then belong to the old directory).
func TestKernelStats(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	g := mustCreate(t, d, "stats", nil)
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
	require.NoError(t, g.Start(t.Context(), cmd))
	require.NoError(t, cmd.Wait())
	st, err := g.Stats(t.Context())
	require.NoError(t, err)
	require.NotNil(t, st.CPU.Usage)
	assert.Greater(t, *st.CPU.Usage, time.Duration(0), "the loop used CPU")
	require.NotNil(t, st.Memory.Peak)
	assert.Greater(t, *st.Memory.Peak, uint64(0))
	require.NotNil(t, st.Pids.Current)
	assert.Zero(t, *st.Pids.Current)
	assert.Nil(t, st.Pressure, "v1 has no pressure files")
	assert.Nil(t, st.Memory.OOM, "v1 has no OOM counter")

	require.NoError(t, g.Delete(t.Context(), nil))
	_, err = g.Stats(t.Context())
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	_, err = d.Create(t.Context(), semantic.MustPath("stats"), nil)
	require.NoError(t, err)
	st, err = g.Stats(t.Context())
	require.NoError(t, err, "the handle addresses the new group")
	assert.Equal(t, time.Duration(0), *st.CPU.Usage, "the new group has used nothing")
}

func TestKernelRootOptions(t *testing.T) {
	testenv.RequireV1(t, suiteControllers...)
	host := testenv.LoadHost(t)
	tests := []struct {
		root string
		want func(h *hier) string
	}{
		{"", func(h *hier) string { return mountOf(t, host, h) }},
		{"self", func(h *hier) string {
			dir, ok, why := host.SelfDir(firstKey(h))
			require.True(t, ok, why)
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.root), func(t *testing.T) {
			d, err := New(semantic.Options{Root: tt.root})
			require.NoError(t, err)
			defer d.Close()
			for _, h := range d.hs {
				assert.Equal(t, tt.want(h), h.dir, h.key)
			}
		})
	}
	_, err := New(semantic.Options{Root: "self/cgsem-test-does-not-exist"})
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	_, err = New(semantic.Options{Settings: map[string]string{"nope": "1"}})
	assert.ErrorIs(t, err, semantic.ErrInvalid)
}

func firstKey(h *hier) string { return h.controllers[0] }

func mountOf(t *testing.T, host *testenv.Host, h *hier) string {
	for _, hh := range host.Hierarchies {
		if hh.Version == 1 && hh.Key() == h.key {
			return hh.Mounts[len(hh.Mounts)-1].MountPoint
		}
	}
	t.Fatalf("no mount of %s", h.key)
	return ""
}

// TestKernelClosesDescriptors: a driver that created, read, watched and
// deleted groups leaves the process with the descriptors it had.
func TestKernelClosesDescriptors(t *testing.T) {
	testenv.RequireV1(t, suiteControllers...)
	s := testenv.NewScratch(t, hierarchyKeys(t)...)
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	before := count()
	d, err := New(semantic.Options{Root: "self/" + s.Name})
	require.NoError(t, err)
	g, err := d.Create(t.Context(), semantic.MustPath("fds/leaf"), &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(9))}})
	require.NoError(t, err)
	_, err = g.Stats(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	ev, err := g.Events(ctx)
	require.NoError(t, err)
	_, err = g.Resources(t.Context())
	require.NoError(t, err)
	top, err := d.Open(t.Context(), semantic.MustPath("fds"))
	require.NoError(t, err)
	require.NoError(t, top.Delete(t.Context(), &semantic.DeleteOptions{Recursive: true}))
	require.NoError(t, d.Close())
	cancel()
	for range ev {
	}
	assert.Equal(t, before, count())
}

// TestKernelKillBelowFrozenAncestor: a v1 task frozen by an ancestor does
// not die of SIGKILL until that ancestor thaws, which is not Kill's to
// do, so Kill (and Delete with Kill) below it refuses with ErrBusy
// instead of waiting for ctx, and signals nothing. The ctx's deadline is
// far beyond what a refusal takes: a wait for the tasks would end in it,
// a ctx error, not ErrBusy.
func TestKernelKillBelowFrozenAncestor(t *testing.T) {
	d := kernelDriver(t, semantic.Options{})
	cases := []struct {
		name   string
		target string // the group killed
		leaf   string // where the process runs ("": none)
		kill   func(ctx context.Context, g semantic.Group) error
		want   error
	}{
		{name: "kill below a frozen parent", target: "a/b", leaf: "a/b",
			kill: func(ctx context.Context, g semantic.Group) error { return g.Kill(ctx) }, want: semantic.ErrBusy},
		{name: "kill with the process a level further down", target: "a/b", leaf: "a/b/c",
			kill: func(ctx context.Context, g semantic.Group) error { return g.Kill(ctx) }, want: semantic.ErrBusy},
		{name: "delete with kill below a frozen parent", target: "a/b", leaf: "a/b/c",
			kill: func(ctx context.Context, g semantic.Group) error {
				return g.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true})
			}, want: semantic.ErrBusy},
		{name: "kill of an empty group below a frozen parent", target: "a/b",
			kill: func(ctx context.Context, g semantic.Group) error { return g.Kill(ctx) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			top := mustCreate(t, d, "a", nil)
			g := mustCreate(t, d, tc.target, nil)
			var cmd *exec.Cmd
			waited := make(chan error, 1)
			if tc.leaf != "" {
				leaf := g
				if tc.leaf != tc.target {
					leaf = mustCreate(t, d, tc.leaf, nil)
				}
				cmd = exec.Command("sleep", "600")
				require.NoError(t, leaf.Start(ctx, cmd))
				go func() { waited <- cmd.Wait() }()
			}
			require.NoError(t, top.Freeze(ctx))
			t.Cleanup(func() { top.Thaw(context.Background()) })

			err := tc.kill(ctx, g)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), "ancestor a is frozen: its tasks cannot exit until it is thawed")
			assert.False(t, dead(t, cmd.Process.Pid), "the process is alive")
			assert.Zero(t, pendingSIGKILL(t, cmd.Process.Pid), "nothing was signalled: no SIGKILL pending")
			for _, h := range d.hs {
				ok, err := h.root.Exists(tc.leaf)
				require.NoError(t, err)
				assert.True(t, ok, "%s kept in %s", tc.leaf, h.key)
			}

			require.NoError(t, top.Thaw(ctx))
			require.NoError(t, g.Kill(ctx), "once the ancestor is thawed")
			require.Error(t, <-waited)
			assert.Equal(t, "signal: killed", cmd.ProcessState.String())
			pids, err := g.Processes(ctx)
			require.NoError(t, err)
			assert.Empty(t, pids)
		})
	}
}

// dead reports whether pid has exited: gone, or a zombie.
func dead(t *testing.T, pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	require.NoError(t, err)
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// pendingSIGKILL is SIGKILL's bit of pid's pending signals (shared and
// its main thread's own), as /proc/PID/status lists them.
func pendingSIGKILL(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	var mask uint64
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "SigPnd" || k == "ShdPnd" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err, "%s", l)
			mask |= n
		}
	}
	return mask & (1 << (9 - 1))
}
