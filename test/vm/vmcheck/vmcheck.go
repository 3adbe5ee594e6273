// Package vmcheck holds what the probes of the VM lane (test/vm/probe and
// test/vm/sdprobe) both check in their guest: that it is pure cgroup v2,
// and that a memory limit holds an allocating child. The probes are test
// binaries built statically for the guest, so it imports no more than they
// do.
package vmcheck

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// MountPoint is where the lane's guests mount cgroup2, alone.
const MountPoint = "/sys/fs/cgroup"

// RequireCgroup2 fails the test unless MountPoint is cgroup2: a stray
// setting (named by setting, "CGSEM_VM=1") on a hybrid host must not turn
// the probes loose on the host's cgroups.
func RequireCgroup2(t testing.TB, setting string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(MountPoint, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("%s but %s is not cgroup2 (%v): not the lane's VM, refusing to run", setting, MountPoint, err)
	}
}

// AssertUnifiedOnly checks that /proc/self/cgroup lists the unified
// hierarchy alone: no v1 hierarchy is mounted.
func AssertUnifiedOnly(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	assert.Regexp(t, `^0::/\S*\n$`, string(b), "pure cgroup v2: only the unified hierarchy may be listed")
}

// Read returns the trimmed content of dir/file.
func Read(t testing.TB, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// Keyed reads one counter of a flat keyed file such as memory.events.
func Keyed(t testing.TB, dir, file, key string) int64 {
	t.Helper()
	for _, l := range strings.Split(Read(t, dir, file), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in %s/%s", key, dir, file)
	return 0
}

// Alloc is the probes' "alloc:MiB" child mode: it touches MiB MiB, so
// the memory is charged, not just reserved, and says so on stdout. With
// goAhead set it first waits for a line there, so that it allocates only
// once it has been moved where the test wants it. It returns the child's
// exit code.
func Alloc(arg string, goAhead io.Reader) int {
	mib, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "alloc needs MiB:", err)
		return 3
	}
	if goAhead != nil {
		if _, err := bufio.NewReader(goAhead).ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, "no go-ahead on stdin:", err)
			return 3
		}
	}
	held := make([][]byte, 0, mib)
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
	}
	fmt.Printf("allocated %d MiB\n", len(held))
	return 0
}

// peakSlack is how far memory.peak may pass memory.max: an OOM victim's
// last charges are forced, and one page over was seen.
const peakSlack = 1 << 20

// MemoryCase is one memory-limit case: an Alloc child asking for
// AllocMiB in a group limited to LimitMiB.
type MemoryCase struct {
	Name       string
	LimitMiB   int
	AllocMiB   int
	WantKilled bool
}

// Limit is the case's limit in bytes.
func (c MemoryCase) Limit() int64 { return int64(c.LimitMiB) << 20 }

// MemoryCases are the cases every probe runs: a hog far past the limit
// and an allocation well within it, so that the limit is seen both to
// bite and to leave room.
func MemoryCases() []MemoryCase {
	return []MemoryCase{
		{Name: "hog past the limit is OOM-killed", LimitMiB: 32, AllocMiB: 256, WantKilled: true},
		{Name: "allocation within the limit survives", LimitMiB: 64, AllocMiB: 8},
	}
}

// MemoryRun is one run of a MemoryCase.
type MemoryRun struct {
	MemoryCase
	Dir       string // the group, holding memory.events and memory.peak
	LimitName string // the limit as the test set it: "memory.max", "MemoryMax"
	// OOMBefore is memory.events oom_kill before the child ran.
	OOMBefore int64
}

// Check asserts what the limit did to the child, which ended with err
// (from its Wait) having written output: the group's usage stayed at the
// limit, and the child was OOM-killed (and counted) or allocated all it
// asked for with no OOM kill, as wanted.
func (r MemoryRun) Check(t testing.TB, err error, output string) {
	t.Helper()
	t.Logf("child: err=%v output=%q", err, output)
	after := Keyed(t, r.Dir, "memory.events", "oom_kill")
	peak, perr := strconv.ParseInt(Read(t, r.Dir, "memory.peak"), 10, 64)
	require.NoError(t, perr)
	t.Logf("%s: memory.events oom_kill %d -> %d, memory.peak %d (%s %d)", r.Dir, r.OOMBefore, after, peak, r.LimitName, r.Limit())

	// The kernel may force a few pages past the limit (charges an OOM
	// victim makes on its way out), so the bound has slack; it is still
	// far below what the hog asked for.
	assert.LessOrEqual(t, peak, r.Limit()+peakSlack, "usage stays at %s", r.LimitName)
	if r.WantKilled {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		ws := ee.Sys().(syscall.WaitStatus)
		assert.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child ended by SIGKILL, got %v", ws)
		assert.Greater(t, after, r.OOMBefore, "memory.events oom_kill of %s counts the kill", r.Dir)
		return
	}
	require.NoError(t, err)
	assert.Contains(t, output, fmt.Sprintf("allocated %d MiB", r.AllocMiB))
	assert.Equal(t, r.OOMBefore, after, "no OOM kill")
}
