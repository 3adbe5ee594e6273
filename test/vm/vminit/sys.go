//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

type mountSpec struct {
	source, target, fstype, data string
	optional                     bool
}

// mounts lists the filesystems a test binary expects of a Linux system.
// cgroup2 is the only cgroup filesystem: the kernel is booted with
// cgroup_no_v1=all, so no controller can be bound to a v1 hierarchy.
func mountTable() []mountSpec {
	return []mountSpec{
		{"proc", "/proc", "proc", "", false},
		{"sysfs", "/sys", "sysfs", "", false},
		{"devtmpfs", "/dev", "devtmpfs", "", false},
		// nsdelegate and memory_recursiveprot are what systemd mounts with;
		// the second needs 5.7, so a mount without options is the fallback.
		{"cgroup2", cgroupRoot, "cgroup2", "nsdelegate,memory_recursiveprot", false},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777", false},
		{"tmpfs", "/run", "tmpfs", "mode=0755", false},
		{"devpts", "/dev/pts", "devpts", "", true},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777", true},
		{"bpf", "/sys/fs/bpf", "bpf", "", true},
	}
}

func (in *init1) mountAll() error {
	for _, m := range mountTable() {
		if err := os.MkdirAll(m.target, 0o755); err != nil && !m.optional {
			return err
		}
		err := unix.Mount(m.source, m.target, m.fstype, unix.MS_NOSUID, m.data)
		if err != nil && m.fstype == "cgroup2" {
			err = unix.Mount(m.source, m.target, m.fstype, unix.MS_NOSUID, "")
		}
		if err != nil {
			if m.optional {
				in.logf("mount %s on %s: %v (optional, going on)", m.fstype, m.target, err)
				continue
			}
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return err
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not cgroup2 (magic %#x)", cgroupRoot, st.Type)
	}
	return nil
}

// ensureConsole makes fds 0-2 the console when the kernel could not open
// it (no /dev/console node in the archive): output must reach ttyS0.
func ensureConsole() {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return
	}
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for fd := 0; fd < 3; fd++ {
		unix.Dup2(int(f.Fd()), fd)
	}
	f.Close()
}

// openRawSerial opens a UART for the host-facing protocol in raw mode: the
// bytes must arrive unchanged (no \n -> \r\n, no echo, no flow control).
// O_NOCTTY keeps PID 1 from acquiring it as a controlling terminal.
func openRawSerial(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS | unix.CBAUD
		t.Cflag |= unix.CS8 | unix.CLOCAL | unix.B115200
		err = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, err)
	}
	return f, nil
}

// drain blocks until the UART has sent everything written to it
// (tcdrain), so a power-off cannot cut the tail of the output.
func drain(f *os.File) {
	if f != nil {
		unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}
}

func (in *init1) loadModules(mods []module) {
	for _, m := range mods {
		f, err := os.Open(m.path)
		if err == nil {
			err = unix.FinitModule(int(f.Fd()), m.params, 0)
			f.Close()
		}
		switch {
		case errors.Is(err, unix.EEXIST):
			in.logf("module %s: already present", filepath.Base(m.path))
		case err != nil:
			// A missing module only loses the tests that need its device;
			// they find out themselves and say so.
			in.logf("module %s: %v", filepath.Base(m.path), err)
		default:
			in.logf("module %s loaded %s", filepath.Base(m.path), m.params)
		}
	}
}

// enableControllers writes each wanted controller into dir's
// cgroup.subtree_control, one write per controller so one refusal does not
// hide the others. want nil means every controller dir offers.
func (in *init1) enableControllers(dir string, want []string) (enabled string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return "", err
	}
	avail := strings.Fields(string(b))
	if want == nil {
		want = avail
	}
	var failed []string
	for _, c := range want {
		if werr := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0); werr != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c, werr))
		}
	}
	b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if rerr != nil {
		return "", rerr
	}
	enabled = strings.Join(strings.Fields(string(b)), " ")
	in.logf("%s cgroup.controllers: %s", dir, strings.Join(avail, " "))
	in.logf("%s cgroup.subtree_control: %s", dir, enabled)
	if len(failed) > 0 {
		return enabled, fmt.Errorf("enable controllers: %s", strings.Join(failed, "; "))
	}
	return enabled, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
