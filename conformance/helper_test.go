package conformance

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHelperModes runs each helper mode outside any group and checks it
// does what the suite relies on. It is its own re-execution target.
func TestHelperModes(t *testing.T) {
	if spec, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(runHelper(spec))
	}
	newFixture := func(t *testing.T) *fixture {
		// The helpers are re-executions of this test, not of the subtest.
		return &fixture{t: t, s: &suite{runPattern: "^TestHelperModes$"}, ctx: t.Context()}
	}
	t.Run("Sleep", func(t *testing.T) {
		t.Parallel()
		p := newFixture(t).sleeper()
		p.closeInput()
		require.True(t, p.wait().Success(), "stderr: %s", p.stderr.String())
	})
	t.Run("PrintCgroup", func(t *testing.T) {
		t.Parallel()
		p := newFixture(t).helper("print-cgroup", false).start()
		var lines []string
		for line := p.expect(""); line != "--"; line = p.expect("") {
			lines = append(lines, line)
		}
		// Nothing moved it: it is where its parent is.
		self, err := os.ReadFile("/proc/self/cgroup")
		require.NoError(t, err)
		require.Equal(t, strings.TrimSpace(string(self)), strings.Join(lines, "\n"))
		p.closeInput()
		require.True(t, p.wait().Success())
	})
	t.Run("Hog", func(t *testing.T) {
		t.Parallel()
		const n = 64 << 20
		p := newFixture(t).helper("hog", true, strconv.Itoa(n)).start()
		p.expect("ready")
		p.send("go")
		require.Equal(t, "hogged "+strconv.Itoa(n), p.expect("hogged"))
		rss := statusField(t, p.pid(), "VmRSS")
		require.GreaterOrEqual(t, rss, int64(n>>10), "resident KiB after hogging %d bytes", n)
	})
	t.Run("Fork", func(t *testing.T) {
		t.Parallel()
		p := newFixture(t).helper("fork", true, "5").start()
		require.Regexp(t, `^threads [1-9][0-9]*$`, p.expect("threads"))
		p.expect("ready")
		p.send("go")
		var kids []int
		for range 5 {
			line := p.expect("fork ")
			pid, ok := strings.CutPrefix(line, "fork ok ")
			require.True(t, ok, "fork failed without a limit: %q", line)
			kid, err := strconv.Atoi(pid)
			require.NoError(t, err)
			kids = append(kids, kid)
		}
		require.Equal(t, "forked 5", p.expect("forked"))
		for _, k := range kids {
			require.Equal(t, int64(p.pid()), statusField(t, k, "PPid"), "parent of child %d", k)
			require.Equal(t, int64(1), statusField(t, k, "Threads"), "a forked child is one task")
		}
		p.closeInput()
		require.True(t, p.wait().Success(), "stderr: %s", p.stderr.String())
		for _, k := range kids {
			// The helper reaped its children before exiting.
			require.ErrorIs(t, syscall.Kill(k, 0), syscall.ESRCH, "child %d after its parent ended", k)
		}
	})
	t.Run("ForkChildrenDieWithParent", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		p := f.helper("fork", true, "2").start()
		p.expect("ready")
		p.send("go")
		var kids []int
		for range 2 {
			pid, err := strconv.Atoi(strings.TrimPrefix(p.expect("fork ok "), "fork ok "))
			require.NoError(t, err)
			kids = append(kids, pid)
		}
		p.expect("forked")
		p.stop()
		f.eventually("children of a killed forker die", func() bool {
			for _, k := range kids {
				if b, err := os.ReadFile("/proc/" + strconv.Itoa(k) + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
					return false
				}
			}
			return true
		})
	})
	t.Run("Open", func(t *testing.T) {
		t.Parallel()
		p := newFixture(t).helper("open", false).start()
		p.expect("ready")
		for _, c := range []struct {
			line string
			want syscall.Errno
		}{
			{"/dev/null r", 0},
			{"/dev/null w", 0},
			{"/dev/null rw", 0},
			{"/nonexistent/cgsem-test w", syscall.ENOENT},
			{"/ w", syscall.EISDIR},
		} {
			p.send(c.line)
			require.Equal(t, "errno "+strconv.Itoa(int(c.want)), p.expect("errno"), c.line)
		}
		p.closeInput()
		require.True(t, p.wait().Success())
	})
	t.Run("Spin", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		p := f.helper("spin", false).start()
		p.expect("ready")
		f.eventually("the spinner counts", func() bool { return p.lastNumber() > 0 })
		n := p.lastNumber()
		f.eventually("the spinner keeps counting", func() bool { return p.lastNumber() > n })
		p.closeInput()
		require.True(t, p.wait().Success())
	})
}

// statusField reads a numeric field of /proc/PID/status (the first number).
func statusField(t *testing.T, pid int, name string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

func TestRunPattern(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"TestConformance", "^TestConformance$"},
		{"TestX/fake_v2", "^TestX$/^fake_v2$"},
		{"TestX/a.b(c)", `^TestX$/^a\.b\(c\)$`},
	} {
		t.Run(c.name, func(t *testing.T) { require.Equal(t, c.want, runPattern(c.name)) })
	}
}
