//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// newRootDir is where the new root is mounted before it becomes "/".
const newRootDir = "/newroot"

// deviceWait bounds the wait for a disk's node: virtio_blk may probe
// after its finit_module returned, and a missing disk must end the boot
// with a message rather than hang it.
const deviceWait = 30 * time.Second

// switchRoot mounts the manifest's root and disks and executes the root's
// init in place of this process, as PID 1, with the kernel's command line
// and environment. It returns only on failure; the caller reports it on
// the protocol port, which is then still open.
//
// The handover follows switch_root(8): /dev (devtmpfs, with devpts and
// /dev/shm below it) moves into the new root, every other filesystem of
// the initramfs stage is detached (systemd mounts /proc, /sys, cgroup2 and
// /run itself, with its own options), and the new root is moved onto "/".
// The initramfs's files are left in place: it holds only this binary and
// a few modules.
func (in *init1) switchRoot(m *manifest) error {
	r := m.root
	if err := waitDevice(r.device, deviceWait); err != nil {
		return err
	}
	if err := os.MkdirAll(newRootDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(r.device, newRootDir, r.fstype, 0, ""); err != nil {
		return fmt.Errorf("mount root %s (%s): %w", r.device, r.fstype, err)
	}
	for _, d := range m.mounts {
		if err := waitDevice(d.device, deviceWait); err != nil {
			return err
		}
		target := filepath.Join(newRootDir, d.dir)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		flags, data := mountFlags(d.options)
		if err := unix.Mount(d.device, target, d.fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s (%s %s): %w", d.device, d.dir, d.fstype, d.options, err)
		}
		in.logf("mounted %s on %s", d.device, d.dir)
	}
	// A wrong disk is told apart here, while the initramfs's view is
	// still whole. Lstat: the init may be an absolute symlink, which
	// resolves only once the new root is "/".
	for _, p := range []string{"/dev", r.init} {
		if _, err := os.Lstat(filepath.Join(newRootDir, p)); err != nil {
			return fmt.Errorf("%s has no %s: not a root filesystem: %w", r.device, p, err)
		}
	}
	in.logf("switching root to %s, init %s", r.device, r.init)
	in.protocol("VMTEST_INFO stage=initramfs kernel=%s root=%s init=%s", kernelRelease(), r.device, r.init)
	drain(in.results)

	if err := unix.Mount("/dev", filepath.Join(newRootDir, "dev"), "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move /dev into the new root: %w", err)
	}
	// Deepest first, so each is a leaf when it goes; /proc last, since
	// logf reads the uptime there.
	for _, m := range []string{"/sys/fs/bpf", cgroupRoot, "/sys", "/tmp", "/run", "/proc"} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			in.logf("unmount %s: %v", m, err)
		}
	}
	if err := unix.Chdir(newRootDir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// Checked only now: the init is often a symlink (/sbin/init), and an
	// absolute target resolves only inside the new root.
	if err := unix.Access(r.init, unix.X_OK); err != nil {
		return fmt.Errorf("init %s on %s: %w", r.init, r.device, err)
	}
	err := unix.Exec(r.init, []string{r.init}, os.Environ())
	return fmt.Errorf("exec %s: %w", r.init, err)
}

// waitDevice waits until a device node exists.
func waitDevice(dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := os.Stat(dev)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, os.ErrNotExist):
			return err
		case time.Now().After(deadline):
			return fmt.Errorf("device %s did not appear in %s (its driver module missing?)", dev, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountFlags splits a mount(8)-style option list into the flags mount(2)
// takes and the data left for the filesystem.
func mountFlags(options string) (flags uintptr, data string) {
	var rest []string
	for _, o := range strings.Split(options, ",") {
		switch o {
		case "", "rw", "defaults":
		case "ro":
			flags |= unix.MS_RDONLY
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		default:
			rest = append(rest, o)
		}
	}
	return flags, strings.Join(rest, ",")
}
