package reap

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// exitedBy waits for cmd (a liveness bound, not a timing assertion) and
// returns how it ended.
func exitedBy(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%d did not end", cmd.Process.Pid)
	}
	return cmd.ProcessState.String()
}

func TestKillsWhatStaysListed(t *testing.T) {
	a, b := sleeper(t), sleeper(t)
	pids := []int{a.Process.Pid, b.Process.Pid}
	listed, err := KillListed(func() ([]int, error) { return pids, nil })
	require.NoError(t, err)
	require.True(t, listed)
	require.Equal(t, "signal: killed", exitedBy(t, a))
	require.Equal(t, "signal: killed", exitedBy(t, b))
}

// A pid the second listing no longer names has left the group (or its
// process is gone and the pid may be anyone's): it is not signalled.
func TestSparesWhatLeftTheList(t *testing.T) {
	stays, leaves := sleeper(t), sleeper(t)
	calls := 0
	list := func() ([]int, error) {
		calls++
		if calls == 1 {
			return []int{stays.Process.Pid, leaves.Process.Pid}, nil
		}
		return []int{stays.Process.Pid}, nil
	}
	_, err := KillListed(list)
	require.NoError(t, err)
	require.Equal(t, 2, calls, "listed again after the pidfds were taken")
	require.Equal(t, "signal: killed", exitedBy(t, stays))
	// Had it been sent SIGKILL, that would end it whatever came after: a
	// SIGTERM sent now ends it only if it was spared.
	require.NoError(t, leaves.Process.Signal(syscall.SIGTERM))
	require.Equal(t, "signal: terminated", exitedBy(t, leaves), "the one that left was not signalled")
}

// A pid whose process ended between the listings, though listed again,
// is not signalled: the pidfd shows it gone, and its number may be
// another process's by then.
func TestSparesAPidWhoseProcessEnded(t *testing.T) {
	gone := sleeper(t)
	pid := gone.Process.Pid
	calls := 0
	list := func() ([]int, error) {
		calls++
		if calls == 2 {
			_ = gone.Process.Kill()
			_ = gone.Wait() // reaped: the pid is free for anyone
		}
		return []int{pid}, nil
	}
	listed, err := KillListed(list)
	require.NoError(t, err)
	require.True(t, listed)
	require.Equal(t, 2, calls)
}

func TestIgnoresNonPositivePids(t *testing.T) {
	// kill(0) would signal this test's own process group.
	listed, err := KillListed(func() ([]int, error) { return []int{0, -1}, nil })
	require.NoError(t, err)
	require.False(t, listed)
}
