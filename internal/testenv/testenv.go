package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgsem/cgsem/internal/hostinfo"
	"github.com/cgsem/cgsem/internal/mountinfo"
)

// Prefix starts every name a test creates in a cgroup hierarchy, so a
// leftover is recognisable as a test's.
const Prefix = "cgsem-test-"

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
}

// Host is this machine's cgroup view, read fresh by LoadHost.
type Host struct {
	Mounts      []mountinfo.Mount
	Hierarchies []mountinfo.Hierarchy
	Layout      mountinfo.Layout
	// Self is the test process's /proc/self/cgroup.
	Self []mountinfo.CgroupEntry
}

// LoadHost reads /proc/self/mountinfo and /proc/self/cgroup; it fails the
// test if they cannot be read.
func LoadHost(t testing.TB) *Host {
	t.Helper()
	mounts, err := mountinfo.ParseFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	self, err := mountinfo.ReadCgroup(0)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	hs := mountinfo.Hierarchies(mounts)
	return &Host{Mounts: mounts, Hierarchies: hs, Layout: mountinfo.LayoutOf(hs), Self: self}
}

// SelfDir returns the directory of the test process's own cgroup in the
// hierarchy of controller ("" for the cgroup2 hierarchy, "name=systemd"
// for a named one), and ok false with a reason if there is none.
func (h *Host) SelfDir(controller string) (dir string, ok bool, why string) {
	hier, found := h.find(controller)
	if !found {
		return "", false, "no hierarchy " + describe(controller) + " is mounted"
	}
	p, err := mountinfo.Lookup(h.Self, hier)
	if err != nil {
		return "", false, err.Error()
	}
	dir, visible := hier.Dir(p)
	if !visible {
		return "", false, "own cgroup " + p + " of " + describe(controller) + " is not visible through any mount"
	}
	return dir, true, ""
}

func (h *Host) find(controller string) (mountinfo.Hierarchy, bool) {
	if name, ok := strings.CutPrefix(controller, "name="); ok {
		for _, hier := range h.Hierarchies {
			if hier.Version == 1 && hier.Name == name {
				return hier, true
			}
		}
		return mountinfo.Hierarchy{}, false
	}
	return mountinfo.Find(h.Hierarchies, controller)
}

func describe(controller string) string {
	if controller == "" {
		return "cgroup2"
	}
	return "v1 " + controller
}

// RequireV1 skips the test unless it runs as root and every controller
// has a v1 hierarchy where the test's own cgroup is visible and writable.
// It returns the own-cgroup directory per controller.
func RequireV1(t testing.TB, controllers ...string) map[string]string {
	t.Helper()
	RequireRoot(t)
	h := LoadHost(t)
	dirs := map[string]string{}
	for _, c := range controllers {
		dir, ok, why := h.SelfDir(c)
		if !ok {
			t.Skipf("needs v1 %s: %s", c, why)
		}
		if err := syscall.Access(dir, 2); err != nil { // W_OK
			t.Skipf("needs v1 %s: own cgroup %s is not writable: %v", c, dir, err)
		}
		dirs[c] = dir
	}
	return dirs
}

// RequireCgroup2 skips the test unless it runs as root with a cgroup2
// mount where its own cgroup is visible and writable; it returns that
// directory.
func RequireCgroup2(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir, ok, why := LoadHost(t).SelfDir("")
	if !ok {
		t.Skipf("needs cgroup2: %s", why)
	}
	if err := syscall.Access(dir, 2); err != nil {
		t.Skipf("needs a writable cgroup2: own cgroup %s: %v", dir, err)
	}
	return dir
}

// RequireCgroup2Controllers skips unless RequireCgroup2 holds and every
// controller is available in the own cgroup's cgroup.controllers.
func RequireCgroup2Controllers(t testing.TB, controllers ...string) string {
	t.Helper()
	dir := RequireCgroup2(t)
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		t.Skipf("needs cgroup2 controllers: %v", err)
	}
	have := strings.Fields(string(b))
	for _, c := range controllers {
		if !slices.Contains(have, c) {
			t.Skipf("needs cgroup2 controller %s; %s offers %q", c, dir, have)
		}
	}
	return dir
}

// SystemdPID1 reports whether systemd runs as PID 1 of this host and
// booted it, as the drivers' probes decide (hostinfo.Systemd), and why.
func SystemdPID1() (bool, string) {
	return hostinfo.Systemd("/")
}

// RequireSystemd skips the test unless systemd is PID 1.
func RequireSystemd(t testing.TB) {
	t.Helper()
	if ok, why := SystemdPID1(); !ok {
		t.Skip("needs systemd as PID 1: " + why)
	}
}

// UniqueName returns Prefix followed by 12 random hex digits.
func UniqueName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return Prefix + hex.EncodeToString(b)
}

// Leaks lists every directory below dir, as paths relative to it, sorted
// (parents before children). A missing dir has no leaks.
func Leaks(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipAll
			}
			// A group removed while we walk is not a leak.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// Scratch is a fresh cgroup a test owns: one directory of the same
// unique name beneath the test process's own cgroup in each hierarchy it
// asked for.
type Scratch struct {
	// Name is the directory's name in every hierarchy (Prefix + random).
	Name string
	// Dirs maps each requested controller ("" for cgroup2,
	// "name=systemd" for a named hierarchy) to its directory.
	Dirs map[string]string
}

// NewScratch creates a Scratch in the hierarchies of controllers and
// registers a cleanup that reports every directory left below it as a
// leak (t.Errorf), then removes them and the scratch directory itself
// (killing any process left inside: only the test can have put one
// there). In a cpuset hierarchy the new directory is seeded with its
// parent's cpuset.cpus and cpuset.mems so tasks can join it. Hierarchies
// sharing one directory (a co-mount) are created once. The caller has
// already checked the gates (RequireV1, RequireCgroup2).
func NewScratch(t testing.TB, controllers ...string) *Scratch {
	t.Helper()
	h := LoadHost(t)
	s := &Scratch{Name: UniqueName(t), Dirs: map[string]string{}}
	var created []string
	t.Cleanup(func() {
		for _, d := range slices.Backward(created) {
			leaks, err := Leaks(d)
			if err != nil {
				t.Errorf("testenv: leak check of %s: %v", d, err)
			}
			if len(leaks) > 0 {
				t.Errorf("testenv: left behind below %s: %q", d, leaks)
			}
			if err := RemoveTree(d); err != nil {
				t.Errorf("testenv: %v", err)
			}
		}
	})
	for _, c := range controllers {
		parent, ok, why := h.SelfDir(c)
		if !ok {
			t.Fatalf("testenv: scratch in %s: %s", describe(c), why)
		}
		dir := filepath.Join(parent, s.Name)
		s.Dirs[c] = dir
		if slices.Contains(created, dir) {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		created = append(created, dir)
		if err := SeedCpuset(dir); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return s
}

// SeedCpuset copies cpuset.cpus and cpuset.mems from dir's parent into
// dir when dir is a v1 cpuset group whose own are empty; elsewhere it
// does nothing.
func SeedCpuset(dir string) error {
	// A cgroup2 group (it has cgroup.controllers) with an empty
	// cpuset.cpus uses its parent's, which may have no such file at all
	// (the root): there is nothing to seed.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
		return nil
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(cur)) != "" {
			continue
		}
		v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
			return err
		}
	}
	return nil
}

// RemoveTree removes a cgroup directory and everything below it,
// deepest first, SIGKILLing the processes found inside (thawing a frozen
// v1 freezer group first so they can die). Use it only on a tree the test
// created.
func RemoveTree(dir string) error {
	leaks, err := Leaks(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	all := []string{dir}
	for _, l := range leaks {
		all = append(all, filepath.Join(dir, l))
	}
	var errs []error
	for _, d := range slices.Backward(all) {
		if err := removeGroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeGroup(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		// Thaw first: a frozen task cannot act on SIGKILL.
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
		_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
		for _, pid := range Procs(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Procs lists the pids in dir's cgroup.procs (nil if unreadable).
func Procs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}
