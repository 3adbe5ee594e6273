package sdprobe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/test/vm/vmcheck"
)

const (
	// childEnv selects a child mode of this test binary (see TestMain).
	childEnv = "CGSEM_SDPROBE_CHILD"

	busName    = "org.freedesktop.systemd1"
	busPath    = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIfc = "org.freedesktop.systemd1.Manager"
	unitIfc    = "org.freedesktop.systemd1.Unit"
	scopeIfc   = "org.freedesktop.systemd1.Scope"
	noSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"

	// callLimit bounds each test's conversation with systemd, so a wedged
	// manager fails the test with a message instead of running into the
	// binary's -test.timeout.
	callLimit = 2 * time.Minute
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child runs a re-executed copy of this binary. "alloc:N" waits for a
// line on stdin (so it allocates only once it is in its scope), then
// touches N MiB.
func child(mode string) int {
	name, arg, _ := strings.Cut(mode, ":")
	if name != "alloc" {
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 3
	}
	return vmcheck.Alloc(arg, os.Stdin)
}

// requireSystemdVM skips outside the lane's systemd VM: these tests make
// transient units and OOM-kill processes, which only a throwaway guest
// may host.
func requireSystemdVM(t *testing.T) {
	t.Helper()
	if os.Getenv("CGSEM_VM") != "1" || os.Getenv("CGSEM_VM_SYSTEMD") != "1" {
		t.Skip("runs only inside the systemd VM of test/vm (CGSEM_VM=1 and CGSEM_VM_SYSTEMD=1, set by its runner): run test/vm/lane.sh --systemd ./test/vm/sdprobe")
	}
	vmcheck.RequireCgroup2(t, "CGSEM_VM_SYSTEMD=1")
}

// property is one element of StartTransientUnit's a(sv).
type property struct {
	Name  string
	Value dbus.Variant
}

// auxUnit is one element of StartTransientUnit's a(sa(sv)).
type auxUnit struct {
	Name  string
	Props []property
}

// manager is a connection to systemd on the system bus, subscribed to its
// job signals.
type manager struct {
	conn *dbus.Conn
	obj  dbus.BusObject
	sigs chan *dbus.Signal
}

func connect(ctx context.Context, t *testing.T) *manager {
	t.Helper()
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	require.NoError(t, err, "connect to the system bus")
	t.Cleanup(func() { conn.Close() })
	m := &manager{conn: conn, obj: conn.Object(busName, busPath), sigs: make(chan *dbus.Signal, 64)}
	require.NoError(t, conn.AddMatchSignalContext(ctx,
		dbus.WithMatchObjectPath(busPath), dbus.WithMatchInterface(managerIfc), dbus.WithMatchMember("JobRemoved")))
	conn.Signal(m.sigs)
	// systemd sends job signals only to subscribed clients (and the one
	// that queued the job); subscribing makes the wait independent of
	// that detail.
	require.NoError(t, m.obj.CallWithContext(ctx, managerIfc+".Subscribe", 0).Err)
	return m
}

// job calls a manager method that queues a job and waits for the job's
// JobRemoved signal, returning its result ("done", "failed", ...).
func (m *manager) job(ctx context.Context, method string, args ...any) (string, error) {
	var path dbus.ObjectPath
	if err := m.obj.CallWithContext(ctx, managerIfc+"."+method, 0, args...).Store(&path); err != nil {
		return "", err
	}
	for {
		select {
		case s := <-m.sigs:
			// JobRemoved(u id, o job, s unit, s result); the signal may
			// have come before the call's reply, so it waits in sigs.
			if s.Name == managerIfc+".JobRemoved" && len(s.Body) == 4 && s.Body[1] == path {
				result, _ := s.Body[3].(string)
				return result, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for job %s: %w", method, path, ctx.Err())
		}
	}
}

func (m *manager) unitPath(ctx context.Context, name string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	err := m.obj.CallWithContext(ctx, managerIfc+".GetUnit", 0, name).Store(&path)
	return path, err
}

func (m *manager) property(ctx context.Context, path dbus.ObjectPath, ifc, name string) (any, error) {
	var v dbus.Variant
	err := m.conn.Object(busName, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, ifc, name).Store(&v)
	return v.Value(), err
}

func (m *manager) version(ctx context.Context) (string, error) {
	v, err := m.property(ctx, busPath, managerIfc, "Version")
	s, _ := v.(string)
	return s, err
}

// major is the leading number of a systemd version ("252.39-1~deb12u2").
func major(version string) int {
	n, _ := strconv.Atoi(regexp.MustCompile(`^\d+`).FindString(version))
	return n
}

func isNoSuchUnit(err error) bool {
	var de dbus.Error
	return errors.As(err, &de) && de.Name == noSuchUnit
}

// scope starts a transient scope holding pids with the given limits, and
// returns its name and cgroup directory. A cleanup stops and forgets it
// whatever the test did; the test itself proves that stop leaves nothing.
func (m *manager) scope(ctx context.Context, t *testing.T, pids []int, limits ...property) (name, dir string) {
	t.Helper()
	name = testenv.UniqueName(t) + ".scope"
	var au []uint32
	for _, p := range pids {
		au = append(au, uint32(p))
	}
	props := []property{
		{"Description", dbus.MakeVariant("cgsem sdprobe " + t.Name())},
		{"PIDs", dbus.MakeVariant(au)},
		// Collected even if it ends failed: a stop leaves no unit behind.
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}
	props = append(props, limits...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callLimit)
		defer cancel()
		m.job(ctx, "StopUnit", name, "replace")
		m.obj.CallWithContext(ctx, managerIfc+".ResetFailedUnit", 0, name)
	})
	result, err := m.job(ctx, "StartTransientUnit", name, "fail", props, []auxUnit{})
	require.NoError(t, err, "StartTransientUnit %s", name)
	require.Equal(t, "done", result, "job result of starting %s", name)
	path, err := m.unitPath(ctx, name)
	require.NoError(t, err)
	cg, err := m.property(ctx, path, scopeIfc, "ControlGroup")
	require.NoError(t, err)
	rel, _ := cg.(string)
	require.NotEmpty(t, rel, "ControlGroup of %s", name)
	dir = filepath.Join(vmcheck.MountPoint, rel)
	for _, p := range pids {
		assert.Contains(t, strings.Fields(vmcheck.Read(t, dir, "cgroup.procs")), strconv.Itoa(p), "pid %d moved into %s", p, dir)
	}
	return name, dir
}

// stopAndVanish stops the scope and waits until systemd has forgotten it
// and its cgroup is gone: nothing of it may be left.
func (m *manager) stopAndVanish(ctx context.Context, t *testing.T, name, dir string) {
	t.Helper()
	result, err := m.job(ctx, "StopUnit", name, "replace")
	require.NoError(t, err, "StopUnit %s", name)
	assert.Equal(t, "done", result, "job result of stopping %s", name)
	// The unit is collected on systemd's next pass, after the job.
	for {
		_, err := m.unitPath(ctx, name)
		if isNoSuchUnit(err) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still loaded after stop (GetUnit: %v)", name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, fs.ErrNotExist, "cgroup %s of the stopped scope", dir)
}

// started runs cmd with a pipe on its stdin and kills it when the test
// ends, whatever happened.
func started(t *testing.T, cmd *exec.Cmd) io.WriteCloser {
	t.Helper()
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return in
}

// holder starts a one-task process that keeps a scope populated, so
// systemd does not stop the scope (and remove its cgroup, with the
// counters the test reads) when the process under test ends.
func holder(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	started(t, cmd)
	return cmd
}

// startHeld starts a holder and cmd, with its output captured and a pipe
// on its stdin to give it the go-ahead once both are in their scope.
func startHeld(t *testing.T, cmd *exec.Cmd) (hold *exec.Cmd, out *strings.Builder, goAhead io.WriteCloser) {
	t.Helper()
	hold = holder(t)
	out = &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	return hold, out, started(t, cmd)
}

func TestSystemdIsPID1(t *testing.T) {
	requireSystemdVM(t)
	ok, why := testenv.SystemdPID1()
	assert.True(t, ok, why)
	exe, err := os.Readlink("/proc/1/exe")
	require.NoError(t, err)
	assert.Equal(t, "systemd", filepath.Base(exe), "PID 1 runs %s", exe)
	vmcheck.AssertUnifiedOnly(t)
}

func TestSystemBus(t *testing.T) {
	requireSystemdVM(t)
	ctx, cancel := context.WithTimeout(t.Context(), callLimit)
	defer cancel()
	m := connect(ctx, t)
	version, err := m.version(ctx)
	require.NoError(t, err, "Version property of %s", busName)
	t.Logf("systemd %s", version)

	t.Run("Version agrees with systemctl", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, "systemctl", "--version").Output()
		require.NoError(t, err)
		f := strings.Fields(string(out))
		require.GreaterOrEqual(t, len(f), 2, "systemctl --version: %q", out)
		assert.Positive(t, major(version), "Version %q starts with a number", version)
		assert.Equal(t, f[1], strconv.Itoa(major(version)), "systemctl says %q", out)
	})
	t.Run("the manager knows this process's unit", func(t *testing.T) {
		var path dbus.ObjectPath
		require.NoError(t, m.obj.CallWithContext(ctx, managerIfc+".GetUnitByPID", 0, uint32(os.Getpid())).Store(&path))
		id, err := m.property(ctx, path, unitIfc, "Id")
		require.NoError(t, err)
		assert.Equal(t, "cgsem-vmtest.service", id, "the lane's runner unit")
		cg, err := m.property(ctx, path, "org.freedesktop.systemd1.Service", "ControlGroup")
		require.NoError(t, err)
		own, err := os.ReadFile("/proc/self/cgroup")
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(own)), "0::"), fmt.Sprint(cg)+"/"),
			"own cgroup %q lies below the unit's %q", own, cg)
	})
}

func TestScopeMemoryMax(t *testing.T) {
	requireSystemdVM(t)
	for _, tc := range vmcheck.MemoryCases() {
		t.Run(tc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), callLimit)
			defer cancel()
			m := connect(ctx, t)

			hog := exec.Command("/proc/self/exe", "-test.run=^$")
			hog.Env = append(os.Environ(), fmt.Sprintf("%s=alloc:%d", childEnv, tc.AllocMiB))
			hold, out, goAhead := startHeld(t, hog)

			limit := uint64(tc.Limit())
			limits := []property{
				{"MemoryMax", dbus.MakeVariant(limit)},
				// No swap in the guest, but a kernel with swap accounting
				// must not let the hog escape there either.
				{"MemorySwapMax", dbus.MakeVariant(uint64(0))},
				// A scope's OOMPolicy defaults to DefaultOOMPolicy=stop: the
				// OOM kill would stop the scope, and its cgroup with the
				// counters read here would go, racing this test.
				{"OOMPolicy", dbus.MakeVariant("continue")},
			}
			name, dir := m.scope(ctx, t, []int{hold.Process.Pid, hog.Process.Pid}, limits...)
			assert.Equal(t, strconv.FormatUint(limit, 10), vmcheck.Read(t, dir, "memory.max"), "MemoryMax in %s", dir)
			run := vmcheck.MemoryRun{MemoryCase: tc, Dir: dir, LimitName: "MemoryMax",
				OOMBefore: vmcheck.Keyed(t, dir, "memory.events", "oom_kill")}

			_, err := io.WriteString(goAhead, "go\n")
			require.NoError(t, err)
			werr := hog.Wait()
			run.Check(t, werr, out.String())

			m.stopAndVanish(ctx, t, name, dir)
			assert.Error(t, hold.Wait(), "the holder was killed by the stop")
		})
	}
}

func TestScopeTasksMax(t *testing.T) {
	requireSystemdVM(t)
	// A shell in the scope forks sleepers until a fork fails; dash ends
	// with "Cannot fork". The bound on the loop keeps a limit that does
	// not hold from forking without end.
	const script = `read go; i=0; while [ $i -lt 64 ]; do sleep 600 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo all 64 forked`
	cases := []struct {
		name     string
		tasksMax int // counting the holder and the shell
	}{
		{name: "scope at TasksMax refuses the first fork", tasksMax: 2},
		{name: "scope refuses the fork past TasksMax of 5", tasksMax: 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), callLimit)
			defer cancel()
			m := connect(ctx, t)

			sh := exec.Command("/bin/sh", "-c", script)
			hold, out, goAhead := startHeld(t, sh)

			name, dir := m.scope(ctx, t, []int{hold.Process.Pid, sh.Process.Pid},
				property{"TasksMax", dbus.MakeVariant(uint64(tc.tasksMax))})
			assert.Equal(t, strconv.Itoa(tc.tasksMax), vmcheck.Read(t, dir, "pids.max"), "TasksMax in %s", dir)
			before := vmcheck.Keyed(t, dir, "pids.events", "max")

			_, err := io.WriteString(goAhead, "go\n")
			require.NoError(t, err)
			werr := sh.Wait()
			t.Logf("shell: err=%v output=%q", werr, out.String())
			var ee *exec.ExitError
			require.ErrorAs(t, werr, &ee, "the shell fails when it cannot fork")
			assert.Contains(t, strings.ToLower(out.String()), "fork", "the shell's complaint")
			assert.Greater(t, vmcheck.Keyed(t, dir, "pids.events", "max"), before, "pids.events max of the scope counts the refusal")
			// The holder and every sleeper the shell got are still there:
			// the scope was full when the fork failed.
			assert.Equal(t, strconv.Itoa(tc.tasksMax-1), vmcheck.Read(t, dir, "pids.current"), "tasks left once the shell is gone")

			m.stopAndVanish(ctx, t, name, dir)
			assert.Error(t, hold.Wait(), "the holder was killed by the stop")
		})
	}
}
