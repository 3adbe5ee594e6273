package devfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// childEnv carries the probes a re-executed test binary runs inside a
// group: "open PATH r|w|rw" and "mknod PATH c|b MAJOR MINOR", separated by
// ";". The child prints one errno number (0 for success) per probe.
const childEnv = "CGSEM_DEVFILTER_CHILD"

func TestMain(m *testing.M) {
	if probes, ok := os.LookupEnv(childEnv); ok {
		os.Exit(runProbes(probes))
	}
	os.Exit(m.Run())
}

func runProbes(probes string) int {
	for _, p := range strings.Split(probes, ";") {
		f := strings.Fields(p)
		var err error
		switch {
		case len(f) == 3 && f[0] == "open":
			flags := map[string]int{"r": unix.O_RDONLY, "w": unix.O_WRONLY, "rw": unix.O_RDWR}[f[2]]
			var fd int
			if fd, err = unix.Open(f[1], flags|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
		case len(f) == 5 && f[0] == "mknod":
			mode := uint32(unix.S_IFCHR)
			if f[2] == "b" {
				mode = unix.S_IFBLK
			}
			major, _ := strconv.Atoi(f[3])
			minor, _ := strconv.Atoi(f[4])
			if err = unix.Mknod(f[1], mode|0o600, int(unix.Mkdev(uint32(major), uint32(minor)))); err == nil {
				unix.Unlink(f[1])
			}
		default:
			fmt.Fprintf(os.Stderr, "bad probe %q\n", p)
			return 2
		}
		var errno unix.Errno
		switch {
		case err == nil:
			fmt.Println(0)
		case errors.As(err, &errno):
			fmt.Println(int(errno))
		default:
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	return 0
}

// probe is one device access a child tries, and the errno it must get.
type probe struct {
	op   string
	want unix.Errno
}

// runChild starts the test binary inside the group open as cgroupFD
// (CLONE_INTO_CGROUP; -1: where the test runs) and checks every probe.
func runChild(t *testing.T, cgroupFD int, label string, probes ...probe) {
	t.Helper()
	ops := make([]string, len(probes))
	for i, p := range probes {
		ops[i] = p.op
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(ops, ";"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if cgroupFD >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	out, err := cmd.Output()
	require.NoError(t, err, "%s: child: %s", label, stderr.String())
	got := strings.Fields(string(out))
	require.Len(t, got, len(probes), "%s: child output %q", label, out)
	for i, p := range probes {
		n, err := strconv.Atoi(got[i])
		require.NoError(t, err)
		assert.Equal(t, p.want, unix.Errno(n), "%s: %s: got %q, want %q", label, p.op, unix.Errno(n), p.want)
	}
}

// hostCgroup2 skips the test unless it runs as root with a writable
// cgroup2 own group, and returns that group's directory.
func hostCgroup2(t testing.TB) string {
	t.Helper()
	return testenv.RequireCgroup2(t)
}

// testGroup creates a uniquely named group beneath this process's own
// cgroup2 group (removed and leak-checked in cleanup by testenv) and
// returns its path and an open descriptor of its directory, closed in
// cleanup first.
func testGroup(t testing.TB) (string, int) {
	t.Helper()
	testenv.RequireCgroup2(t)
	dir := testenv.NewScratch(t, "").Dirs[""]
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return dir, fd
}

// openFDs counts this process's descriptors, for leak checks.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents) - 1 // the directory ReadDir had open
}

// checkNoFDLeak fails the test in cleanup if it ends with more
// descriptors than it started with. Register it first so it runs last.
func checkNoFDLeak(t *testing.T) {
	before := openFDs(t)
	t.Cleanup(func() {
		if after := openFDs(t); after != before {
			t.Errorf("leak: %d descriptors before, %d after", before, after)
		}
	})
}

// progLoaded reports whether the kernel still holds the program with id.
func progLoaded(t testing.TB, id uint32) bool {
	t.Helper()
	attr := struct{ id, next, openFlags uint32 }{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == unix.ENOENT {
		return false
	}
	require.NoError(t, err)
	unix.Close(fd)
	return true
}

// checkProgsFreed waits until the kernel has freed the programs: a program
// a removed cgroup held is released from a workqueue, not by rmdir itself.
func checkProgsFreed(t *testing.T, ids ...uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for progLoaded(t, id) {
			if time.Now().After(deadline) {
				t.Errorf("leak: device program %d is still loaded", id)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "devfilter", Level: hclog.Trace, Output: t.Output()})
}

func devices(t testing.TB, def semantic.DevicePolicy, rules ...string) *semantic.Devices {
	t.Helper()
	d := &semantic.Devices{Default: def}
	for _, r := range rules {
		verb, spec, _ := strings.Cut(r, " ")
		d.Rules = append(d.Rules, mustRule(t, verb == "allow", spec))
	}
	return d
}

// TestHostFilterEnforcesAndReplaces follows one group through the life the
// driver gives it: a deny-all list with /dev/null allowed, a change to
// /dev/zero read-only that is never wider than either list, removal.
func TestHostFilterEnforcesAndReplaces(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	ctx := context.Background()
	nodes := t.TempDir()
	nullNode, zeroNode := filepath.Join(nodes, "null"), filepath.Join(nodes, "zero")

	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	defer f.Close()

	// The same probes outside the group all succeed, so every EPERM
	// below is the filter's doing.
	everything := []probe{
		{"open /dev/null rw", 0}, {"open /dev/zero r", 0}, {"open /dev/zero w", 0},
		{"mknod " + nullNode + " c 1 3", 0}, {"mknod " + zeroNode + " c 1 5", 0},
	}
	runChild(t, -1, "outside the group", everything...)

	first := devices(t, semantic.DenyByDefault, "allow /dev/null")
	require.NoError(t, f.Set(ctx, first))
	firstID := f.ProgramID()
	ids, err := Query(fd)
	require.NoError(t, err)
	assert.Equal(t, []uint32{firstID}, ids)
	runChild(t, fd, "deny all but /dev/null",
		probe{"open /dev/null rw", 0}, probe{"open /dev/zero r", unix.EPERM}, probe{"open /dev/zero w", unix.EPERM},
		probe{"mknod " + nullNode + " c 1 3", 0}, probe{"mknod " + zeroNode + " c 1 5", unix.EPERM})

	second := devices(t, semantic.DenyByDefault, "allow /dev/zero:r")
	secondProg, err := Compile(second)
	require.NoError(t, err)
	sawBoth := false
	f.between = func() {
		sawBoth = true
		ids, err := Query(fd)
		require.NoError(t, err)
		assert.ElementsMatch(t, []uint32{firstID, secondIDOf(t, cache, secondProg)}, ids,
			"while replacing, both programs are attached")
		// Both must allow: /dev/null only the old list allows, /dev/zero
		// only the new one, so during the swap neither opens.
		runChild(t, fd, "during the replacement",
			probe{"open /dev/null r", unix.EPERM}, probe{"open /dev/zero r", unix.EPERM})
	}
	require.NoError(t, f.Set(ctx, second))
	f.between = nil
	assert.True(t, sawBoth, "Set replaced through the hook")
	secondID := f.ProgramID()
	assert.NotEqual(t, firstID, secondID)
	ids, err = Query(fd)
	require.NoError(t, err)
	assert.Equal(t, []uint32{secondID}, ids, "the old program is detached")
	assert.False(t, progLoaded(t, firstID), "the old program is freed: nothing holds it")
	runChild(t, fd, "/dev/zero read only",
		probe{"open /dev/null r", unix.EPERM}, probe{"open /dev/zero r", 0}, probe{"open /dev/zero w", unix.EPERM},
		probe{"mknod " + zeroNode + " c 1 5", unix.EPERM})

	require.NoError(t, f.Verify())
	assert.Equal(t, second, f.Devices(), "read-back is the list applied")

	require.NoError(t, f.Remove())
	ids, err = Query(fd)
	require.NoError(t, err)
	assert.Empty(t, ids)
	assert.Nil(t, f.Devices())
	runChild(t, fd, "after removal", everything...)
	assert.Equal(t, 0, cache.Len())
	checkProgsFreed(t, firstID, secondID)
}

// secondIDOf finds the id of p's loaded program through the cache, which
// holds it while Set is between attach and detach.
func secondIDOf(t *testing.T, c *Cache, p *Program) uint32 {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.progs[p.key()]
	require.True(t, ok, "the new program is in the cache")
	require.NotNil(t, e.prog)
	return e.prog.id
}

// TestHostFilterLeavesForeignPrograms: a program this package did not
// attach through the Filter survives every Set and Remove.
func TestHostFilterLeavesForeignPrograms(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	ctx := context.Background()

	foreignProg, err := Compile(devices(t, semantic.AllowByDefault, "deny c 1:7 rwm"))
	require.NoError(t, err)
	foreign, err := Load(ctx, foreignProg)
	require.NoError(t, err)
	defer foreign.Close()
	require.NoError(t, Attach(fd, foreign))
	defer func() { require.NoError(t, Detach(fd, foreign)) }()

	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	defer f.Close()
	for i, d := range []*semantic.Devices{
		devices(t, semantic.DenyByDefault, "allow /dev/null", "allow /dev/full"),
		devices(t, semantic.AllowByDefault, "deny /dev/zero:w"),
	} {
		require.NoError(t, f.Set(ctx, d))
		ids, err := Query(fd)
		require.NoError(t, err)
		assert.ElementsMatch(t, []uint32{foreign.ID(), f.ProgramID()}, ids, "after Set %d", i)
	}
	// Every attached program must allow: the foreign one still denies
	// /dev/full, which the Filter's list allows.
	runChild(t, fd, "filter and foreign program",
		probe{"open /dev/full r", unix.EPERM}, probe{"open /dev/zero r", 0}, probe{"open /dev/zero w", unix.EPERM})
	require.NoError(t, f.Remove())
	ids, err := Query(fd)
	require.NoError(t, err)
	assert.Equal(t, []uint32{foreign.ID()}, ids)
}

// TestHostReplaceUndoesOnFailure: when the old program cannot be detached
// (here someone else detached it), the new one is detached again, so the
// cgroup is as it was and the Filter still holds the old list.
func TestHostReplaceUndoesOnFailure(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	ctx := context.Background()
	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	defer f.Close()

	first := devices(t, semantic.DenyByDefault, "allow /dev/null")
	require.NoError(t, f.Set(ctx, first))
	f.mu.Lock()
	require.NoError(t, Detach(fd, f.prog))
	f.mu.Unlock()

	err := f.Verify()
	require.Error(t, err)
	assert.ErrorIs(t, err, semantic.ErrNotExist)

	err = f.Set(ctx, devices(t, semantic.DenyByDefault, "allow /dev/zero"))
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ENOENT)
	ids, qerr := Query(fd)
	require.NoError(t, qerr)
	assert.Empty(t, ids, "the new program was detached again")
	assert.Equal(t, first, f.Devices())
	assert.Equal(t, 1, cache.Len(), "the new program went back to the cache")

	// The program is gone already; removing it is done, not an error.
	require.NoError(t, f.Remove())
	assert.Nil(t, f.Devices())
	assert.Equal(t, 0, cache.Len())
}

// TestHostCacheSharesPrograms: groups with the same rules share one
// program; it lives until the last of them lets go.
func TestHostCacheSharesPrograms(t *testing.T) {
	checkNoFDLeak(t)
	_, fdA := testGroup(t)
	_, fdB := testGroup(t)
	_, fdC := testGroup(t)
	ctx := context.Background()
	cache := NewCache(testLogger(t))
	defer cache.Close()

	same := func() *semantic.Devices {
		return devices(t, semantic.DenyByDefault, "allow /dev/null", "allow c 136:* rw")
	}
	a, b, c := cache.NewFilter(fdA, "a"), cache.NewFilter(fdB, "b"), cache.NewFilter(fdC, "c")
	require.NoError(t, a.Set(ctx, same()))
	require.NoError(t, b.Set(ctx, same()))
	require.NoError(t, c.Set(ctx, devices(t, semantic.DenyByDefault, "allow /dev/zero")))
	assert.Equal(t, a.ProgramID(), b.ProgramID())
	assert.NotEqual(t, a.ProgramID(), c.ProgramID())
	assert.Equal(t, 2, cache.Len())

	// Setting the same list again changes nothing in the kernel.
	shared := a.ProgramID()
	require.NoError(t, a.Set(ctx, same()))
	assert.Equal(t, shared, a.ProgramID())
	ids, err := Query(fdA)
	require.NoError(t, err)
	assert.Equal(t, []uint32{shared}, ids)

	require.NoError(t, a.Remove())
	assert.True(t, progLoaded(t, shared), "b still holds the shared program")
	runChild(t, fdB, "b keeps its filter", probe{"open /dev/null r", 0}, probe{"open /dev/zero r", unix.EPERM})
	require.NoError(t, b.Remove())
	require.NoError(t, c.Remove())
	assert.Equal(t, 0, cache.Len())
	checkProgsFreed(t, shared)
}

// TestHostCacheConcurrentAcquire: concurrent Acquires of one program load
// it once and share it.
func TestHostCacheConcurrentAcquire(t *testing.T) {
	hostCgroup2(t)
	checkNoFDLeak(t)
	ctx := context.Background()
	cache := NewCache(testLogger(t))
	defer cache.Close()
	p, err := Compile(devices(t, semantic.DenyByDefault, "allow /dev/null", "allow /dev/urandom:r"))
	require.NoError(t, err)

	const n = 8
	got := make(chan *Loaded, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			l, err := cache.Acquire(ctx, p)
			errs <- err
			got <- l
		}()
	}
	var first *Loaded
	for range n {
		require.NoError(t, <-errs)
		l := <-got
		if first == nil {
			first = l
		}
		assert.Same(t, first, l)
	}
	assert.Equal(t, 1, cache.Len())
	for range n - 1 {
		require.NoError(t, cache.Release(first))
	}
	assert.True(t, progLoaded(t, first.ID()))
	require.NoError(t, cache.Release(first))
	assert.Equal(t, 0, cache.Len())
	assert.Error(t, cache.Release(first), "a release too many is refused")
	checkProgsFreed(t, first.ID())
}

// TestHostQueryMany: Query returns every attached program, also past its
// first buffer (the kernel answers ENOSPC with the real count).
func TestHostQueryMany(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	ctx := context.Background()
	var want []uint32
	for minor := range 12 {
		p, err := Compile(devices(t, semantic.AllowByDefault, fmt.Sprintf("deny c 1:%d w", 100+minor)))
		require.NoError(t, err)
		l, err := Load(ctx, p)
		require.NoError(t, err)
		require.NoError(t, Attach(fd, l))
		t.Cleanup(func() {
			assert.NoError(t, Detach(fd, l))
			assert.NoError(t, l.Close())
		})
		want = append(want, l.ID())
	}
	ids, err := Query(fd)
	require.NoError(t, err)
	assert.ElementsMatch(t, want, ids)
}

// TestHostRemovedGroupReleasesProgram: deleting the cgroup (the driver's
// delete path) frees a program it still had attached.
func TestHostRemovedGroupReleasesProgram(t *testing.T) {
	checkNoFDLeak(t)
	dir, fd := testGroup(t)
	ctx := context.Background()
	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	require.NoError(t, f.Set(ctx, devices(t, semantic.DenyByDefault, "allow /dev/null")))
	id := f.ProgramID()
	require.NoError(t, f.Close())
	assert.True(t, progLoaded(t, id), "the attached program outlives the Filter")
	require.NoError(t, unix.Rmdir(dir))
	checkProgsFreed(t, id)
}

// TestHostLoadRefusalCarriesLog: a program the verifier refuses comes back
// with the verifier's reason.
func TestHostLoadRefusalCarriesLog(t *testing.T) {
	hostCgroup2(t)
	checkNoFDLeak(t)
	// exit with r0 never set.
	bad := &Program{code: string(appendInsn(nil, insn{op: opEXIT}))}
	_, err := Load(context.Background(), bad)
	require.Error(t, err)
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.Contains(t, le.Log, "R0 !read_ok")
	assert.Contains(t, err.Error(), "R0 !read_ok")
	assert.ErrorIs(t, err, semantic.ErrNotSupported)
}

// verifierProcessed loads p with the verifier's statistics on and returns
// how many instructions it processed.
func verifierProcessed(t *testing.T, p *Program) int {
	t.Helper()
	code := p.key()
	buf := make([]byte, 4096)
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(p.Len()),
		insns:    ptr{p: unsafe.Pointer(unsafe.StringData(code))},
		license:  ptr{p: unsafe.Pointer(unsafe.StringData(license + "\x00"))},
		logLevel: 4, // BPF_LOG_STATS
		logSize:  uint32(len(buf)),
		logBuf:   ptr{p: unsafe.Pointer(&buf[0])},
	}
	fd, err := loadRetry(context.Background(), &attr)
	require.NoError(t, err)
	unix.Close(fd)
	log, _, _ := strings.Cut(string(buf), "\x00")
	_, after, ok := strings.Cut(log, "processed ")
	require.True(t, ok, "no statistics in %q", log)
	n, err := strconv.Atoi(strings.Fields(after)[0])
	require.NoError(t, err, "statistics %q", log)
	return n
}

// TestHostLoadLargeLists: the verifier takes the compiled form of long
// lists, and its work stays linear in the program's length (a carried
// register value would make it quadratic; see emit).
func TestHostLoadLargeLists(t *testing.T) {
	hostCgroup2(t)
	checkNoFDLeak(t)
	for _, n := range []int{1, 50, 500, 4000} {
		t.Run(strconv.Itoa(n)+" rules", func(t *testing.T) {
			p, err := Compile(benchDevices(n))
			require.NoError(t, err)
			processed := verifierProcessed(t, p)
			t.Logf("%d instructions, verifier processed %d", p.Len(), processed)
			assert.LessOrEqual(t, processed, 8*p.Len(), "verifier work grows faster than the program")
		})
	}
	t.Run("10000 rules", func(t *testing.T) {
		// Past about 4,000 numbered rules the verifier's limit of 8,192
		// pending branches refuses the program; the refusal must say so.
		p, err := Compile(benchDevices(10000))
		require.NoError(t, err)
		l, err := Load(context.Background(), p)
		if err == nil {
			t.Logf("this kernel takes %d instructions", p.Len())
			require.NoError(t, l.Close())
			return
		}
		var le *LoadError
		require.ErrorAs(t, err, &le)
		assert.Contains(t, le.Log, "too complex")
		assert.ErrorIs(t, err, semantic.ErrNotSupported)
	})
}
