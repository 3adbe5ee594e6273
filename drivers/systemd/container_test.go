package systemd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/internal/testenv"
)

// The driver's kernel tests run against a real systemd: sdns boots
// Debian's systemd as PID 1 of new pid, mount, cgroup and network
// namespaces, in a group below the test's own cgroups. Tests either reach
// its bus from here (the driver then sees systemd through /proc/PID/root
// and forks into its pid namespace), or run this test binary inside it
// (insideEnv set), where the driver finds systemd as on any host: PID 1,
// on the system bus, with the processes it is given in its pid namespace.

// insideEnv names the systemd layout when this test binary runs inside a
// container; the tests that check it hand their work to the copy inside.
const insideEnv = "CGSEM_SYSTEMD_INSIDE"

// startContainer boots systemd in mode for one test, or skips, and stops
// it when the test ends, checking it left nothing on the host.
func startContainer(t *testing.T, mode string) *sdns.Instance {
	t.Helper()
	testenv.RequireRoot(t)
	if os.Getenv("CGSEM_VM") != "" {
		// The systemd VM lane boots systemd as the machine's real PID 1
		// and runs TestConformanceHost against it; a second systemd in
		// namespaces would repeat the host lane, on a kernel built
		// without the overlay filesystem it needs.
		t.Skip("systemd in namespaces is the host lane's; the VM lane tests the VM's own systemd (TestConformanceHost)")
	}
	opts := sdns.Options{Mode: mode, Logger: hclog.New(&hclog.LoggerOptions{Name: "sdns", Level: hclog.Info, Output: t.Output()})}
	if err := sdns.Check(opts); err != nil {
		t.Skipf("no systemd container on this host: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in, err := sdns.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, in.Stop(context.Background()), "stop the container")
		assert.Empty(t, in.Leaks(), "the container left groups or state behind")
	})
	if err := in.WaitReady(ctx); err != nil {
		t.Fatalf("systemd did not come up: %v\n%s", err, in.ConsoleTail(4000))
	}
	tm := in.Timings()
	t.Logf("systemd %s up: exec %v, bus %v, booted %v", in.Mode(), tm.Exec, tm.Bus, tm.Booted)
	return in
}

// connect opens a bus connection of the test's own, independent of the
// driver's.
func connect(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newRootSlice starts a fresh slice for a driver's root, named after the test
// (escaped, so one level: cgsem\x2dtest\x2d....slice), and registers its
// stop and a check that nothing is left of it: no unit of its prefix, no
// cgroup.
func newRootSlice(t *testing.T, conn *dbus.Conn) string {
	t.Helper()
	name := escapeSegment(testenv.UniqueName(t)) + sliceSuffix
	mgr := conn.Object(busName, managerPath)
	var job dbus.ObjectPath
	require.NoError(t, mgr.Call(managerIface+".StartTransientUnit", 0, name, "fail", []property{
		{"Description", dbus.MakeVariant("cgsem test root " + t.Name())},
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}, []struct {
		Name  string
		Props []property
	}{}).Store(&job))
	waitUnit(t, conn, name, true)
	t.Cleanup(func() {
		var job dbus.ObjectPath
		if err := mgr.Call(managerIface+".StopUnit", 0, name, "fail").Store(&job); err != nil {
			t.Errorf("stop the root slice %s: %v", name, err)
			return
		}
		waitUnit(t, conn, name, false)
		if left, err := unitsBelow(conn, name); err != nil || len(left) > 0 {
			t.Errorf("units left below %s: %q %v", name, left, err)
		}
	})
	return name
}

// waitUnit waits until a unit is active (or not).
func waitUnit(t *testing.T, conn *dbus.Conn, name string, active bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var us []unitStatus
		err := conn.Object(busName, managerPath).Call(managerIface+".ListUnitsByPatterns", 0, []string{}, []string{name}).Store(&us)
		require.NoError(t, err)
		is := slices.ContainsFunc(us, func(u unitStatus) bool { return u.Name == name && isActive(u.ActiveState) })
		if is == active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s active %v: not within 30s", name, active)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unitsBelow lists the loaded units, other than inactive ones, whose names
// say they are below a slice.
func unitsBelow(conn *dbus.Conn, slice string) ([]string, error) {
	prefix := strings.TrimSuffix(slice, sliceSuffix)
	var us []unitStatus
	err := conn.Object(busName, managerPath).Call(managerIface+".ListUnitsByPatterns", 0, []string{},
		[]string{prefix + "-*", prefix + ".scope"}).Store(&us)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range us {
		if u.ActiveState != "inactive" {
			out = append(out, u.Name+" "+u.ActiveState)
		}
	}
	return out, nil
}

// runInside copies this test binary into the container and runs the named
// test there with insideEnv set to the container's mode, logging a summary
// and every failure. It fails the test when the inside run failed.
func runInside(t *testing.T, in *sdns.Instance, test string, extra ...string) *testLog {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	const inner = "/tmp/cgsem-systemd.test"
	copyFile(t, self, filepath.Join(in.RootDir(), inner))
	args := []string{inner, "-test.run=^" + test + "$", "-test.v", "-test.count=1"}
	if dl, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(dl).Truncate(time.Second).String())
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	args = append(args, extra...)
	pr, pw := io.Pipe()
	var out strings.Builder
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out.WriteString(sc.Text())
			out.WriteByte('\n')
		}
		io.Copy(io.Discard, pr)
	})
	start := time.Now()
	p, err := in.Exec(t.Context(), sdns.Command{
		Args:   args,
		Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", insideEnv + "=" + in.Mode(), "HOME=/root", "TMPDIR=/tmp"},
		Stdout: pw, Stderr: pw,
	})
	require.NoError(t, err)
	werr := p.Wait()
	pw.Close()
	wg.Wait()
	text := out.String()
	if f := os.Getenv("CGSEM_SYSTEMD_INNER_LOG"); f != "" {
		// A debugging aid: the whole inside run, for reading by hand.
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Logf("write %s: %v", f, err)
		}
	}
	l := parseTestLog(text)
	t.Logf("inside %s (%v): %s", test, time.Since(start).Round(time.Millisecond), l.summarize())
	if werr != nil {
		t.Errorf("the run inside the container failed (%v); its failures:\n%s", werr, l.failures(text))
	}
	return l
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// testLog is a -test.v output split by test: the result of each test and
// the lines it logged (go test -v names the test before resumed output).
// What names no test is kept apart: race reports, which the race detector
// writes when it sees a race whichever test's line came last, and a panic
// with the stacks after it.
type testLog struct {
	result map[string]string   // test -> PASS, FAIL or SKIP
	lines  map[string][]string // test -> its log lines
	order  []string
	races  [][]string // each race report, its "=====" lines included
	panic  []string   // from a "panic: " line to the end
}

// raceRule opens and closes a race detector report.
const raceRule = "=================="

func parseTestLog(out string) *testLog {
	l := &testLog{result: map[string]string{}, lines: map[string][]string{}}
	current := ""
	var race []string
	for line := range strings.SplitSeq(out, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case l.panic != nil:
			l.panic = append(l.panic, line)
		case race != nil:
			race = append(race, line)
			if line == raceRule {
				l.races = append(l.races, race)
				race = nil
			}
		case line == raceRule:
			race = []string{line}
		case strings.HasPrefix(line, "panic: "):
			l.panic = []string{line}
		case strings.HasPrefix(line, "=== RUN   "), strings.HasPrefix(line, "=== CONT  "), strings.HasPrefix(line, "=== NAME  "):
			current = strings.TrimSpace(line[10:])
			if _, ok := l.lines[current]; !ok {
				l.order = append(l.order, current)
				l.lines[current] = nil
			}
		case strings.HasPrefix(line, "=== PAUSE"):
		case strings.HasPrefix(trimmed, "--- PASS: "), strings.HasPrefix(trimmed, "--- FAIL: "), strings.HasPrefix(trimmed, "--- SKIP: "):
			name, _, _ := strings.Cut(trimmed[10:], " (")
			l.result[name] = trimmed[4:8]
		case current != "" && trimmed != "":
			l.lines[current] = append(l.lines[current], trimmed)
		}
	}
	if race != nil {
		l.races = append(l.races, race)
	}
	return l
}

// leaf reports whether no other test is below name.
func (l *testLog) leaf(name string) bool {
	for other := range l.result {
		if strings.HasPrefix(other, name+"/") {
			return false
		}
	}
	return true
}

// summarize counts the leaf results.
func (l *testLog) summarize() string {
	count := map[string]int{}
	for name, r := range l.result {
		if l.leaf(name) {
			count[r]++
		}
	}
	return fmt.Sprintf("%d passed, %d skipped, %d failed (leaf subtests)", count["PASS"], count["SKIP"], count["FAIL"])
}

// failures renders every failed test that logged something with its
// lines (leaves, and parents: what a subtest logs after it ended goes to
// its parent), then the race reports and the panic. When a failed leaf
// logged nothing, or nothing failed that explains the exit (a crash), the
// whole output follows, so that the log alone tells what happened.
func (l *testLog) failures(out string) string {
	var b strings.Builder
	whole := false
	failed := 0
	for _, name := range l.order {
		if l.result[name] != "FAIL" {
			continue
		}
		failed++
		leaf := l.leaf(name)
		if !leaf && len(l.lines[name]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- FAIL: %s\n", name)
		for _, line := range l.lines[name] {
			fmt.Fprintf(&b, "        %s\n", line)
		}
		if leaf && len(l.lines[name]) == 0 {
			b.WriteString("        (no line of its own: the whole output follows)\n")
			whole = true
		}
	}
	for _, r := range l.races {
		b.WriteString(strings.Join(r, "\n") + "\n")
	}
	if l.panic != nil {
		b.WriteString(strings.Join(l.panic, "\n") + "\n")
	}
	if failed == 0 && l.panic == nil && len(l.races) == 0 {
		whole = true
	}
	if whole {
		b.WriteString("--- the whole output of the run inside:\n" + out)
	}
	return b.String()
}

// skips lists each skipped leaf test's reason, grouped: reason -> tests.
func (l *testLog) skips() map[string][]string {
	out := map[string][]string{}
	for _, name := range l.order {
		if l.result[name] != "SKIP" || !l.leaf(name) {
			continue
		}
		reason := "(no reason logged)"
		for _, line := range l.lines[name] {
			// The skip message is the last "file.go:N: message" line.
			if _, rest, ok := strings.Cut(line, ".go:"); ok {
				if _, msg, ok := strings.Cut(rest, ": "); ok {
					reason = msg
				}
			}
		}
		out[reason] = append(out[reason], strings.TrimPrefix(name, l.order[0]+"/"))
	}
	return out
}
