package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/test/vm/vmcheck"
)

// childEnv selects a child mode of this test binary (see TestMain).
const childEnv = "CGSEM_PROBE_CHILD"

// required lists the controllers the lane exists for; the v2 driver's
// conformance suite needs each of them enforcing.
func required() []string { return []string{"memory", "cpu", "io", "pids"} }

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	code := m.Run()
	if inVM() {
		if leaks := leftovers(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "probe: cgroups left behind: %s\n", strings.Join(leaks, " "))
			code = 1
		}
	}
	os.Exit(code)
}

// child runs a re-executed copy of this binary inside a test's cgroup.
func child(mode string) int {
	name, arg, _ := strings.Cut(mode, ":")
	switch name {
	case "alloc":
		return vmcheck.Alloc(arg, nil)
	case "exit":
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 3
}

func inVM() bool { return os.Getenv("CGSEM_VM") == "1" }

// requireVM skips outside the lane's VM: these tests change cgroup limits
// and OOM-kill processes, which only a throwaway pure-v2 guest may host.
func requireVM(t *testing.T) {
	t.Helper()
	if !inVM() {
		t.Skip("runs only inside the cgroup v2 VM of test/vm (CGSEM_VM=1, set by its /init): run test/vm/lane.sh ./test/vm/probe")
	}
	vmcheck.RequireCgroup2(t, "CGSEM_VM=1")
}

// ownCgroup is the directory of this process's cgroup in the unified
// hierarchy; every group a test makes goes beneath it.
func ownCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Join(vmcheck.MountPoint, p)
		}
	}
	t.Fatalf("no cgroup2 entry in /proc/self/cgroup: %q", b)
	return ""
}

func groupPrefix() string { return fmt.Sprintf("cgsem-test-%d-", os.Getpid()) }

func leftovers() []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return []string{err.Error()}
	}
	_, p, _ := strings.Cut(strings.TrimSpace(string(b)), "0::")
	ents, err := os.ReadDir(filepath.Join(vmcheck.MountPoint, p))
	if err != nil {
		return []string{err.Error()}
	}
	var leaks []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), groupPrefix()) {
			leaks = append(leaks, e.Name())
		}
	}
	return leaks
}

func write(t *testing.T, dir, file, value string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, file), []byte(value), 0), "write %q to %s/%s", value, dir, file)
}

// newGroup makes a group beneath this process's cgroup with controllers
// enabled for its children, and a leaf inside it for processes (cgroup v2
// allows processes only where no controller is delegated further). Both
// are removed when the test ends, whatever is left inside them is killed
// first, and a failure to remove them fails the test.
func newGroup(t *testing.T, controllers ...string) (parent, leaf string) {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "_")
	parent = filepath.Join(ownCgroup(t), groupPrefix()+name)
	require.NoError(t, os.Mkdir(parent, 0o755))
	t.Cleanup(func() { removeGroup(t, parent) })
	if len(controllers) > 0 {
		write(t, parent, "cgroup.subtree_control", "+"+strings.Join(controllers, " +"))
	}
	leaf = filepath.Join(parent, "leaf")
	require.NoError(t, os.Mkdir(leaf, 0o755))
	t.Cleanup(func() { removeGroup(t, leaf) })
	return parent, leaf
}

func removeGroup(t *testing.T, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	}
	// The kernel keeps a group busy until its killed tasks are reaped.
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if !errors.Is(err, unix.EBUSY) {
			t.Errorf("remove %s: %v", dir, err)
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("remove %s: still busy: %v", dir, err)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// inGroup prepares a re-exec of this binary in child mode, started in the
// group by clone3(CLONE_INTO_CGROUP): it is charged there from its first
// instruction, with no window in this process's own cgroup.
func inGroup(t *testing.T, dir, mode string) *exec.Cmd {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd
}

func TestHierarchy(t *testing.T) {
	requireVM(t)
	t.Run("cgroup2 is mounted at /sys/fs/cgroup", func(t *testing.T) {
		var st unix.Statfs_t
		require.NoError(t, unix.Statfs(vmcheck.MountPoint, &st))
		assert.Equal(t, int64(unix.CGROUP2_SUPER_MAGIC), int64(st.Type), "filesystem magic of %s", vmcheck.MountPoint)
	})
	t.Run("no v1 hierarchy exists", func(t *testing.T) { vmcheck.AssertUnifiedOnly(t) })
	own := ownCgroup(t)
	available := strings.Fields(vmcheck.Read(t, vmcheck.MountPoint, "cgroup.controllers"))
	delegated := strings.Fields(vmcheck.Read(t, own, "cgroup.subtree_control"))
	t.Logf("root cgroup.controllers: %v; %s cgroup.subtree_control: %v", available, own, delegated)
	for _, c := range required() {
		t.Run(c+" is available and enabled for children", func(t *testing.T) {
			assert.Contains(t, available, c)
			assert.Contains(t, delegated, c, "test/vm/vminit enables every controller in the root")
		})
	}
}

func TestEnableControllers(t *testing.T) {
	requireVM(t)
	_, leaf := newGroup(t, required()...)
	got := strings.Fields(vmcheck.Read(t, leaf, "cgroup.controllers"))
	cases := []struct{ controller, file string }{
		{"memory", "memory.max"},
		{"cpu", "cpu.max"},
		{"io", "io.max"},
		{"pids", "pids.max"},
	}
	for _, tc := range cases {
		t.Run(tc.controller, func(t *testing.T) {
			assert.Contains(t, got, tc.controller, "controllers of a child of the group")
			assert.FileExists(t, filepath.Join(leaf, tc.file))
		})
	}
}

func TestMemoryMax(t *testing.T) {
	requireVM(t)
	for _, tc := range vmcheck.MemoryCases() {
		t.Run(tc.Name, func(t *testing.T) {
			_, leaf := newGroup(t, "memory")
			write(t, leaf, "memory.max", strconv.FormatInt(tc.Limit(), 10))
			// No swap in the guest, but a kernel with swap accounting must
			// not let the hog escape there either.
			if _, err := os.Stat(filepath.Join(leaf, "memory.swap.max")); err == nil {
				write(t, leaf, "memory.swap.max", "0")
			}
			run := vmcheck.MemoryRun{MemoryCase: tc, Dir: leaf, LimitName: "memory.max",
				OOMBefore: vmcheck.Keyed(t, leaf, "memory.events", "oom_kill")}
			out, err := inGroup(t, leaf, fmt.Sprintf("alloc:%d", tc.AllocMiB)).CombinedOutput()
			run.Check(t, err, string(out))
		})
	}
}

// startStopped starts a copy of this binary in the group, traced, so it
// stops at its exec before its first instruction: one task, no runtime
// threads, holding exactly one pid of the group until killed.
func startStopped(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := inGroup(t, dir, "exit")
	cmd.SysProcAttr.Ptrace = true
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func TestPidsMax(t *testing.T) {
	requireVM(t)
	// The holders' tracer is whichever thread forked them; no ptrace
	// request follows (only kill and wait, which any thread may do), and
	// Go never ends an unlocked thread, so no thread is locked here.
	cases := []struct {
		name    string
		holders int // stopped tasks already in the group
		max     int
	}{
		{name: "empty group with pids.max 0 refuses a fork", holders: 0, max: 0},
		{name: "group at its pids.max refuses one more fork", holders: 1, max: 1},
		{name: "group at its pids.max of 3 refuses one more fork", holders: 3, max: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, leaf := newGroup(t, "pids")
			for range tc.holders {
				startStopped(t, leaf)
			}
			require.Equal(t, strconv.Itoa(tc.holders), vmcheck.Read(t, leaf, "pids.current"), "tasks held in the group")
			write(t, leaf, "pids.max", strconv.Itoa(tc.max))
			before := vmcheck.Keyed(t, leaf, "pids.events", "max")

			err := inGroup(t, leaf, "exit").Run()
			assert.ErrorIs(t, err, syscall.EAGAIN, "fork into a full group")
			assert.Equal(t, before+1, vmcheck.Keyed(t, leaf, "pids.events", "max"), "pids.events max counts the refusal")

			// The same fork succeeds once the limit is lifted, so the
			// refusal above was the limit's doing. ("max", not max+1: the
			// child is a Go program that starts threads, each a task.)
			write(t, leaf, "pids.max", "max")
			assert.NoError(t, inGroup(t, leaf, "exit").Run(), "fork with room under pids.max")
		})
	}
}
