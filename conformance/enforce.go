package conformance

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// Enforcement subtests run real processes against real limits. They use
// generous bounds: they prove a limit holds, not how fast.

func testEnforce(t *testing.T, s *suite) {
	for _, c := range []struct {
		name    string
		feature semantic.Feature
		fn      func(*testing.T, *fixture)
	}{
		{"Memory", semantic.MemoryMax, enforceMemory},
		{"Pids", semantic.PidsMax, enforcePids},
		{"Devices", semantic.DevicesFeature, enforceDevices},
		{"Freeze", semantic.Freeze, enforceFreeze},
		{"CPU", semantic.CPUMaxFeature, enforceCPU},
		{"Kill", semantic.Kill, enforceKill},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !slices.Contains(s.h.Enforces, c.feature) {
				t.Skipf("harness does not enforce %s", c.feature)
			}
			f := s.fixture(t)
			if !f.supports(c.feature) {
				t.Fatalf("the harness says %s is enforced, but the driver declares it unsupported (%s)", c.feature, f.caps.Get(c.feature).Reason)
			}
			c.fn(t, f)
		})
	}
}

// enforceMemory: a hog allocating four times the limit is OOM-killed, and
// the kill is counted and reported where the driver has the figures.
func enforceMemory(t *testing.T, f *fixture) {
	res := memRes(func(m *semantic.Memory) { m.Max = ptr(64 * semantic.MiB) })
	if f.caps.Get(semantic.MemorySwap).Support == semantic.Exact {
		// Swap would let the hog live on past the limit.
		res.Memory.Swap = ptr(semantic.Bytes(0))
	}
	g := f.create("oom", res)
	var ev <-chan semantic.Event
	if f.supports(semantic.EventsOOM) {
		ev = f.events(g)
	}
	p := f.runIn(g, "hog", strconv.Itoa(256<<20))
	select {
	case <-p.exited:
	case line := <-p.lineWith("hogged"):
		t.Fatalf("the hog allocated %s under a 64MiB limit and lives (is there swap?)", line)
	case <-time.After(patience):
		t.Fatalf("the hog neither finished nor died within %v", patience)
	}
	st := p.cmd.ProcessState
	require.True(t, killedBySIGKILL(st), "the hog should die of SIGKILL (the OOM killer), got %v; stderr: %s", st, p.stderr.String())
	stats := f.stats(g)
	if stats.Memory != nil && stats.Memory.OOMKill != nil {
		require.GreaterOrEqual(t, *stats.Memory.OOMKill, uint64(1), "OOM kills counted")
	}
	if ev != nil {
		f.expectEvent(ev, g.Path(), semantic.EventOOMKill, semantic.EventOOM)
	}
}

// enforcePids: a process that tries 20 forks under a small pids limit gets
// no more than the limit leaves beside its own threads, and EAGAIN for the
// rest. The limit is 5, or the forker's thread count plus 2 if that is
// more, so its runtime keeps some room. The forker is started outside and
// moved in (migration is not limited), so its threads exist before the
// limit bites.
func enforcePids(t *testing.T, f *fixture) {
	const tries = 20
	p := f.helper("fork", true, strconv.Itoa(tries)).start()
	threads, err := strconv.Atoi(strings.TrimPrefix(p.expect("threads "), "threads "))
	require.NoError(t, err)
	p.expect("ready")
	limit := max(5, threads+2)
	g := f.create("pids", pidsRes(semantic.Count(limit)))
	require.NoError(t, g.AddProcess(f.ctx, p.pid()))
	p.send("go")
	var ok, fail int
	for {
		line := p.expect("")
		if strings.HasPrefix(line, "forked") {
			break
		}
		switch {
		case strings.HasPrefix(line, "fork ok"):
			ok++
		case line == "fork fail "+strconv.Itoa(int(syscall.EAGAIN)):
			fail++
		case strings.HasPrefix(line, "fork fail"):
			t.Fatalf("a fork failed otherwise than with EAGAIN: %q", line)
		}
	}
	t.Logf("a forker of %d threads started %d of %d children under pids max %d", threads, ok, tries, limit)
	require.LessOrEqual(t, ok, limit-threads, "forks that succeeded under pids max %d beside %d threads", limit, threads)
	require.Equal(t, tries, ok+fail, "every fork beyond the limit fails with EAGAIN")
}

// enforceDevices: a process in the group opens device nodes; each open
// succeeds exactly when the reference evaluator says the list allows it,
// and the answer follows the list as it changes.
func enforceDevices(t *testing.T, f *fixture) {
	type node struct {
		path         string
		typ          semantic.DeviceType
		major, minor int64
	}
	var nodes []node
	for _, path := range []string{"/dev/null", "/dev/zero", "/dev/full"} {
		typ, maj, min, err := semantic.StatDevice(path)
		if err == nil {
			nodes = append(nodes, node{path, typ, maj, min})
		}
	}
	require.NotEmpty(t, nodes, "no /dev/null, /dev/zero or /dev/full to test with")
	null := nodes[0]
	lists := []*semantic.Devices{
		{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{rule(true, null.typ, null.major, null.minor, semantic.AllAccess)}},
	}
	if len(nodes) > 1 {
		z := nodes[1]
		lists = append(lists,
			&semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{rule(true, z.typ, z.major, z.minor, semantic.Read)}},
			&semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{rule(false, null.typ, null.major, null.minor, semantic.Write)}},
			&semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
				rule(true, semantic.CharDevice, semantic.Wildcard, semantic.Wildcard, semantic.Read|semantic.Write),
				rule(false, z.typ, z.major, z.minor, semantic.Write)}},
		)
	}
	g := f.create("dev", &semantic.Resources{Devices: lists[0]})
	p := f.runIn(g, "open")
	current := lists[0]
	for _, list := range lists {
		err := g.Apply(f.ctx, &semantic.Resources{Devices: list})
		if errors.Is(err, semantic.ErrNotSupported) {
			// A backend may be unable to express a list (v1 cannot carve
			// an exception out of a wildcard allow); the list before it
			// must then still be in force.
			t.Logf("the driver cannot express %s: %v", showDevices(list), err)
		} else {
			require.NoError(t, err, "apply %s", showDevices(list))
			current = list
		}
		for _, n := range nodes {
			for _, how := range []struct {
				flag string
				want semantic.Access
			}{{"r", semantic.Read}, {"w", semantic.Write}, {"rw", semantic.Read | semantic.Write}} {
				p.send(n.path + " " + how.flag)
				got := strings.TrimPrefix(p.expect("errno "), "errno ")
				want := "0"
				if !current.Allows(n.typ, n.major, n.minor, how.want) {
					want = strconv.Itoa(int(syscall.EPERM))
				}
				require.Equal(t, want, got, "open %s %s under %s (errno)", n.path, how.flag, showDevices(current))
			}
		}
	}
}

// enforceFreeze: a spinning process makes no progress while frozen and
// resumes once thawed.
func enforceFreeze(t *testing.T, f *fixture) {
	g := f.create("frz", nil)
	p := f.runIn(g, "spin")
	f.eventually("the spinner reports progress", func() bool { return p.lastNumber() > 0 })
	require.NoError(t, g.Freeze(f.ctx))
	f.thawOnCleanup(g)
	// Let lines written before the freeze drain through the pipe.
	time.Sleep(200 * time.Millisecond)
	frozen := p.lastNumber()
	time.Sleep(time.Second)
	require.Equal(t, frozen, p.lastNumber(), "the spinner made progress while frozen")
	require.NoError(t, g.Thaw(f.ctx))
	f.eventually("the spinner resumes after thaw", func() bool { return p.lastNumber() > frozen })
}

// enforceCPU: a spinner capped at 0.2 CPUs uses well under half a CPU over
// about a second.
func enforceCPU(t *testing.T, f *fixture) {
	g := f.create("cpu", cpuRes(func(c *semantic.CPU) { c.Max = &semantic.CPUMax{CPUs: 0.2} }))
	p := f.runIn(g, "spin")
	f.eventually("the spinner reports progress", func() bool { return p.lastNumber() > 0 })
	u0, t0 := f.cpuTime(g, p.pid()), time.Now()
	n0 := p.lastNumber()
	time.Sleep(1500 * time.Millisecond)
	u1, t1 := f.cpuTime(g, p.pid()), time.Now()
	share := float64(u1-u0) / float64(t1.Sub(t0))
	t.Logf("spinner under a 0.2 CPU cap used %.2f CPUs", share)
	require.Less(t, share, 0.5, "CPU used by a spinner capped at 0.2 CPUs")
	require.Greater(t, p.lastNumber(), n0, "the capped spinner should still run")
}

// cpuTime is the group's CPU usage from Stats, or the process's from /proc.
func (f *fixture) cpuTime(g semantic.Group, pid int) time.Duration {
	f.t.Helper()
	if st := f.stats(g); st.CPU != nil && st.CPU.Usage != nil {
		return *st.CPU.Usage
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(f.t, err)
	// Fields after the parenthesised command: utime and stime are the
	// 12th and 13th, in USER_HZ (100 per second on Linux).
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	require.NoError(f.t, err1)
	require.NoError(f.t, err2)
	return time.Duration(ut+stime) * 10 * time.Millisecond
}

// enforceKill: Kill makes every process in the group and below die of
// SIGKILL.
func enforceKill(t *testing.T, f *fixture) {
	top := f.create("kill", nil)
	c, d := f.create("kill/c", nil), f.create("kill/d/e", nil)
	procs := []*proc{f.sleeperIn(c), f.sleeperIn(c), f.sleeperIn(d)}
	require.NoError(t, top.Kill(f.ctx))
	for _, p := range procs {
		require.True(t, killedBySIGKILL(p.wait()), "process %d should die of SIGKILL", p.pid())
	}
	f.requireProcesses(c)
	f.requireProcesses(d)
}
