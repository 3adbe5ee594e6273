package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// namePrefix starts every group this program creates.
const namePrefix = "cgsem-bench-"

// v1Lifecycle are the hierarchies the v1 lifecycle workload asks for.
var v1Lifecycle = []string{"memory", "pids", "cpu", "devices", "freezer"}

// host is where this process's own cgroups are, in every hierarchy.
type host struct {
	// v1 maps a hierarchy key ("memory", "cpu,cpuacct", "name=systemd")
	// to the directory of this process's own cgroup in it.
	v1 map[string]string
	// path maps a v1 hierarchy key to this process's cgroup path in it,
	// as /proc/self/cgroup shows it ("/process_api/x", "/").
	path map[string]string
	// ctrl maps each v1 controller ("cpuacct", "name=systemd") to its
	// hierarchy key.
	ctrl map[string]string
	// unified is this process's own cgroup directory on the cgroup2
	// mount, "" without one.
	unified string
	// unifiedMount is the cgroup2 mount point.
	unifiedMount string
}

// dir is the own-cgroup directory of the hierarchy holding controller c.
func (h *host) dir(c string) string { return h.v1[h.ctrl[c]] }

// keys lists the v1 hierarchy keys, sorted.
func (h *host) keys() []string {
	ks := make([]string, 0, len(h.v1))
	for k := range h.v1 {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// loadHost reads /proc/self/mountinfo and /proc/self/cgroup.
func loadHost() (*host, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	return parseHost(mi, cg)
}

// cgMount is one cgroup mount from mountinfo.
type cgMount struct {
	root, point string
	v2          bool
	key         string // v1: controllers and name= from the super options, sorted as the kernel lists them
}

// parseHost maps each hierarchy to this process's own cgroup directory,
// using the first mount of each hierarchy whose root is an ancestor of
// (or equal to) the process's cgroup. Pure, for tests.
func parseHost(mountinfo, cgroup []byte) (*host, error) {
	var mounts []cgMount
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 {
			continue
		}
		fstype := f[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		m := cgMount{root: unescape(f[3]), point: unescape(f[4]), v2: fstype == "cgroup2"}
		if !m.v2 {
			var ctrls []string
			for _, o := range strings.Split(f[sep+3], ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr", "noprefix", "cpuset_v2_mode", "favordynmods":
					continue
				}
				if strings.HasPrefix(o, "release_agent=") {
					continue
				}
				ctrls = append(ctrls, o)
			}
			m.key = strings.Join(ctrls, ",")
		}
		mounts = append(mounts, m)
	}
	h := &host{v1: map[string]string{}, path: map[string]string{}, ctrl: map[string]string{}}
	sc = bufio.NewScanner(bytes.NewReader(cgroup))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for _, m := range mounts {
			if (id == "0" && key == "") != m.v2 || (!m.v2 && !sameKey(m.key, key)) {
				continue
			}
			rel, ok := under(path, m.root)
			if !ok {
				continue
			}
			dir := filepath.Join(m.point, rel)
			if m.v2 {
				h.unified, h.unifiedMount = dir, m.point
			} else {
				h.v1[key] = dir
				h.path[key] = path
				for _, c := range strings.Split(key, ",") {
					h.ctrl[c] = key
				}
			}
			break
		}
	}
	if len(h.v1) == 0 && h.unified == "" {
		return nil, errors.New("no cgroup mount reaches this process's cgroups")
	}
	return h, nil
}

// sameKey compares controller lists regardless of order.
func sameKey(a, b string) bool {
	x, y := strings.Split(a, ","), strings.Split(b, ",")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// under returns path relative to root when root is path or an ancestor.
func under(path, root string) (string, bool) {
	if root == "/" {
		return strings.TrimPrefix(path, "/"), true
	}
	if path == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(path, root+"/"); ok {
		return rest, true
	}
	return "", false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// uniqueName is namePrefix, the pid and random hex: unique on this host
// and recognisable as ours.
func uniqueName() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// benchRoot is the directory this run creates in every hierarchy, below
// the process's own cgroup; every group of every contender lives below
// it, so cleanup and the leak check look in one place.
type benchRoot struct {
	name    string
	v1      map[string]string // hierarchy key -> directory
	unified string
}

// makeRoot creates the run's directory in every v1 hierarchy (seeding
// cpuset, which takes no task before it has cpus and mems) and on the
// cgroup2 mount. On error what was made is removed.
func makeRoot(h *host) (*benchRoot, error) {
	r := &benchRoot{name: uniqueName(), v1: map[string]string{}}
	for _, k := range h.keys() {
		d := filepath.Join(h.v1[k], r.name)
		if err := os.Mkdir(d, 0o755); err != nil {
			r.remove(nil)
			return nil, err
		}
		r.v1[k] = d
		if strings.Contains(","+k+",", ",cpuset,") {
			if err := seedCpuset(h.v1[k], d); err != nil {
				r.remove(nil)
				return nil, err
			}
		}
	}
	if h.unified != "" {
		d := filepath.Join(h.unified, r.name)
		if err := os.Mkdir(d, 0o755); err != nil {
			r.remove(nil)
			return nil, err
		}
		r.unified = d
	}
	return r, nil
}

// seedCpuset copies cpuset.cpus and cpuset.mems from parent to dir.
func seedCpuset(parent, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(parent, f))
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, f), strings.TrimSpace(string(b))); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes a cgroup attribute, retrying EINTR (see DESIGN.md).
func writeFile(path, value string) error {
	fd, err := openRetry(unix.AT_FDCWD, path, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := writeRetry(fd, []byte(value)); err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// dirs lists every directory of the run's tree.
func (r *benchRoot) dirs() []string {
	var ds []string
	for _, d := range r.v1 {
		ds = append(ds, d)
	}
	if r.unified != "" {
		ds = append(ds, r.unified)
	}
	slices.Sort(ds)
	return ds
}

// remove deletes the whole tree, deepest first. Processes still inside
// (only this program's children can be: nothing else is ever moved in)
// are killed first when kill is given. It returns what it could not
// remove.
func (r *benchRoot) remove(kill func(pid int) bool) error {
	var errs []error
	for _, d := range r.dirs() {
		if err := removeTree(d, kill); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree removes dir and every directory below it, deepest first.
// A directory that vanished meanwhile is no error; any other failure is,
// with the path.
func removeTree(dir string, kill func(pid int) bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name()), kill); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if kill != nil {
		for _, pid := range procs(dir) {
			kill(pid)
		}
	}
	if err := rmdirRetry(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory, retrying the kernel's transient
// EBUSY while the last tasks of a group finish leaving it.
func rmdirRetry(d string) error {
	var err error
	for range 200 {
		err = unix.Rmdir(d)
		if err != unix.EBUSY && err != unix.EINTR {
			break
		}
		sleepBriefly()
	}
	return err
}

// procs reads a group's cgroup.procs; nil if it cannot.
func procs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// leaks lists every directory named namePrefix* below the process's own
// cgroup in every hierarchy: what this run (or an earlier, killed one)
// left behind.
func leaks(h *host) []string {
	var out []string
	dirs := []string{h.unified}
	for _, k := range h.keys() {
		dirs = append(dirs, h.v1[k])
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), namePrefix) {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// killChild SIGKILLs pid if it is one of this process's children (the
// sleepers the workloads start), and nothing else.
func killChild(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 4 (ppid) follows the parenthesised comm, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
		return false
	}
	return syscall.Kill(pid, syscall.SIGKILL) == nil
}
