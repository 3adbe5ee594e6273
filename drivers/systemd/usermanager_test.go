package systemd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// The user manager: Settings{"bus": "user"} drives the systemd --user of
// the calling user, on its session bus, where everything the driver makes
// lives below user@UID.service, the cgroup subtree the system manager
// delegated to that user (pids, memory and cpu in Debian's unit). These
// tests prove it as a real unprivileged user with enforcement, and what
// the driver says when no user manager is there.

const (
	// userChildEnv selects the part of TestUserManager that runs as the
	// throwaway user: "absent" (before its user manager runs) or "group".
	userChildEnv = "CGSEM_SYSTEMD_USER_CHILD"
	// userReportPrefix starts each line the child reports on; the rest
	// of the line is a userReport in JSON.
	userReportPrefix = "cgsem-user-report "
	// userPidsMax and userMemoryMax are the limits the child sets.
	userPidsMax   = 8
	userMemoryMax = 64 << 20
	// userForks is how many background processes the child's shell tries
	// to start: well past userPidsMax.
	userForks = 20
	// userLiveness bounds each wait of the test (a user manager's start,
	// the child's run): a wedged guest then fails with a message instead
	// of running into -test.timeout. It is no measure of speed.
	userLiveness = 5 * time.Minute
)

// userReport is what the child observed, one stage per line.
type userReport struct {
	Stage string `json:"stage"`

	// absent: Open's refusal.
	OpenError    string `json:"open_error,omitempty"`
	NotExist     bool   `json:"not_exist,omitempty"`
	NotSupported bool   `json:"not_supported,omitempty"`

	// group: the driver's view while the group holds processes.
	UID           int    `json:"uid,omitempty"`
	Base          string `json:"base,omitempty"`
	Cgroup        string `json:"cgroup,omitempty"`
	ReadPidsMax   uint64 `json:"read_pids_max,omitempty"`
	ReadMemoryMax uint64 `json:"read_memory_max,omitempty"`
	ShellExit     int    `json:"shell_exit"`
	ShellStdout   string `json:"shell_stdout,omitempty"`
	ShellStderr   string `json:"shell_stderr,omitempty"`
	Started       int    `json:"started"`
	Processes     []int  `json:"processes,omitempty"`
	PidsCurrent   uint64 `json:"pids_current,omitempty"`
	PidsLimit     uint64 `json:"pids_limit,omitempty"`
	MemoryUsage   uint64 `json:"memory_usage,omitempty"`

	// deleted: the group after Delete.
	Gone bool `json:"gone,omitempty"`
}

// TestUserManager creates a user, starts its user manager
// (user@UID.service), and runs this test binary as that user with the
// driver on its user bus: a group with a pids and a memory limit, a shell
// in it that forks past the pids limit and must fail to, stats, delete.
// Root checks the kernel's side meanwhile: the group is below the user's
// delegated user@UID.service with the limits written, the fork refusal is
// counted, and nothing is left after.
func TestUserManager(t *testing.T) {
	if mode := os.Getenv(userChildEnv); mode != "" {
		userChild(t, mode)
		return
	}
	requireUserManagerHost(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*userLiveness)
	defer cancel()

	installUserBus(t)
	uid, name := freeUID(t, 4242)
	runtimeDir := fmt.Sprintf("/run/user/%d", uid)
	busPath := runtimeDir + "/bus"
	userSlice := fmt.Sprintf("/sys/fs/cgroup/user.slice/user-%d.slice", uid)
	managerDir := fmt.Sprintf("%s/user@%d.service", userSlice, uid)
	_, err := os.Stat(userSlice)
	require.ErrorIs(t, err, fs.ErrNotExist, "user-%d.slice exists before the test made its user", uid)
	_, err = os.Stat("/sys/fs/cgroup/user.slice")
	hadUserSlice := err == nil

	mustRun(t, "useradd", "--create-home", "--user-group", "--shell", "/bin/sh", "--uid", strconv.Itoa(uid), name)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "--remove", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	t.Cleanup(func() {
		// Whatever else is left, the user's slice goes, and user.slice if
		// this test brought it: the runner names a new cgroup as a leak.
		units := []string{fmt.Sprintf("user-%d.slice", uid)}
		if !hadUserSlice {
			units = append(units, "user.slice")
		}
		for _, u := range units {
			assert.NoError(t, systemctl("stop", u))
		}
		// A failed unit would outlive the test, and the runner names it.
		_ = exec.Command("systemctl", "reset-failed", fmt.Sprintf("user@%d.service", uid),
			fmt.Sprintf("user-runtime-dir@%d.service", uid)).Run()
		for _, dir := range []string{userSlice, "/sys/fs/cgroup/user.slice"} {
			if dir == "/sys/fs/cgroup/user.slice" && hadUserSlice {
				continue
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("cgroup %s left after its units stopped (%v)", dir, err)
			}
		}
	})
	u, err := user.LookupId(strconv.Itoa(uid))
	require.NoError(t, err)
	gid, err := strconv.Atoi(u.Gid)
	require.NoError(t, err)
	exe := userExecutable(t)

	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.HomeDir,
		"USER=" + name,
		"LOGNAME=" + name,
		"XDG_RUNTIME_DIR=" + runtimeDir,
		"DBUS_SESSION_BUS_ADDRESS=unix:path=" + busPath,
		"TMPDIR=/tmp",
		"GOTRACEBACK=all",
	}
	asUser := func(mode string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, exe, "-test.run=^TestUserManager$", "-test.v", "-test.timeout="+userLiveness.String())
		cmd.Env = append(env, userChildEnv+"="+mode)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		return cmd
	}

	// Before its user manager runs, the user has no bus: Open says so.
	absent := runUserChild(t, asUser("absent"), nil)
	require.Len(t, absent, 1)
	assert.True(t, absent[0].NotExist, "Open of the user bus before user@%d.service: %s", uid, absent[0].OpenError)
	assert.Contains(t, absent[0].OpenError, "unix:path="+busPath, "the refusal names the bus address")

	unit := fmt.Sprintf("user@%d.service", uid)
	runtimeEnv(t, unit, runtimeDir)
	t.Cleanup(func() {
		assert.NoError(t, systemctl("stop", unit))
		// The user manager's groups, ours among them, go with it.
		if _, err := os.Stat(managerDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after %s stopped (%v)", managerDir, unit, err)
		}
	})
	require.NoError(t, systemctl("start", unit))
	waitSocket(ctx, t, busPath)

	var during userReport
	var kernel struct {
		pidsMax, memoryMax, pidsCurrent string
		pidsEventsMax                   uint64
		owner                           uint32
		procUIDs                        map[int]string
	}
	reports := runUserChild(t, asUser("group"), func(r userReport, stdin io.Writer) {
		if r.Stage != "group" {
			return
		}
		during = r
		// The kernel's word, read while the child holds the group open.
		dir := filepath.Join("/sys/fs/cgroup", r.Cgroup)
		kernel.pidsMax = readTrim(t, filepath.Join(dir, "pids.max"))
		kernel.memoryMax = readTrim(t, filepath.Join(dir, "memory.max"))
		kernel.pidsCurrent = readTrim(t, filepath.Join(dir, "pids.current"))
		// Linux 6.1 counts a refused fork in the forking task's group
		// (the scope), not in the slice whose limit refused it (seen
		// here: the slice's max stayed 0); later kernels may count it
		// where the limit is. The slice and the groups below it are
		// summed.
		groups := []string{dir}
		ents, err := os.ReadDir(dir)
		assert.NoError(t, err)
		for _, e := range ents {
			if e.IsDir() {
				groups = append(groups, filepath.Join(dir, e.Name()))
			}
		}
		for _, g := range groups {
			kernel.pidsEventsMax += keyed(t, readTrim(t, filepath.Join(g, "pids.events")))["max"]
		}
		var st unix.Stat_t
		if assert.NoError(t, unix.Stat(dir, &st)) {
			kernel.owner = st.Uid
		}
		kernel.procUIDs = map[int]string{}
		for _, pid := range r.Processes {
			kernel.procUIDs[pid] = procUID(pid)
		}
		_, err = io.WriteString(stdin, "go on\n")
		assert.NoError(t, err)
	})
	require.Len(t, reports, 2, "the child reports the group, then its deletion")
	require.Equal(t, "group", during.Stage)

	wantBase := fmt.Sprintf("/user.slice/user-%d.slice/user@%d.service", uid, uid)
	assert.Equal(t, uid, during.UID, "the child runs as the user")
	assert.Equal(t, wantBase, during.Base, "the user manager's root slice is the delegated user@ group")
	assert.True(t, strings.HasPrefix(during.Cgroup, wantBase+"/"), "group cgroup %q is below %s", during.Cgroup, wantBase)
	assert.EqualValues(t, userPidsMax, during.ReadPidsMax, "pids.max read back")
	assert.EqualValues(t, userMemoryMax, during.ReadMemoryMax, "memory.max read back")

	// Enforcement: the shell could start no more than the limit allows
	// (itself one task), and its fork failed.
	assert.NotZero(t, during.ShellExit, "the shell forking past pids.max must fail; stdout %q stderr %q", during.ShellStdout, during.ShellStderr)
	assert.Less(t, during.Started, userPidsMax, "processes started by a shell in a group of pids.max %d", userPidsMax)
	assert.Positive(t, during.Started, "the shell started nothing: stderr %q", during.ShellStderr)
	assert.Contains(t, strings.ToLower(during.ShellStderr), "fork", "the shell names its failed fork")
	assert.EqualValues(t, during.Started, during.PidsCurrent, "stats: the tasks left in the group are the started sleeps")
	assert.EqualValues(t, userPidsMax, during.PidsLimit, "stats: pids limit")
	assert.Positive(t, during.MemoryUsage, "stats: memory usage")
	assert.Len(t, during.Processes, during.Started, "processes: the sleeps")

	assert.Equal(t, strconv.Itoa(userPidsMax), kernel.pidsMax, "kernel pids.max")
	assert.Equal(t, strconv.Itoa(userMemoryMax), kernel.memoryMax, "kernel memory.max")
	assert.Equal(t, strconv.Itoa(during.Started), kernel.pidsCurrent, "kernel pids.current")
	assert.Positive(t, kernel.pidsEventsMax, "kernel pids.events counts the refused fork")
	assert.EqualValues(t, uid, kernel.owner, "the group belongs to the user (delegation), not root")
	for pid, id := range kernel.procUIDs {
		assert.Equal(t, strconv.Itoa(uid), id, "uid of pid %d in the group", pid)
	}

	done := reports[1]
	assert.Equal(t, "deleted", done.Stage)
	assert.True(t, done.Gone, "Open after Delete is ErrNotExist")
	_, err = os.Stat(filepath.Join("/sys/fs/cgroup", during.Cgroup))
	assert.ErrorIs(t, err, fs.ErrNotExist, "the group's cgroup after Delete")
	if ents, err := os.ReadDir(managerDir); assert.NoError(t, err) {
		for _, e := range ents {
			assert.False(t, e.IsDir() && strings.Contains(e.Name(), "cgsem"), "left below %s: %s", managerDir, e.Name())
		}
	}
}

// requireUserManagerHost skips unless the test may create a user and
// start its user manager: only the throwaway guest of the systemd VM lane,
// as root, with systemd as PID 1 on the unified hierarchy.
func requireUserManagerHost(t *testing.T) {
	t.Helper()
	if os.Getenv("CGSEM_VM") != "1" || os.Getenv("CGSEM_VM_SYSTEMD") != "1" {
		t.Skip("creates a user and starts its user manager, which only a throwaway guest may host: runs in the systemd VM " +
			"of test/vm (CGSEM_VM=1 and CGSEM_VM_SYSTEMD=1): test/vm/lane.sh --systemd --run TestUserManager ./drivers/systemd")
	}
	testenv.RequireRoot(t)
	testenv.RequireSystemd(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("needs the unified cgroup hierarchy at /sys/fs/cgroup (a user manager gets its delegated subtree there): %v", err)
	}
}

// installUserBus gives user managers a session bus when the root has no
// dbus-user-session (the lane's minbase root has dbus, not it): the same
// socket and service that package installs, in /etc/systemd/user, gone
// again after the test.
func installUserBus(t *testing.T) {
	t.Helper()
	for _, dir := range []string{"/usr/lib/systemd/user", "/lib/systemd/user", "/etc/systemd/user"} {
		if _, err := os.Stat(filepath.Join(dir, "dbus.socket")); err == nil {
			return
		}
	}
	_, err := exec.LookPath("dbus-daemon")
	require.NoError(t, err, "a user bus needs dbus-daemon")
	files := map[string]string{
		"/etc/systemd/user/dbus.socket": `[Unit]
Description=D-Bus User Message Bus Socket (cgsem test)

[Socket]
ListenStream=%t/bus

[Install]
WantedBy=sockets.target
`,
		"/etc/systemd/user/dbus.service": `[Unit]
Description=D-Bus User Message Bus (cgsem test)
Requires=dbus.socket

[Service]
ExecStart=/usr/bin/dbus-daemon --session --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only
`,
	}
	link := "/etc/systemd/user/sockets.target.wants/dbus.socket"
	t.Cleanup(func() {
		for _, p := range []string{link, "/etc/systemd/user/dbus.socket", "/etc/systemd/user/dbus.service"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove %s: %v", p, err)
			}
		}
		_ = os.Remove(filepath.Dir(link))
	})
	require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
	for p, body := range files {
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	require.NoError(t, os.Symlink("../dbus.socket", link))
}

// runtimeEnv gives unit XDG_RUNTIME_DIR=dir, which pam_systemd sets in a
// user manager's environment where it is installed (the lane's minbase
// root has no libpam-systemd, and systemd --user refuses to start without
// it): a runtime drop-in, gone with the test.
func runtimeEnv(t *testing.T, unit, dir string) {
	t.Helper()
	dropIn := filepath.Join("/run/systemd/system", unit+".d")
	t.Cleanup(func() {
		assert.NoError(t, os.RemoveAll(dropIn))
		mustRun(t, "systemctl", "daemon-reload")
	})
	require.NoError(t, os.MkdirAll(dropIn, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dropIn, "cgsem-test-runtime-dir.conf"),
		[]byte("[Service]\nEnvironment=XDG_RUNTIME_DIR="+dir+"\n"), 0o644))
	mustRun(t, "systemctl", "daemon-reload")
}

// freeUID returns the first uid from want on that has no user and no
// runtime directory, and a user name for it.
func freeUID(t *testing.T, want int) (int, string) {
	t.Helper()
	for uid := want; uid < want+100; uid++ {
		if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			continue
		}
		if _, err := os.Lstat(fmt.Sprintf("/run/user/%d", uid)); err == nil {
			continue
		}
		name := fmt.Sprintf("cgsemtest%d", uid)
		if _, err := user.Lookup(name); err == nil {
			continue
		}
		return uid, name
	}
	t.Fatalf("no free uid in %d..%d", want, want+99)
	return 0, ""
}

// userExecutable copies this test binary where the user may run it: the
// lane's test disk need not let anyone but root in.
func userExecutable(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("/tmp", "cgsem-test-usermgr-")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, os.RemoveAll(dir)) })
	require.NoError(t, os.Chmod(dir, 0o755))
	exe := filepath.Join(dir, "systemd.test")
	copyFile(t, self, exe)
	return exe
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
}

// systemctl runs a job-waiting systemctl verb on the system manager; a
// failure names the unit's status.
func systemctl(verb, unit string) error {
	out, err := exec.Command("systemctl", verb, unit).CombinedOutput()
	if err != nil {
		status, _ := exec.Command("systemctl", "status", "--no-pager", "--lines=30", unit).CombinedOutput()
		return fmt.Errorf("systemctl %s %s: %w: %s\n%s", verb, unit, err, out, status)
	}
	return nil
}

// waitSocket waits until path is a socket: the user manager's dbus.socket
// listens there once the user manager is up.
func waitSocket(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no socket at %s: %v", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runUserChild runs cmd, hands each report line to onReport (with the
// child's stdin, to let it go on), and returns the reports once the child
// passed; a failed child fails the test with its whole output.
func runUserChild(t *testing.T, cmd *exec.Cmd, onReport func(userReport, io.Writer)) []userReport {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	var out strings.Builder
	var reports []userReport
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		body, ok := strings.CutPrefix(line, userReportPrefix)
		if !ok {
			continue
		}
		var r userReport
		if !assert.NoError(t, json.Unmarshal([]byte(body), &r), "report %q", body) {
			continue
		}
		reports = append(reports, r)
		if onReport != nil {
			onReport(r, stdin)
		}
	}
	stdin.Close()
	err = cmd.Wait()
	require.NoError(t, err, "the child as uid %d failed:\n%s\nstderr:\n%s", cmd.SysProcAttr.Credential.Uid, out.String(), stderr.String())
	t.Logf("child %s:\n%s", cmd.Env[len(cmd.Env)-1], out.String())
	return reports
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keyed parses "key value" lines (pids.events, memory.events).
func keyed(t *testing.T, s string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		assert.NoError(t, err, "line %q", line)
		out[k] = n
	}
	return out
}

// procUID is the real uid of pid from /proc, or the error.
func procUID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return "no Uid line"
}

// reportToParent writes one report line for the parent.
func reportToParent(t *testing.T, r userReport) {
	t.Helper()
	b, err := json.Marshal(r)
	require.NoError(t, err)
	fmt.Printf("%s%s\n", userReportPrefix, b)
}

// userChild is the part of TestUserManager that runs as the user.
func userChild(t *testing.T, mode string) {
	log := hclog.New(&hclog.LoggerOptions{Name: "cgsem", Level: hclog.Debug, Output: os.Stderr})
	opts := semantic.Options{Logger: log, Settings: map[string]string{"bus": "user"}}
	switch mode {
	case "absent":
		d, err := Open(opts)
		if err == nil {
			d.Close()
			t.Fatal("Open of the user bus succeeded before the user manager runs")
		}
		reportToParent(t, userReport{Stage: mode, OpenError: err.Error(),
			NotExist: errors.Is(err, semantic.ErrNotExist), NotSupported: errors.Is(err, semantic.ErrNotSupported)})
	case "group":
		userChildGroup(t, opts)
	default:
		t.Fatalf("unknown %s=%q", userChildEnv, mode)
	}
}

func userChildGroup(t *testing.T, opts semantic.Options) {
	ctx, cancel := context.WithTimeout(t.Context(), userLiveness)
	defer cancel()
	d, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close()) })

	p := semantic.MustPath(testenv.UniqueName(t))
	g, err := d.Create(ctx, p, &semantic.Resources{
		Pids:   &semantic.Pids{Max: ptr(semantic.Count(userPidsMax))},
		Memory: &semantic.Memory{Max: ptr(semantic.Bytes(userMemoryMax))},
	})
	require.NoError(t, err)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			assert.NoError(t, g.Delete(context.WithoutCancel(ctx), &semantic.DeleteOptions{Kill: true, Recursive: true}))
		}
	})
	r := userReport{Stage: "group", UID: os.Getuid(), Base: d.base}
	slice, err := d.names.slice(p)
	require.NoError(t, err)
	r.Cgroup = d.sliceCgroupOf(slice)

	res, err := g.Resources(ctx)
	require.NoError(t, err)
	if res.Pids != nil && res.Pids.Max != nil {
		r.ReadPidsMax = uint64(*res.Pids.Max)
	}
	if res.Memory != nil && res.Memory.Max != nil {
		r.ReadMemoryMax = uint64(*res.Memory.Max)
	}

	// Each sleep is one task; the shell is one more. Its output goes
	// to /dev/null, or the pipe would stay open past the shell's exit.
	script := fmt.Sprintf(`n=0
while [ "$n" -lt %d ]; do
	sleep 600 >/dev/null 2>&1 &
	n=$((n+1))
	echo "started $n"
done
echo "all started"`, userForks)
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	var so, se strings.Builder
	sh.Stdout, sh.Stderr = &so, &se
	require.NoError(t, g.Start(ctx, sh))
	err = sh.Wait()
	r.ShellStdout, r.ShellStderr = so.String(), se.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ShellExit = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	for line := range strings.SplitSeq(r.ShellStdout, "\n") {
		if strings.HasPrefix(line, "started ") {
			r.Started++
		}
	}

	r.Processes, err = g.Processes(ctx)
	require.NoError(t, err)
	st, err := g.Stats(ctx)
	require.NoError(t, err)
	if st.Pids != nil && st.Pids.Current != nil {
		r.PidsCurrent = *st.Pids.Current
	}
	if st.Pids != nil && st.Pids.Limit != nil {
		r.PidsLimit = uint64(*st.Pids.Limit)
	}
	if st.Memory != nil && st.Memory.Usage != nil {
		r.MemoryUsage = *st.Memory.Usage
	}
	reportToParent(t, r)

	// The parent reads the kernel's files meanwhile; it says when it is
	// done (or closes stdin when it gave up).
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	require.NoError(t, err, "waiting for the parent: %q", line)

	deleted = true
	require.NoError(t, g.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
	_, err = d.Open(ctx, p)
	reportToParent(t, userReport{Stage: "deleted", Gone: errors.Is(err, semantic.ErrNotExist)})
}

// TestUserManagerAbsent checks what Open says when the user bus it is
// asked for has no user manager behind it: an error naming the address,
// with a kind a caller can act on.
func TestUserManagerAbsent(t *testing.T) {
	if os.Getenv(userChildEnv) != "" {
		t.Skip("the child of TestUserManager")
	}
	dir := t.TempDir()
	// A socket that accepts and hangs up: something listens, no bus.
	deaf := filepath.Join(dir, "deaf")
	l, err := net.Listen("unix", deaf)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	for _, c := range []struct {
		name         string
		runtime, bus string
		kind         error
		mention      string
	}{
		{
			name: "runtime dir without a bus", runtime: dir,
			kind: semantic.ErrNotExist, mention: "unix:path=" + dir + "/bus",
		},
		{
			name: "runtime dir that does not exist", runtime: filepath.Join(dir, "missing"),
			kind: semantic.ErrNotExist, mention: "unix:path=" + dir + "/missing/bus",
		},
		{
			// The session address wins over the runtime dir, as sd-bus has it.
			name: "session address to nothing", runtime: dir, bus: "unix:path=" + dir + "/nobus",
			kind: semantic.ErrNotExist, mention: "unix:path=" + dir + "/nobus",
		},
		{
			name: "socket with no bus behind it", bus: "unix:path=" + deaf,
			kind: semantic.ErrNotSupported, mention: "unix:path=" + deaf,
		},
		{
			// Nothing to connect to and no address to name: the setting
			// cannot be resolved here, and the message says from what.
			name: "neither variable set",
			kind: semantic.ErrInvalid, mention: "DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", c.runtime)
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", c.bus)
			if c.runtime == "" {
				os.Unsetenv("XDG_RUNTIME_DIR")
			}
			if c.bus == "" {
				os.Unsetenv("DBUS_SESSION_BUS_ADDRESS")
			}
			d, err := Open(semantic.Options{Settings: map[string]string{"bus": "user"}})
			if err == nil {
				d.Close()
			}
			require.ErrorIs(t, err, c.kind)
			assert.Contains(t, err.Error(), c.mention)
			t.Log(err)
		})
	}
}
