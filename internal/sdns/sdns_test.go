package sdns

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireContainer skips unless Start can run here with opts.
func requireContainer(t testing.TB, opts Options) {
	t.Helper()
	if err := Check(opts); err != nil {
		t.Skipf("no systemd container here: %v", err)
	}
}

func testContext(t testing.TB) context.Context {
	// A bound for a hung boot, not a timing assertion.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: t.Output()})
}

// startReady starts a container, waits for it and registers its Stop.
func startReady(t testing.TB, ctx context.Context, opts Options) *Instance {
	t.Helper()
	opts.Logger = testLogger(t)
	in, err := Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, in.Stop(context.Background()))
		assert.Empty(t, in.Leaks())
	})
	require.NoError(t, in.WaitReady(ctx))
	return in
}

// hostCgroupState is what the container must not change on the host: the
// hierarchy each controller is bound to and the options of every cgroup
// mount.
func hostCgroupState(t *testing.T) []string {
	t.Helper()
	var out []string
	kernel, err := readParse("/proc/cgroups", parseProcCgroups)
	require.NoError(t, err)
	for _, k := range kernel {
		out = append(out, k.Name+" in hierarchy "+strconv.Itoa(k.Hierarchy))
	}
	mounts, err := readParse("/proc/self/mountinfo", parseMountinfo)
	require.NoError(t, err)
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			out = append(out, m.Mountpoint+" "+m.FSType+" "+strings.Join(m.Super, ","))
		}
	}
	return out
}

func randomHex(t testing.TB) string {
	var b [4]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

func getProperty(t *testing.T, ctx context.Context, conn *dbus.Conn, path dbus.ObjectPath, iface, name string) any {
	t.Helper()
	var v dbus.Variant
	err := conn.Object(sdDest, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, iface, name).Store(&v)
	require.NoError(t, err, "get %s.%s", iface, name)
	return v.Value()
}

func getUnit(t *testing.T, ctx context.Context, conn *dbus.Conn, name string) dbus.ObjectPath {
	t.Helper()
	var p dbus.ObjectPath
	require.NoError(t, conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".GetUnit", 0, name).Store(&p))
	return p
}

// subscribe makes systemd send job signals to conn.
func subscribe(t *testing.T, ctx context.Context, conn *dbus.Conn) {
	t.Helper()
	require.NoError(t, conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".Subscribe", 0).Err)
	require.NoError(t, conn.AddMatchSignalContext(ctx,
		dbus.WithMatchObjectPath(sdPath), dbus.WithMatchInterface(sdManager), dbus.WithMatchMember("JobRemoved")))
}

// runJob makes the call that queues a job and returns the job's result
// from its JobRemoved signal.
func runJob(t *testing.T, ctx context.Context, conn *dbus.Conn, method string, args ...any) string {
	t.Helper()
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	var job dbus.ObjectPath
	require.NoError(t, conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+"."+method, 0, args...).Store(&job), method)
	for {
		select {
		case s := <-ch:
			if s.Name == sdManager+".JobRemoved" && len(s.Body) == 4 && s.Body[1] == job {
				return s.Body[3].(string)
			}
		case <-ctx.Done():
			t.Fatalf("%s: waiting for job %s: %v", method, job, ctx.Err())
		}
	}
}

type unitProperty struct {
	Name  string
	Value dbus.Variant
}

type auxUnit struct {
	Name  string
	Props []unitProperty
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func pidsIn(t *testing.T, procs string) []int {
	t.Helper()
	_, err := os.Stat(procs)
	require.NoError(t, err)
	return readPIDs(procs)
}

// eventually polls cond until it holds or ctx ends; for effects systemd
// completes after a job's signal.
func eventually(t *testing.T, ctx context.Context, cond func() bool, what string) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestContainer(t *testing.T) {
	for _, mode := range []string{ModeHybrid, ModeUnified} {
		t.Run(mode, func(t *testing.T) {
			requireContainer(t, Options{Mode: mode})
			ctx := testContext(t)
			before := hostCgroupState(t)
			hostname, err := os.Hostname()
			require.NoError(t, err)

			in := startReady(t, ctx, Options{Mode: mode})
			tm := in.Timings()
			t.Logf("start to: exec %v, bus %v, booted %v", tm.Exec, tm.Bus, tm.Booted)
			require.Equal(t, mode, in.Mode())
			conn, err := in.Connect(ctx)
			require.NoError(t, err)
			defer conn.Close()
			subscribe(t, ctx, conn)

			t.Run("Version", func(t *testing.T) { testVersion(t, ctx, in, conn) })
			t.Run("InitScope", func(t *testing.T) { testInitScope(t, ctx, in, conn) })
			t.Run("Exec", func(t *testing.T) { testExec(t, ctx, in) })
			t.Run("TransientScope", func(t *testing.T) { testTransientScope(t, ctx, in, conn) })
			t.Run("DevicePolicy", func(t *testing.T) { testDevicePolicy(t, ctx, in, conn) })
			t.Run("Safety", func(t *testing.T) { testSafety(t, ctx, in, before, hostname) })

			groups := in.Groups()
			require.NotEmpty(t, groups)
			t0 := time.Now()
			require.NoError(t, in.Stop(ctx))
			t.Logf("stop took %v", time.Since(t0))
			for k, d := range groups {
				assert.NoDirExists(t, d, "group in %s", k)
			}
			assert.NoDirExists(t, filepath.Dir(in.ConsolePath()))
			assert.Equal(t, before, hostCgroupState(t), "host cgroup hierarchies or mounts changed")
		})
	}
}

func testVersion(t *testing.T, ctx context.Context, in *Instance, conn *dbus.Conn) {
	p, err := prepare(Options{})
	require.NoError(t, err)
	out, err := exec.CommandContext(ctx, p.systemd, "--version").Output()
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(out), "\n")

	v, ok := getProperty(t, ctx, conn, sdPath, sdManager, "Version").(string)
	require.True(t, ok)
	require.NotEmpty(t, v)
	assert.Contains(t, first, v, "the container runs the host's systemd")
}

func testInitScope(t *testing.T, ctx context.Context, in *Instance, conn *dbus.Conn) {
	u := getUnit(t, ctx, conn, "init.scope")
	cg, _ := getProperty(t, ctx, conn, u, "org.freedesktop.systemd1.Scope", "ControlGroup").(string)
	require.Equal(t, "/init.scope", cg, "systemd's root is the container's group")
	assert.Contains(t, pidsIn(t, filepath.Join(in.HostPath("unified", cg), "cgroup.procs")), in.InitPID())
	assert.Equal(t, filepath.Join(in.CgroupPath(""), "init.scope"), in.HostPath("unified", cg))
}

func testExec(t *testing.T, ctx context.Context, in *Instance) {
	p, err := in.Exec(ctx, Command{Args: []string{"sleep", "300"}})
	require.NoError(t, err)
	defer func() {
		require.NoError(t, p.Kill())
		_ = p.Wait()
	}()
	pid, err := p.PID(ctx)
	require.NoError(t, err)
	host, err := p.HostPID(ctx)
	require.NoError(t, err)

	// The pid is known from nsenter's fork on; the exec follows.
	eventually(t, ctx, func() bool { return readTrim(t, "/proc/"+strconv.Itoa(host)+"/comm") == "sleep" }, "HostPID is the command's pid outside")
	comm, err := in.Run(ctx, "cat", "/proc/"+strconv.Itoa(pid)+"/comm")
	require.NoError(t, err, "%s", comm)
	assert.Equal(t, "sleep", strings.TrimSpace(string(comm)), "PID is the command's pid inside")
	assert.Equal(t, readTrim(t, "/proc/"+strconv.Itoa(in.InitPID())+"/cgroup"), readTrim(t, "/proc/"+strconv.Itoa(host)+"/cgroup"),
		"the command is in the groups of the container's PID 1")
	self, err := in.Run(ctx, "cat", "/proc/self/cgroup")
	require.NoError(t, err)
	assert.Contains(t, strings.Split(string(self), "\n"), "0::/init.scope", "inside, cgroup paths are relative to the container")
	_, err = in.Run(ctx, "false")
	assert.Error(t, err, "the exit status comes through")
	fds, err := in.Run(ctx, "ls", "/proc/self/fd")
	require.NoError(t, err)
	assert.Equal(t, []string{"0", "1", "2", "3"}, strings.Fields(string(fds)), "stdio and ls's own directory: no descriptor leaks in")
}

func testTransientScope(t *testing.T, ctx context.Context, in *Instance, conn *dbus.Conn) {
	p, err := in.Exec(ctx, Command{Args: []string{"sleep", "300"}})
	require.NoError(t, err)
	defer func() {
		_ = p.Kill()
		_ = p.Wait()
	}()
	// StartTransientUnit resolves PIDs in systemd's pid namespace: the
	// command's pid inside, not the host's.
	pid, err := p.PID(ctx)
	require.NoError(t, err)
	host, err := p.HostPID(ctx)
	require.NoError(t, err)

	name := "cgsem-test-" + randomHex(t) + ".scope"
	props := []unitProperty{
		{"Description", dbus.MakeVariant("cgsem sdns test scope")},
		{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
		{"MemoryMax", dbus.MakeVariant(uint64(64 << 20))},
		{"TasksMax", dbus.MakeVariant(uint64(16))},
		{"CPUWeight", dbus.MakeVariant(uint64(50))},
	}
	require.Equal(t, "done", runJob(t, ctx, conn, "StartTransientUnit", name, "fail", props, []auxUnit{}))
	u := getUnit(t, ctx, conn, name)
	cg, _ := getProperty(t, ctx, conn, u, "org.freedesktop.systemd1.Scope", "ControlGroup").(string)
	require.NotEmpty(t, cg)
	t.Logf("scope %s in %s", name, cg)

	dir := in.HostPath("unified", cg)
	assert.Equal(t, []int{host}, pidsIn(t, filepath.Join(dir, "cgroup.procs")), "the host sees the process in the scope")
	checks := []struct {
		name      string
		hierarchy string
		file      string
		want      string
	}{
		{name: "memory v1", hierarchy: "memory", file: "memory.limit_in_bytes", want: "67108864"},
		{name: "pids v1", hierarchy: "pids", file: "pids.max", want: "16"},
		{name: "cpu v1", hierarchy: "cpu", file: "cpu.shares", want: "512"},
		{name: "memory v2", hierarchy: "unified", file: "memory.max", want: "67108864"},
		{name: "pids v2", hierarchy: "unified", file: "pids.max", want: "16"},
		{name: "cpu v2", hierarchy: "unified", file: "cpu.weight", want: "50"},
	}
	checked := 0
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			mounted := in.mode == ModeHybrid || c.hierarchy == "unified"
			f := filepath.Join(in.HostPath(c.hierarchy, cg), c.file)
			if _, err := os.Stat(f); !mounted || err != nil {
				t.Skipf("systemd does not manage %s in %s mode here", c.file, in.mode)
			}
			checked++
			assert.Equal(t, c.want, readTrim(t, f))
			// The same file through the container's own mounts.
			inside := filepath.Join(in.RootDir(), "sys/fs/cgroup", cg, c.file)
			if in.mode == ModeHybrid {
				inside = filepath.Join(in.RootDir(), "sys/fs/cgroup", c.hierarchy, cg, c.file)
			}
			assert.Equal(t, c.want, readTrim(t, inside))
		})
	}
	if in.mode == ModeHybrid {
		assert.Equal(t, 3, checked, "hybrid mode sets memory, pids and cpu through v1")
	}

	require.Equal(t, "done", runJob(t, ctx, conn, "StopUnit", name, "fail"))
	require.Error(t, p.Wait(), "stopping the scope kills its process")
	eventually(t, ctx, func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) }, "scope group removed")
}

// testDevicePolicy starts a command in a scope before it runs (it waits
// for a line on stdin) and has it open /dev/cgsem-nodev: EPERM when the
// device policy denies the node, ENXIO (no driver) when it allows it.
func testDevicePolicy(t *testing.T, ctx context.Context, in *Instance, conn *dbus.Conn) {
	tests := []struct {
		name  string
		allow string
		want  string
	}{
		{name: "denied", allow: "/dev/null", want: "Operation not permitted"},
		{name: "allowed", allow: "/dev/cgsem-nodev", want: "No such device or address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin, w, err := os.Pipe()
			require.NoError(t, err)
			defer w.Close()
			var out strings.Builder
			p, err := in.Exec(ctx, Command{
				Args:  []string{"sh", "-c", "read _ && cat /dev/cgsem-nodev"},
				Stdin: stdin, Stdout: &out, Stderr: &out,
			})
			stdin.Close()
			require.NoError(t, err)
			defer func() {
				_ = p.Kill()
				_ = p.Wait()
			}()
			pid, err := p.PID(ctx)
			require.NoError(t, err)
			name := "cgsem-test-" + randomHex(t) + ".scope"
			props := []unitProperty{
				{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
				{"DevicePolicy", dbus.MakeVariant("strict")},
				{"DeviceAllow", dbus.MakeVariant([]struct{ Path, Perm string }{{tt.allow, "r"}})},
			}
			require.Equal(t, "done", runJob(t, ctx, conn, "StartTransientUnit", name, "fail", props, []auxUnit{}))
			// The scope ends by itself when the command exits (or the
			// deferred Kill ends it).
			_, err = w.Write([]byte("go\n"))
			require.NoError(t, err)
			_ = p.Wait()
			assert.Contains(t, out.String(), tt.want)
		})
	}
}

func testSafety(t *testing.T, ctx context.Context, in *Instance, before []string, hostname string) {
	initProc := "/proc/" + strconv.Itoa(in.InitPID())
	mounts, err := readParse(initProc+"/mountinfo", parseMountinfo)
	require.NoError(t, err)
	mountAt := func(p string) *mountEntry {
		for i := len(mounts) - 1; i >= 0; i-- {
			if mounts[i].Mountpoint == p {
				return &mounts[i]
			}
		}
		return nil
	}
	t.Run("capability bounding set", func(t *testing.T) {
		var bnd uint64
		f, err := os.Open(initProc + "/status")
		require.NoError(t, err)
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
				bnd, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				require.NoError(t, err)
			}
		}
		for _, c := range dropCapabilities() {
			assert.Zero(t, bnd&(1<<c), "capability %d dropped", c)
		}
		assert.NotZero(t, bnd&(1<<21), "CAP_SYS_ADMIN kept: systemd needs it")
	})
	t.Run("read-only kernel knobs", func(t *testing.T) {
		for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/sys"} {
			if _, err := os.Stat(p); err != nil {
				continue // not in this kernel
			}
			m := mountAt(p)
			if assert.NotNil(t, m, p) {
				assert.Contains(t, m.Options, "ro", p)
			}
		}
		// domainname is per UTS namespace: harmless should the
		// protection ever fail.
		out, err := in.Run(ctx, "sh", "-c", "echo cgsem > /proc/sys/kernel/domainname")
		assert.Error(t, err)
		assert.Contains(t, string(out), "Read-only file system")
	})
	t.Run("placeholders for controllers on the host's cgroup2", func(t *testing.T) {
		if in.mode != ModeHybrid {
			t.Skip("only hybrid mode mounts v1 controllers")
		}
		n := 0
		for _, m := range mounts {
			if strings.HasPrefix(m.Mountpoint, "/sys/fs/cgroup/") && m.FSType == "tmpfs" {
				n++
				assert.Contains(t, m.Options, "ro", m.Mountpoint)
			}
		}
		kernel, err := readParse("/proc/cgroups", parseProcCgroups)
		require.NoError(t, err)
		onV2 := 0
		for _, k := range kernel {
			if k.Enabled && k.Hierarchy == 0 {
				onV2++
			}
		}
		if onV2 > 0 {
			assert.NotZero(t, n, "%d controllers are on the host's cgroup2", onV2)
		}
		assert.Equal(t, before, hostCgroupState(t), "booted systemd left the host's hierarchies alone")
	})
	t.Run("private network", func(t *testing.T) {
		b, err := os.ReadFile(initProc + "/net/dev")
		require.NoError(t, err)
		var ifs []string
		for _, l := range strings.Split(string(b), "\n")[2:] {
			if name, _, ok := strings.Cut(l, ":"); ok {
				ifs = append(ifs, strings.TrimSpace(name))
			}
		}
		assert.Equal(t, []string{"lo"}, ifs)
	})
	t.Run("own hostname", func(t *testing.T) {
		out, err := in.Run(ctx, "cat", "/proc/sys/kernel/hostname")
		require.NoError(t, err)
		assert.Equal(t, "cgsem-sdns", strings.TrimSpace(string(out)))
		h, err := os.Hostname()
		require.NoError(t, err)
		assert.Equal(t, hostname, h)
	})
	t.Run("rooted cgroup namespace", func(t *testing.T) {
		lines := strings.Split(readTrim(t, initProc+"/cgroup"), "\n")
		// The host sees PID 1 below the container's group in every
		// hierarchy.
		for _, l := range lines {
			_, p, _ := strings.Cut(l, ":")
			_, p, _ = strings.Cut(p, ":")
			assert.Contains(t, p, in.Name(), l)
		}
	})
	t.Run("masked units", func(t *testing.T) {
		out, err := in.Run(ctx, "systemctl", "is-enabled", "systemd-timesyncd.service", "systemd-sysctl.service")
		assert.Error(t, err, "masked units are not enabled")
		assert.Equal(t, []string{"masked", "masked"}, strings.Fields(string(out)))
		out, err = in.Run(ctx, "systemctl", "list-units", "--state=active", "--type=service", "--no-legend", "--plain")
		require.NoError(t, err)
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			unit, _, _ := strings.Cut(l, " ")
			assert.True(t, slices.Contains(expectedServices(), unit) || unit == "", "unexpected service %q running", unit)
		}
	})
}

// expectedServices are the services the boot target may leave running or
// exited-active: sysinit's own, the journal and the bus.
func expectedServices() []string {
	return []string{
		"dbus.service", "systemd-journald.service", "systemd-journal-flush.service",
		"systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
		"systemd-sysusers.service", "systemd-update-utmp.service",
	}
}

func TestStartRefusesUnitNamesOutsideEtc(t *testing.T) {
	requireContainer(t, Options{})
	for _, name := range []string{"../../x.service", "a/b.service", "..", ""} {
		t.Run(name, func(t *testing.T) {
			_, err := Start(testContext(t), Options{Units: map[string]string{name: "[Unit]\n"}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "plain file name")
		})
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	requireContainer(t, Options{})
	ctx := testContext(t)
	self, err := readParse("/proc/self/cgroup", parseProcCgroup)
	require.NoError(t, err)
	mounts, err := readParse("/proc/self/mountinfo", parseMountinfo)
	require.NoError(t, err)
	kernel, err := readParse("/proc/cgroups", parseProcCgroups)
	require.NoError(t, err)
	hs, _ := discoverHierarchies(self, mounts, kernel)
	nameRE := regexp.MustCompile(GroupPrefix + `[0-9a-f]{12}`)

	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{
			// Passes Check on the host, but the container has a fresh
			// /tmp: the exec of "systemd" fails in the init stage.
			name:    "init stage fails",
			opts:    Options{Systemd: t.TempDir()},
			wantErr: "init: no such file or directory",
		},
		{
			// Start or WaitReady fails, whichever notices first.
			name:    "PID 1 exits at once",
			opts:    Options{Systemd: "/bin/true"},
			wantErr: "exit status 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.TempDir = t.TempDir()
			tt.opts.Logger = testLogger(t)
			in, err := Start(ctx, tt.opts)
			var name string
			if err == nil {
				name = in.Name()
				err = in.WaitReady(ctx)
				assert.NoError(t, in.Stop(ctx))
			} else {
				name = nameRE.FindString(err.Error())
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			require.NotEmpty(t, name, "the error names the group: %v", err)
			for _, h := range hs {
				assert.NoDirExists(t, filepath.Join(h.Own, name), h.Key())
			}
			left, err := os.ReadDir(tt.opts.TempDir)
			require.NoError(t, err)
			assert.Empty(t, left, "state directory removed")
		})
	}
}

// BenchmarkStartToReady measures Start+WaitReady (and reports the bus and
// boot times) followed by an uncounted Stop.
func BenchmarkStartToReady(b *testing.B) {
	for _, mode := range []string{ModeHybrid, ModeUnified} {
		b.Run(mode, func(b *testing.B) {
			requireContainer(b, Options{Mode: mode})
			ctx := testContext(b)
			var bus, booted, stop time.Duration
			for b.Loop() {
				in, err := Start(ctx, Options{Mode: mode})
				require.NoError(b, err)
				require.NoError(b, in.WaitReady(ctx))
				b.StopTimer()
				tm := in.Timings()
				bus += tm.Bus
				booted += tm.Booted
				t0 := time.Now()
				require.NoError(b, in.Stop(ctx))
				stop += time.Since(t0)
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(float64(bus.Milliseconds())/n, "ms-to-bus/op")
			b.ReportMetric(float64(booted.Milliseconds())/n, "ms-to-booted/op")
			b.ReportMetric(float64(stop.Milliseconds())/n, "ms-stop/op")
		})
	}
}
