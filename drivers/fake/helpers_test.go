package fake_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// liveness bounds how long a test waits for something that must happen
// (a process to exit, an event to arrive); it is a hang guard, not a
// timing assertion.
const liveness = 30 * time.Second

// hostOpts simulates a host with CPUs 0-3 and memory nodes 0-1, for tests
// that set CPU and memory node sets.
func hostOpts() fake.Options {
	return fake.Options{HostCPUs: semantic.CPUSet{0, 1, 2, 3}, HostMems: semantic.CPUSet{0, 1}}
}

func newDriver(t *testing.T, opts fake.Options) *fake.Driver {
	t.Helper()
	d := fake.New(opts)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), liveness)
	t.Cleanup(cancel)
	return ctx
}

// sleeper starts a process the test owns, outside any group; cleanup
// kills and reaps it.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { reap(cmd) })
	return cmd
}

// settledSleeper is a sleeper that has finished starting: it is blocked
// in its sleep system call, so its resident memory no longer changes while
// a test compares figures taken at different moments.
func settledSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := sleeper(t)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", cmd.Process.Pid))
		if err != nil {
			return false
		}
		nr, _, _ := strings.Cut(string(b), " ")
		return nr == strconv.Itoa(unix.SYS_CLOCK_NANOSLEEP) || nr == strconv.Itoa(unix.SYS_NANOSLEEP)
	}, liveness, time.Millisecond, "sleep %d never reached its sleep", cmd.Process.Pid)
	return cmd
}

// reap kills and waits for cmd once, whoever calls it first.
func reap(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// zombie returns the pid of a child that has exited and is not reaped.
func zombie(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Wait() })
	var info unix.Siginfo
	// WNOWAIT leaves the child a zombie.
	require.NoError(t, unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil))
	return cmd.Process.Pid
}

// freePid returns a pid no process has: one that was reaped.
func freePid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	pid := cmd.Process.Pid
	if syscall.Kill(pid, 0) == nil {
		t.Skipf("pid %d was reused at once", pid)
	}
	return pid
}

func create(t *testing.T, d *fake.Driver, path string, res *semantic.Resources) semantic.Group {
	t.Helper()
	g, err := d.Create(t.Context(), semantic.MustPath(path), res)
	require.NoError(t, err)
	return g
}

func readBack(t *testing.T, g semantic.Group) *semantic.Resources {
	t.Helper()
	r, err := g.Resources(t.Context())
	require.NoError(t, err)
	return r
}

// requireKind checks err is an *semantic.Error of the fake driver wrapping kind.
func requireKind(t *testing.T, err error, kind error) *semantic.Error {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind)
	var e *semantic.Error
	require.True(t, errors.As(err, &e), "%v is not a *semantic.Error", err)
	require.Equal(t, fake.Name, e.Driver, "error %v", err)
	return e
}

// nextEvent returns the next event on ch, failing if none arrives.
func nextEvent(t *testing.T, ch <-chan semantic.Event) semantic.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "event channel closed")
		return ev
	case <-time.After(liveness):
		t.Fatal("no event arrived")
	}
	return semantic.Event{}
}

// eventually polls cond until it holds, failing after the liveness bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func processes(t *testing.T, g semantic.Group) []int {
	t.Helper()
	p, err := g.Processes(t.Context())
	require.NoError(t, err)
	return p
}

// fullRequest sets every resource field to a value other than the
// default, valid on hostOpts' host.
func fullRequest() *semantic.Resources {
	return &semantic.Resources{
		Memory: &semantic.Memory{
			Max: new(512 * semantic.MiB), High: new(400 * semantic.MiB), Low: new(64 * semantic.MiB),
			Min: new(32 * semantic.MiB), Swap: new(128 * semantic.MiB),
		},
		CPU: &semantic.CPU{
			Weight: new(uint64(250)),
			Max:    &semantic.CPUMax{CPUs: 1.5, Period: 50 * time.Millisecond},
			Cpus:   semantic.CPUSet{1, 2},
			Mems:   semantic.CPUSet{0},
		},
		IO: &semantic.IO{
			Weight: new(uint64(300)),
			Limits: []semantic.IOLimit{{Major: 8, Minor: 16, WriteIOPS: 100}, {Major: 8, Minor: 0, ReadBPS: 1 << 20}},
		},
		Pids: &semantic.Pids{Max: new(semantic.Count(64))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
			{Allow: true, Type: semantic.CharDevice, Major: 136, Minor: semantic.Wildcard, Access: semantic.Read | semantic.Write},
		}},
		HugeTLB: []semantic.HugeTLBLimit{{PageSize: 2 * semantic.MiB, Limit: 1 * semantic.GiB}},
	}
}

// otherRequest sets every resource field to yet other values, so a test
// can tell a restored state from a default or a requested one.
func otherRequest() *semantic.Resources {
	return &semantic.Resources{
		Memory: &semantic.Memory{
			Max: new(256 * semantic.MiB), High: new(200 * semantic.MiB), Low: new(16 * semantic.MiB),
			Min: new(8 * semantic.MiB), Swap: new(semantic.Bytes(0)),
		},
		CPU: &semantic.CPU{
			Weight: new(uint64(50)),
			Max:    &semantic.CPUMax{CPUs: 0.5},
			Cpus:   semantic.CPUSet{3},
			Mems:   semantic.CPUSet{1},
		},
		IO:   &semantic.IO{Weight: new(uint64(20)), Limits: []semantic.IOLimit{{Major: 253, Minor: 1, ReadIOPS: 5}}},
		Pids: &semantic.Pids{Max: new(semantic.Count(7))},
		Devices: &semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{
			{Allow: false, Type: semantic.BlockDevice, Major: semantic.Wildcard, Minor: semantic.Wildcard, Access: semantic.Mknod},
		}},
		HugeTLB: []semantic.HugeTLBLimit{{PageSize: 1 * semantic.GiB, Limit: 2 * semantic.GiB}},
	}
}
