package sdns

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The container is set up by this package's own binary, re-executed: the
// parent cannot move a child into cgroups between fork and exec, and the
// cgroup namespace must be created after the move so that its root is the
// container's group. The re-executed process waits on a pipe until the
// parent has moved it, then does the rest itself.
const (
	stageEnv  = "CGSEM_SDNS_STAGE"
	stageInit = "init" // become the container: namespaces, mounts, exec systemd
	stageGate = "gate" // wait for the cgroup move, then exec the command line given
	// Descriptors the parent passes: the gate (and, for init, the config
	// in JSON) and a close-on-exec pipe that carries an error back; EOF
	// without an error means the exec succeeded.
	gateFD    = 3
	statusFD  = 4
	consoleFD = 5 // init only: the terminal that becomes /dev/console
)

func init() {
	stage := os.Getenv(stageEnv)
	if stage == "" {
		return
	}
	// Namespaces joined, capabilities dropped and the exec itself are per
	// thread; all of it happens on this one.
	runtime.LockOSThread()
	var err error
	switch stage {
	case stageInit:
		err = runInit()
	case stageGate:
		err = runGate()
	default:
		err = fmt.Errorf("unknown stage %q", stage)
	}
	status := os.NewFile(statusFD, "status")
	fmt.Fprintf(status, "%s: %v", stage, err)
	os.Exit(1)
}

// stageConfig is what the parent tells the init stage.
type stageConfig struct {
	State     string // host directory: console.log, and the tmpfs mount point "t"
	Layout    cgroupLayout
	Systemd   string
	Args      []string // systemd's arguments after argv[0]
	Units     map[string]string
	Masks     []string
	Empty     []string
	DropCaps  []int
	Hostname  string
	DevMajor  uint32 // of /dev/cgsem-nodev, a char node no driver answers
	Container string // $container for systemd's detection
	Console   string // host path of the terminal for /dev/console
}

// readGate blocks until the parent closes the gate pipe and returns what
// it wrote.
func readGate() ([]byte, error) {
	f := os.NewFile(gateFD, "gate")
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read gate: %w", err)
	}
	closeOthersOnExec()
	return b, nil
}

// closeOthersOnExec marks every descriptor from 3 up close-on-exec: the
// status pipe, and anything this process inherited without the flag from
// whatever ran the test, which must not reach systemd or a command inside.
func closeOthersOnExec() {
	if unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

func runGate() error {
	b, err := readGate()
	if err != nil {
		return err
	}
	var argv []string
	if err := json.Unmarshal(b, &argv); err != nil || len(argv) == 0 {
		return fmt.Errorf("gate: bad command line %q: %v", b, err)
	}
	env := withoutPrefix(os.Environ(), stageEnv+"=")
	return unix.Exec(argv[0], argv, env)
}

func withoutPrefix(env []string, prefix string) []string {
	out := env[:0]
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func runInit() error {
	b, err := readGate()
	if err != nil {
		return err
	}
	var c stageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// The parent has moved this process into the container's group in
	// every hierarchy; a cgroup namespace made now is rooted there, and
	// cgroup filesystems mounted from it show that group as their root.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare cgroup namespace: %w", err)
	}
	unix.Umask(0)
	// The mount namespace is a copy of the host's, with its propagation;
	// nothing may be mounted before every mount is private.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	root, err := mountRoot(c.State)
	if err != nil {
		return err
	}
	if err := writeEtc(root, &c); err != nil {
		return err
	}
	if err := mountAPI(root, &c); err != nil {
		return err
	}
	if err := mountDev(root, &c); err != nil {
		return err
	}
	if err := pivot(root); err != nil {
		return err
	}
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	for _, cp := range c.DropCaps {
		// EINVAL: the kernel does not know this capability, so nothing
		// can use it either.
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(cp), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", cp, err)
		}
	}
	env := []string{"container=" + c.Container, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return unix.Exec(c.Systemd, append([]string{c.Systemd}, c.Args...), env)
}

// mountRoot builds the container's root: an overlay whose lower layer is
// the host's root filesystem and whose writes go to a tmpfs.
func mountRoot(state string) (string, error) {
	t := filepath.Join(state, "t")
	if err := unix.Mount("tmpfs", t, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", t, err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(t, d), 0o755); err != nil {
			return "", err
		}
	}
	root := filepath.Join(t, "root")
	opts := fmt.Sprintf("lowerdir=/,upperdir=%s/upper,workdir=%s/work", t, t)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlay (%s): %w", opts, err)
	}
	return root, nil
}

// writeEtc changes the overlay's /etc; the writes land in the tmpfs.
func writeEtc(root string, c *stageConfig) error {
	sys := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		return err
	}
	// Units the host enabled must not start inside: drop every .wants and
	// .requires directory of the host's local configuration.
	ents, err := os.ReadDir(sys)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && (strings.HasSuffix(e.Name(), ".wants") || strings.HasSuffix(e.Name(), ".requires")) {
			if err := os.RemoveAll(filepath.Join(sys, e.Name())); err != nil {
				return err
			}
		}
	}
	for name, body := range c.Units {
		if err := os.WriteFile(filepath.Join(sys, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	for _, u := range c.Masks {
		p := filepath.Join(sys, u)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.Symlink("/dev/null", p); err != nil {
			return err
		}
	}
	for _, f := range c.Empty {
		p := filepath.Join(root, f)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) && f != "/etc/fstab" {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return err
		}
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	mid := filepath.Join(root, "etc/machine-id")
	_ = os.Remove(mid)
	if err := os.WriteFile(mid, []byte(hex.EncodeToString(id)+"\n"), 0o444); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/hostname"), []byte(c.Hostname+"\n"), 0o644)
}

const apiFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountAPI mounts /proc, /sys and the cgroup layout. Knobs in /proc and
// /sys that reach the whole host are read-only.
func mountAPI(root string, c *stageConfig) error {
	proc := filepath.Join(root, "proc")
	if err := unix.Mount("proc", proc, "proc", apiFlags, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, p := range []string{"sys", "sysrq-trigger", "irq", "bus"} {
		p = filepath.Join(proc, p)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := readOnlyBind(p); err != nil {
			return err
		}
	}
	sys := filepath.Join(root, "sys")
	if err := unix.Mount("sysfs", sys, "sysfs", apiFlags|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	cg := filepath.Join(sys, "fs/cgroup")
	for _, m := range c.Layout.Mounts {
		dir := filepath.Join(cg, m.Dir)
		if m.Dir != "" {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount(m.Source, dir, m.FSType, apiFlags|m.Flags, m.Options); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.FSType, m.Options, dir, err)
		}
	}
	for _, s := range c.Layout.Symlinks {
		if err := os.Symlink(s[1], filepath.Join(cg, s[0])); err != nil {
			return err
		}
	}
	return nil
}

func readOnlyBind(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", p, err)
	}
	if err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|apiFlags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", p, err)
	}
	return nil
}

// mountDev makes a minimal /dev: the usual character devices, a node with
// no driver behind it (opening it gives EPERM when the device cgroup
// denies it and ENXIO when it allows it), a private devpts, and the
// console terminal the parent passed.
func mountDev(root string, c *stageConfig) error {
	dev := filepath.Join(root, "dev")
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	nodes := []struct {
		name         string
		major, minor uint32
	}{
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
		{"tty", 5, 0}, {"cgsem-nodev", c.DevMajor, 0},
	}
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"); err != nil {
		return fmt.Errorf("mount devpts: %w", err)
	}
	links := [][2]string{{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}}
	for _, l := range links {
		if err := os.Symlink(l[1], filepath.Join(dev, l[0])); err != nil {
			return err
		}
	}
	console := filepath.Join(dev, "console")
	if err := os.WriteFile(console, nil, 0o600); err != nil {
		return err
	}
	if err := bindConsole(c.Console, console); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", filepath.Join(root, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	return nil
}

// bindConsole bind-mounts the terminal at path name (in the host's devpts,
// seen through this namespace's copy of the mount table) onto target,
// after checking that the name leads to the very terminal passed as
// consoleFD.
func bindConsole(name, target string) error {
	var want, got unix.Stat_t
	if err := unix.Fstat(consoleFD, &want); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if err := unix.Stat(name, &got); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if want.Rdev != got.Rdev || want.Dev != got.Dev {
		return fmt.Errorf("console: %s is not the terminal passed in", name)
	}
	unix.Close(consoleFD)
	if err := unix.Mount(name, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind console: %w", err)
	}
	return nil
}

// pivot makes root the root of the mount namespace and detaches the host's
// tree from it.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := os.Mkdir(".oldroot", 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", ".oldroot"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return os.Remove("/.oldroot")
}
