package conformance

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func testProcess(t *testing.T, s *suite) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"AddList", procAddList},
		{"Move", procMove},
		{"RejectsInvalidPid", procRejectsInvalid},
		{"ExitedLeaves", procExitedLeaves},
		{"NotDescendants", procNotDescendants},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, s.fixture(t))
		})
	}
}

func procAddList(t *testing.T, f *fixture) {
	g := f.create("procs", nil)
	f.requireProcesses(g)
	a, b := f.sleeper(), f.sleeper()
	require.NoError(t, g.AddProcess(f.ctx, b.pid()))
	f.requireProcesses(g, b.pid())
	require.NoError(t, g.AddProcess(f.ctx, a.pid()))
	f.requireProcesses(g, a.pid(), b.pid())
	// Adding a member again is not an error and changes nothing.
	require.NoError(t, g.AddProcess(f.ctx, a.pid()))
	f.requireProcesses(g, a.pid(), b.pid())
}

func procMove(t *testing.T, f *fixture) {
	g1, g2 := f.create("one", nil), f.create("two/leaf", nil)
	a, b := f.sleeperIn(g1), f.sleeperIn(g1)
	require.NoError(t, g2.AddProcess(f.ctx, a.pid()))
	f.requireProcesses(g1, b.pid())
	f.requireProcesses(g2, a.pid())
	require.NoError(t, g1.AddProcess(f.ctx, a.pid()))
	f.requireProcesses(g1, a.pid(), b.pid())
	f.requireProcesses(g2)
}

// procRejectsInvalid matters beyond tidiness: writing 0 to cgroup.procs
// moves the writer itself, so a driver passing 0 through would move the
// caller.
func procRejectsInvalid(t *testing.T, f *fixture) {
	g := f.create("inv", nil)
	self, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	for _, pid := range []int{0, -1} {
		require.ErrorIs(t, g.AddProcess(f.ctx, pid), semantic.ErrInvalid, "AddProcess(%d)", pid)
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	require.Equal(t, string(self), string(after), "AddProcess(0) moved the test process")
	gone := f.sleeper()
	gone.closeInput()
	gone.wait()
	require.ErrorIs(t, g.AddProcess(f.ctx, gone.pid()), semantic.ErrNotExist, "AddProcess of reaped pid %d", gone.pid())
	f.requireProcesses(g)
}

func procExitedLeaves(t *testing.T, f *fixture) {
	g := f.create("exit", nil)
	a, b := f.sleeperIn(g), f.sleeperIn(g)
	a.closeInput()
	a.wait()
	f.eventually("the exited process leaves the group", func() bool {
		pids, err := g.Processes(f.ctx)
		require.NoError(t, err)
		return slices.Equal(pids, []int{b.pid()})
	})
	f.requireProcesses(g, b.pid())
}

func procNotDescendants(t *testing.T, f *fixture) {
	top := f.create("top", nil)
	leaf := f.create("top/leaf", nil)
	a := f.sleeperIn(leaf)
	f.requireProcesses(top)
	f.requireProcesses(leaf, a.pid())
}

// eventually polls cond until it holds or patience runs out.
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not within %v", what, patience)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testThread(t *testing.T, s *suite) {
	t.Run("AddThread", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("thr", nil)
		p := f.sleeper()
		tid := otherThread(t, p.pid())
		f.needOp(semantic.Threads,
			func() error { return g.AddThread(f.ctx, tid) },
			func() { f.requireProcesses(g) })
		require.ErrorIs(t, g.AddThread(f.ctx, 0), semantic.ErrInvalid, "AddThread(0)")
		require.NoError(t, g.AddThread(f.ctx, tid), "AddThread(%d) of process %d", tid, p.pid())
		// A group lists the processes any of whose threads it holds.
		f.requireProcesses(g, p.pid())
	})
}

// otherThread returns a thread of pid other than its main thread (a Go
// process has several), or pid itself when it has only one.
func otherThread(t *testing.T, pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	require.NoError(t, err)
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil && tid != pid {
			return tid
		}
	}
	return pid
}

func testStart(t *testing.T, s *suite) {
	t.Run("Inside", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("start/leaf", nil)
		p := f.helper("print-cgroup", false)
		f.needOp(semantic.StartInside,
			func() error { return p.startIn(g) },
			func() { f.requireProcesses(g) })
		require.NoError(t, p.startIn(g))
		var lines []string
		for line := ""; line != "--"; line = p.expect("") {
			if line != "" {
				lines = append(lines, line)
			}
		}
		cg := strings.Join(lines, "\n")
		if in := f.s.h.InGroup; in != nil {
			require.True(t, in(f.d, g.Path(), cg), "the started process's first act saw itself outside %s:\n%s", g.Path(), cg)
		}
		f.requireProcesses(g, p.pid())
		f.requireProcesses(f.open(f.path("start")))
		p.closeInput()
		require.True(t, p.wait().Success(), "helper failed: %s", p.stderr.String())
	})
	t.Run("Failure", func(t *testing.T) {
		t.Parallel()
		f := s.fixture(t)
		g := f.create("fail", nil)
		cmd := exec.Command("/nonexistent/cgsem-test-no-such-program")
		err := g.Start(f.ctx, cmd)
		require.Error(t, err, "starting a program that does not exist")
		require.Nil(t, cmd.Process, "a failed Start has a process")
		f.requireProcesses(g)
	})
}
