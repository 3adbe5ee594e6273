package sdns

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Check reports why Start cannot run here with these options, or nil.
// Its errors wrap errors.ErrUnsupported; tests skip with them.
func Check(opts Options) error {
	_, err := prepare(opts)
	return err
}

// prepared is what Start learns before it changes anything.
type prepared struct {
	mode, systemd, nsenter string
	hier                   []hierarchy
	layout                 cgroupLayout
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("sdns: "+format+": %w", append(a, errors.ErrUnsupported)...)
}

func prepare(opts Options) (prepared, error) {
	var p prepared
	if os.Geteuid() != 0 {
		return p, unsupported("needs root (euid %d)", os.Geteuid())
	}
	p.systemd = opts.Systemd
	if p.systemd == "" {
		for _, c := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
			if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
				p.systemd = c
				break
			}
		}
		if p.systemd == "" {
			return p, unsupported("no systemd binary in /lib/systemd or /usr/lib/systemd")
		}
	} else if _, err := os.Stat(p.systemd); err != nil {
		return p, unsupported("systemd binary: %v", err)
	}
	if !fileExists("/lib/systemd/system/dbus.service") && !fileExists("/usr/lib/systemd/system/dbus.service") {
		return p, unsupported("no dbus.service unit (package dbus) for the container's system bus")
	}
	var err error
	if p.nsenter, err = exec.LookPath("nsenter"); err != nil {
		return p, unsupported("nsenter (util-linux), which Exec needs: %v", err)
	}
	self, err := readParse("/proc/self/cgroup", parseProcCgroup)
	if err != nil {
		return p, err
	}
	mounts, err := readParse("/proc/self/mountinfo", parseMountinfo)
	if err != nil {
		return p, err
	}
	kernel, err := readParse("/proc/cgroups", parseProcCgroups)
	if err != nil {
		return p, err
	}
	p.hier, _ = discoverHierarchies(self, mounts, kernel)
	p.mode = opts.Mode
	if p.mode == "" {
		p.mode = ModeHybrid
		if _, err := planLayout(ModeHybrid, p.hier, kernel); err != nil {
			p.mode = ModeUnified
		}
	}
	if p.layout, err = planLayout(p.mode, p.hier, kernel); err != nil {
		return p, fmt.Errorf("sdns: %w", err)
	}
	return p, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readParse[T any](name string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(name)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return v, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// Start boots systemd as PID 1 of new pid, mount, cgroup, network, UTS and
// IPC namespaces, on an overlay of / whose writes go to a tmpfs, in a new
// group named GroupPrefix+random below the calling process's own cgroup in
// every hierarchy that a mount reaches. It returns once systemd runs;
// WaitReady waits for its bus. On error nothing is left behind, and the
// message names the group.
func Start(ctx context.Context, opts Options) (*Instance, error) {
	t0 := time.Now()
	p, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	for name := range opts.Units {
		// The init stage writes them before the host's tree is out of
		// reach: a name must not lead out of /etc/systemd/system.
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return nil, fmt.Errorf("sdns: unit file name %q: want a plain file name", name)
		}
	}
	opts.MemoryLimit = cmp.Or(opts.MemoryLimit, 4<<30)
	opts.TasksLimit = cmp.Or(opts.TasksLimit, 4096)
	opts.StopGrace = cmp.Or(opts.StopGrace, 30*time.Second)
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	in := &Instance{
		opts:    opts,
		name:    GroupPrefix + hex.EncodeToString(rnd[:]),
		mode:    p.mode,
		nsenter: p.nsenter,
		hier:    p.hier,
		groups:  map[string]string{},
		t0:      t0,
		exited:  make(chan struct{}),
		procs:   map[*Process]struct{}{},
	}
	in.log = log.Named("sdns").With("name", in.name)
	if err := in.start(ctx, p.layout, p.systemd); err != nil {
		in.cleanupAfterFailedStart()
		return nil, fmt.Errorf("sdns: start %s: %w", in.name, err)
	}
	return in, nil
}

func (in *Instance) start(ctx context.Context, layout cgroupLayout, systemd string) error {
	state := filepath.Join(cmp.Or(in.opts.TempDir, os.TempDir()), in.name)
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	in.state = state // only now is it ours to remove
	if err := os.Mkdir(filepath.Join(in.state, "t"), 0o700); err != nil {
		return err
	}
	var err error
	if in.console, err = openConsole(in.ConsolePath()); err != nil {
		return err
	}
	// The init stage's own failures (a crash of the Go runtime before
	// systemd runs) go to the same log.
	stderr, err := os.OpenFile(in.ConsolePath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer stderr.Close()
	if err := in.createGroups(); err != nil {
		return err
	}
	cfg := stageConfig{
		State:   in.state,
		Layout:  layout,
		Systemd: systemd,
		Args: []string{
			"--unit=" + BootTarget,
			"--log-target=" + cmp.Or(in.opts.LogTarget, "console"),
			"--log-level=" + cmp.Or(in.opts.LogLevel, "info"),
			"--show-status=no",
		},
		Units:     map[string]string{BootTarget: bootTargetUnit},
		Masks:     maskedUnits(),
		Empty:     emptiedFiles(),
		DropCaps:  dropCapabilities(),
		Hostname:  "cgsem-sdns",
		DevMajor:  NoDeviceMajor,
		Container: "cgsem-sdns",
		Console:   in.console.tty.Name(),
	}
	for k, v := range in.opts.Units {
		cfg.Units[k] = v
	}
	return in.spawnInit(ctx, cfg, stderr)
}

// createGroups makes the container's group in every reachable hierarchy,
// with what a child needs (cpuset) and the safety limits.
func (in *Instance) createGroups() error {
	for _, h := range in.hier {
		d := filepath.Join(h.Own, in.name)
		in.log.Trace("mkdir", "path", d)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create group: %w", err)
		}
		in.groups[h.Key()] = d
		var writes [][2]string
		if slices.Contains(h.Controllers, "cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h.Own, f))
				if err != nil {
					return err
				}
				writes = append(writes, [2]string{f, strings.TrimSpace(string(b))})
			}
			// systemd's groups below get the same sets.
			writes = append(writes, [2]string{"cgroup.clone_children", "1"})
		}
		if slices.Contains(h.Controllers, "memory") {
			writes = append(writes, [2]string{"memory.limit_in_bytes", strconv.FormatUint(in.opts.MemoryLimit, 10)})
		}
		if slices.Contains(h.Controllers, "pids") {
			writes = append(writes, [2]string{"pids.max", strconv.FormatUint(in.opts.TasksLimit, 10)})
		}
		if h.ID == 0 {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.controllers"))
			if err != nil {
				return err
			}
			ctrls := strings.Fields(string(b))
			if slices.Contains(ctrls, "memory") {
				writes = append(writes, [2]string{"memory.max", strconv.FormatUint(in.opts.MemoryLimit, 10)})
			}
			if slices.Contains(ctrls, "pids") {
				writes = append(writes, [2]string{"pids.max", strconv.FormatUint(in.opts.TasksLimit, 10)})
			}
		}
		for _, w := range writes {
			if err := in.writeGroupFile(filepath.Join(d, w[0]), w[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// owns reports whether p is one of the container's groups or below one.
func (in *Instance) owns(p string) bool {
	p = filepath.Clean(p)
	for _, g := range in.groups {
		if p == g || strings.HasPrefix(p, g+"/") {
			return true
		}
	}
	return false
}

// writeGroupFile writes a cgroup attribute file of the container's own
// groups; it refuses any other path.
func (in *Instance) writeGroupFile(p, v string) error {
	if !in.owns(filepath.Dir(p)) {
		return fmt.Errorf("refusing to write %s: not below the container's groups", p)
	}
	in.log.Trace("write", "path", p, "value", v)
	if err := writeFile(p, v); err != nil {
		return fmt.Errorf("write %q to %s: %w", v, p, err)
	}
	return nil
}

// writeFile writes v with one write(2), retrying EINTR: cgroup writes fail
// with it when a signal is pending.
func writeFile(p, v string) error {
	var fd int
	var err error
	for {
		fd, err = unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(v))
		if err != unix.EINTR {
			return err
		}
	}
}

// moveInto writes pid into the cgroup.procs of the given group directories.
func (in *Instance) moveInto(pid int, dirs []string) error {
	for _, d := range dirs {
		if err := in.writeGroupFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// spawnInit starts the init stage, moves it into the groups, hands it the
// config and waits until it has executed systemd or failed.
func (in *Instance) spawnInit(ctx context.Context, cfg stageConfig, stderr *os.File) error {
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer gateW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		gateR.Close()
		return err
	}
	defer statusR.Close()

	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"cgsem-sdns-init"},
		Env:        []string{stageEnv + "=" + stageInit},
		Stdout:     stderr,
		Stderr:     stderr,
		ExtraFiles: []*os.File{gateR, statusW, in.console.tty},
		SysProcAttr: &unix.SysProcAttr{
			Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
			Setsid:     true,
			// If the test process dies without Stop, the container dies
			// with it; its groups stay behind, named for a leak check.
			Pdeathsig: unix.SIGKILL,
		},
	}
	started := make(chan error, 1)
	// Pdeathsig fires when the thread that forked exits, not the process:
	// this goroutine keeps its thread until the container is reaped.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		in.exitState = cmd.ProcessState.String()
		close(in.exited)
	}()
	err = <-started
	gateR.Close()
	statusW.Close()
	if err != nil {
		close(in.exited)
		return fmt.Errorf("start init stage: %w", err)
	}
	in.initPID = cmd.Process.Pid
	in.initProc = cmd.Process
	in.log.Debug("init stage started", "pid", in.initPID)
	fail := func(err error) error {
		_ = in.initProc.Kill()
		<-in.exited
		return err
	}
	if err := in.moveInto(in.initPID, in.groupDirs()); err != nil {
		return fail(err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return fail(err)
	}
	if _, err := gateW.Write(b); err != nil {
		return fail(fmt.Errorf("send config: %w", err))
	}
	gateW.Close()

	status := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(statusR)
		status <- b
	}()
	select {
	case b := <-status:
		if len(b) > 0 {
			return fail(errors.New(string(b)))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if err := in.pin(); err != nil {
		err = fail(err)
		return fmt.Errorf("%w (systemd: %s); console:\n%s", err, in.exitState, in.ConsoleTail(2048))
	}
	in.mu.Lock()
	in.timings.Exec = time.Since(in.t0)
	in.mu.Unlock()
	in.log.Debug("systemd executed", "pid", in.initPID, "mode", in.mode, "after", in.timings.Exec)
	return nil
}

// pin opens the container's root and namespaces while its PID 1 is known
// to be this process's unreaped child. Everything later reaches the
// container through these descriptors, never through its pid, which the
// kernel may give to another process once the container is gone.
func (in *Instance) pin() error {
	for _, ns := range []struct{ file, option string }{
		{"mnt", "--mount"}, {"uts", "--uts"}, {"ipc", "--ipc"}, {"net", "--net"}, {"pid", "--pid"}, {"cgroup", "--cgroup"},
	} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", in.initPID, ns.file))
		if err != nil {
			return err
		}
		in.ns = append(in.ns, nsFile{option: ns.option, f: f})
	}
	root, err := os.Open(fmt.Sprintf("/proc/%d/root", in.initPID))
	if err != nil {
		return err
	}
	in.root = root
	select {
	case <-in.exited:
		return errors.New("systemd exited at once")
	default:
		return nil
	}
}

// unpin closes what pin opened.
func (in *Instance) unpin() {
	for _, n := range in.ns {
		n.f.Close()
	}
	if in.root != nil {
		in.root.Close()
	}
}

// cleanupAfterFailedStart removes what a failed Start made.
func (in *Instance) cleanupAfterFailedStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if in.initProc != nil {
		_ = in.initProc.Kill()
		<-in.exited
	}
	in.unpin()
	if in.console != nil {
		in.console.close()
	}
	if err := in.removeGroups(ctx); err != nil {
		in.log.Error("cleanup after failed start", "error", err)
	}
	if in.state != "" {
		_ = os.RemoveAll(in.state)
	}
}
