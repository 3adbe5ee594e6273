package fake_test

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func TestAddProcessRefused(t *testing.T) {
	tests := []struct {
		name string
		pid  func(t *testing.T) int
		want error
	}{
		{"zero", func(*testing.T) int { return 0 }, semantic.ErrInvalid},
		{"negative", func(*testing.T) int { return -4 }, semantic.ErrInvalid},
		{"no such process", freePid, semantic.ErrNotExist},
		{"zombie", zombie, semantic.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			g := create(t, d, "a", nil)
			requireKind(t, g.AddProcess(t.Context(), tt.pid(t)), tt.want)
			require.Empty(t, processes(t, g))
		})
	}
}

func TestProcessesMove(t *testing.T) {
	d := newDriver(t, fake.Options{})
	a, b := create(t, d, "a", nil), create(t, d, "b", nil)
	var pids []int
	for range 3 {
		cmd := sleeper(t)
		pids = append(pids, cmd.Process.Pid)
		require.NoError(t, a.AddProcess(t.Context(), cmd.Process.Pid))
	}
	require.Equal(t, slices.Sorted(slices.Values(pids)), processes(t, a))

	// A process is in one group: adding it elsewhere moves it, adding it
	// again where it is changes nothing.
	require.NoError(t, b.AddProcess(t.Context(), pids[1]))
	require.NoError(t, b.AddProcess(t.Context(), pids[1]))
	require.Equal(t, []int{pids[1]}, processes(t, b))
	rest := []int{pids[0], pids[2]}
	slices.Sort(rest)
	require.Equal(t, rest, processes(t, a))
	root, err := d.Open(t.Context(), semantic.Root)
	require.NoError(t, err)
	require.Empty(t, processes(t, root), "Processes lists the group itself, not descendants")
}

func TestExitedProcessLeaves(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a/b", nil)
	cmd := sleeper(t)
	require.NoError(t, g.AddProcess(t.Context(), cmd.Process.Pid))
	require.NoError(t, cmd.Process.Kill())
	// Not reaped: a zombie has exited as far as the group is concerned.
	eventually(t, "the exited process leaves", func() bool { return len(processes(t, g)) == 0 })
	st, err := g.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(0), *st.Pids.Current)
	// A group emptied by an exit can be deleted without Kill.
	require.NoError(t, g.Delete(t.Context(), nil))
}

// Once a caller has seen a process exit, no answer of the driver still
// has it, as the kernel takes a task out of its cgroup when it exits.
func TestReapedProcessGoneAtOnce(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, g semantic.Group)
	}{
		{"processes", func(t *testing.T, g semantic.Group) { require.Empty(t, processes(t, g)) }},
		{"stats", func(t *testing.T, g semantic.Group) {
			st, err := g.Stats(t.Context())
			require.NoError(t, err)
			require.Equal(t, uint64(0), *st.Pids.Current)
		}},
		{"delete", func(t *testing.T, g semantic.Group) { require.NoError(t, g.Delete(t.Context(), nil)) }},
		{"kill", func(t *testing.T, g semantic.Group) { require.NoError(t, g.Kill(t.Context())) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 { // the watcher must not win by luck
				d := newDriver(t, fake.Options{})
				g := create(t, d, "a", nil)
				cmd := sleeper(t)
				require.NoError(t, g.AddProcess(t.Context(), cmd.Process.Pid))
				require.NoError(t, cmd.Process.Kill())
				require.Error(t, cmd.Wait())
				tt.check(t, g)
			}
		})
	}
}

func TestStart(t *testing.T) {
	t.Run("recorded", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		g := create(t, d, "a", nil)
		cmd := exec.Command("sleep", "1000")
		require.NoError(t, g.Start(t.Context(), cmd))
		t.Cleanup(func() { reap(cmd) })
		require.Equal(t, []int{cmd.Process.Pid}, processes(t, g))
	})
	t.Run("exits at once", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		g := create(t, d, "a", nil)
		events, err := g.Events(ctxFor(t))
		require.NoError(t, err)
		cmd := exec.Command("true")
		require.NoError(t, g.Start(t.Context(), cmd))
		require.NoError(t, cmd.Wait())
		require.Equal(t, semantic.EventPopulated, nextEvent(t, events).Kind, "it was in the group")
		require.Equal(t, semantic.EventEmpty, nextEvent(t, events).Kind, "and left when it exited")
		require.Empty(t, processes(t, g))
	})
	t.Run("command fails to start", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		g := create(t, d, "a", nil)
		err := g.Start(t.Context(), exec.Command("/nonexistent/cgsem-test-binary"))
		requireKind(t, err, semantic.ErrNotExist)
		require.Empty(t, processes(t, g))
	})
	t.Run("missing group starts nothing", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		g := create(t, d, "a", nil)
		require.NoError(t, g.Delete(t.Context(), nil))
		cmd := exec.Command("sleep", "1000")
		requireKind(t, g.Start(t.Context(), cmd), semantic.ErrNotExist)
		require.Nil(t, cmd.Process)
	})
	t.Run("unsupported starts nothing", func(t *testing.T) {
		d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.StartInside}})
		g := create(t, d, "a", nil)
		cmd := exec.Command("sleep", "1000")
		requireKind(t, g.Start(t.Context(), cmd), semantic.ErrNotSupported)
		require.Nil(t, cmd.Process)
	})
}

// ownThread returns a thread of this test process other than its main
// one, kept alive until the test ends (the Go runtime may end threads it
// does not need). The tests put this process in groups but never signal it.
func ownThread(t *testing.T) int {
	t.Helper()
	tids, release := make(chan int), make(chan struct{})
	t.Cleanup(func() { close(release) })
	hold := func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		<-release
	}
	// While one goroutine holds the main thread, the next gets another.
	for range 2 {
		go hold()
		if tid := <-tids; tid != os.Getpid() {
			return tid
		}
	}
	t.Fatal("no thread but the main one")
	return 0
}

func TestThreads(t *testing.T) {
	d := newDriver(t, fake.Options{})
	if !d.Capabilities().Supports(semantic.Threads) {
		g := create(t, d, "a", nil)
		requireKind(t, g.AddThread(t.Context(), os.Getpid()), semantic.ErrNotSupported)
		return
	}
	self, tid := os.Getpid(), ownThread(t)
	a, b, c := create(t, d, "a", nil), create(t, d, "b", nil), create(t, d, "c", nil)

	// A thread id given to AddProcess stands for its process.
	require.NoError(t, a.AddProcess(t.Context(), tid))
	require.Equal(t, []int{self}, processes(t, a))

	// One thread moves alone; both groups list the process, as cgroup.procs does.
	require.NoError(t, b.AddThread(t.Context(), tid))
	require.Equal(t, []int{self}, processes(t, a))
	require.Equal(t, []int{self}, processes(t, b))
	st, err := b.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), *st.Pids.Current)

	// Moving the process takes its threads along.
	require.NoError(t, c.AddProcess(t.Context(), self))
	require.Empty(t, processes(t, a))
	require.Empty(t, processes(t, b))
	require.Equal(t, []int{self}, processes(t, c))

	requireKind(t, c.AddThread(t.Context(), 0), semantic.ErrInvalid)
	requireKind(t, c.AddThread(t.Context(), freePid(t)), semantic.ErrNotExist)
}

func TestThreadsUnsupported(t *testing.T) {
	d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.Threads}})
	g := create(t, d, "a", nil)
	err := g.AddThread(t.Context(), os.Getpid())
	requireKind(t, err, semantic.ErrNotSupported)
	require.Contains(t, err.Error(), "threads")
	require.Empty(t, processes(t, g))
}

func TestKill(t *testing.T) {
	d := newDriver(t, fake.Options{})
	ctx := ctxFor(t)
	inside := map[string]*exec.Cmd{}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		g := create(t, d, p, nil)
		inside[p] = sleeper(t)
		require.NoError(t, g.AddProcess(ctx, inside[p].Process.Pid))
	}
	sibling := create(t, d, "x", nil)
	outside := sleeper(t)
	require.NoError(t, sibling.AddProcess(ctx, outside.Process.Pid))

	a, err := d.Open(ctx, semantic.MustPath("a"))
	require.NoError(t, err)
	require.NoError(t, a.Kill(ctx))
	for p, cmd := range inside {
		require.Error(t, cmd.Wait(), p)
		require.Equal(t, "signal: killed", cmd.ProcessState.String(), p)
	}
	st, err := a.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(0), *st.Pids.Current, "Kill returns once the subtree is empty")
	require.Equal(t, []int{outside.Process.Pid}, processes(t, sibling), "a sibling is untouched")
	require.Nil(t, outside.ProcessState)
	require.Equal(t, []string{"a", "a/b", "a/b/c", "x"}, allGroups(t, d), "Kill removes no group")

	require.NoError(t, a.Kill(ctx), "killing an empty group is a no-op")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, sibling.Kill(cancelled), context.Canceled)
	require.Nil(t, outside.ProcessState)
}

func TestKillUnsupported(t *testing.T) {
	d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.Kill}})
	g := create(t, d, "a", nil)
	cmd := sleeper(t)
	require.NoError(t, g.AddProcess(t.Context(), cmd.Process.Pid))
	requireKind(t, g.Kill(t.Context()), semantic.ErrNotSupported)
	requireKind(t, g.Delete(t.Context(), &semantic.DeleteOptions{Kill: true}), semantic.ErrNotSupported)
	require.Equal(t, []int{cmd.Process.Pid}, processes(t, g))
	require.Nil(t, cmd.ProcessState)
}

func TestStats(t *testing.T) {
	d := newDriver(t, fake.Options{})
	ctx := ctxFor(t)
	a := create(t, d, "a", &semantic.Resources{Pids: &semantic.Pids{Max: new(semantic.Count(10))}})
	b := create(t, d, "a/b", nil)

	st, err := a.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(0), *st.Pids.Current)
	require.Equal(t, semantic.Count(10), *st.Pids.Limit)
	require.Equal(t, uint64(0), *st.Memory.Usage, "no process uses no memory")
	require.Equal(t, uint64(0), *st.Memory.OOM)
	require.Equal(t, uint64(0), *st.Memory.OOMKill)
	// Figures the fake cannot know are absent, not zero.
	require.Nil(t, st.Memory.Peak)
	require.Nil(t, st.Memory.Anon)
	require.Nil(t, st.Memory.File)
	require.Nil(t, st.Memory.Swap)
	require.Nil(t, st.CPU.Periods)
	require.Nil(t, st.CPU.ThrottledPeriods)
	require.Nil(t, st.CPU.ThrottledTime)
	require.Nil(t, st.IO)
	require.Nil(t, st.Pressure)

	// Settled, so that figures read at different moments are comparable.
	cmd1, cmd2 := settledSleeper(t), settledSleeper(t)
	require.NoError(t, a.AddProcess(ctx, cmd1.Process.Pid))
	require.NoError(t, b.AddProcess(ctx, cmd2.Process.Pid))
	stA, err := a.Stats(ctx)
	require.NoError(t, err)
	stB, err := b.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), *stA.Pids.Current, "descendants count, as in pids.current")
	require.Equal(t, uint64(1), *stB.Pids.Current)
	require.Positive(t, *stB.Memory.Usage, "a running process is resident")
	require.Greater(t, *stA.Memory.Usage, *stB.Memory.Usage, "the parent sums both")
	require.NotNil(t, stA.CPU.Usage)
	require.Equal(t, *stA.CPU.Usage, *stA.CPU.User+*stA.CPU.System)
	require.Equal(t, semantic.Count(semantic.Unlimited), *stB.Pids.Limit)

	// Moving a process moves its figures.
	other := create(t, d, "other", nil)
	require.NoError(t, other.AddProcess(ctx, cmd2.Process.Pid))
	stB, err = b.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(0), *stB.Pids.Current)
	require.Equal(t, uint64(0), *stB.Memory.Usage)

	require.NoError(t, d.InjectOOM(b.Path()))
	require.NoError(t, d.InjectOOM(b.Path()))
	stB, err = b.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), *stB.Memory.OOM)
	require.Equal(t, uint64(2), *stB.Memory.OOMKill)
	requireKind(t, d.InjectOOM(semantic.MustPath("missing")), semantic.ErrNotExist)

	root, err := d.Open(ctx, semantic.Root)
	require.NoError(t, err)
	st, err = root.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), *st.Pids.Current)
	require.Nil(t, st.Pids.Limit, "the root has no limit of its own")
}

func TestStatsWithoutPidsLimit(t *testing.T) {
	d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.PidsMax}})
	g := create(t, d, "a", nil)
	st, err := g.Stats(t.Context())
	require.NoError(t, err)
	require.NotNil(t, st.Pids.Current)
	require.Nil(t, st.Pids.Limit)
}
