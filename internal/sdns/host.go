package sdns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procCgroup is one line of /proc/<pid>/cgroup.
type procCgroup struct {
	ID int
	// List is the hierarchy's controllers and name= as the kernel lists
	// them ("cpu,cpuacct", "name=systemd"); empty for cgroup2.
	List []string
	Path string
}

func parseProcCgroup(r io.Reader) ([]procCgroup, error) {
	var out []procCgroup
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("cgroup line %q: want id:controllers:path", line)
		}
		id, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("cgroup line %q: %w", line, err)
		}
		var list []string
		if f[1] != "" {
			list = strings.Split(f[1], ",")
		}
		out = append(out, procCgroup{ID: id, List: list, Path: f[2]})
	}
	return out, sc.Err()
}

// mountEntry is the part of a /proc/<pid>/mountinfo line this package uses.
type mountEntry struct {
	Root       string
	Mountpoint string
	Options    []string // per mount: ro, nosuid, ...
	FSType     string
	Super      []string // per superblock
}

func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		// Optional fields end at a lone "-"; the fields after it are
		// fstype, source and the superblock options.
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 {
			return nil, fmt.Errorf("mountinfo line %q: too few fields", line)
		}
		out = append(out, mountEntry{
			Root:       unescapeMountinfo(f[3]),
			Mountpoint: unescapeMountinfo(f[4]),
			Options:    strings.Split(f[5], ","),
			FSType:     g[0],
			Super:      strings.Split(g[2], ","),
		})
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escaping of space, tab,
// newline and backslash in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kernelController is one line of /proc/cgroups.
type kernelController struct {
	Name      string
	Hierarchy int
	Enabled   bool
}

func parseProcCgroups(r io.Reader) ([]kernelController, error) {
	var out []kernelController
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("/proc/cgroups line %q: want 4 fields", line)
		}
		h, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("/proc/cgroups line %q: %w", line, err)
		}
		out = append(out, kernelController{Name: f[0], Hierarchy: h, Enabled: f[3] == "1"})
	}
	return out, sc.Err()
}

// hierarchy is a cgroup hierarchy that the calling process can reach
// through one of its mounts.
type hierarchy struct {
	ID          int      // 0 for cgroup2
	Controllers []string // v1 controllers, sorted; nil for cgroup2 and a bare named hierarchy
	Name        string   // the name= of a named v1 hierarchy
	Mountpoint  string   // where the host mounted it
	MountRoot   string   // the cgroup the mount shows at Mountpoint
	Own         string   // the calling process's cgroup in it, as a host directory
}

// Key names the hierarchy in CgroupPath and in logs: "unified",
// "name=systemd", or the controllers joined by commas.
func (h hierarchy) Key() string {
	switch {
	case h.ID == 0:
		return "unified"
	case len(h.Controllers) > 0:
		return strings.Join(h.Controllers, ",")
	default:
		return "name=" + h.Name
	}
}

// dir is the directory below /sys/fs/cgroup where systemd looks for the
// hierarchy: the joined controller list, or the name of a named one.
func (h hierarchy) dir() string {
	switch {
	case h.ID == 0:
		return "unified"
	case len(h.Controllers) > 0:
		return strings.Join(h.Controllers, ",")
	default:
		return h.Name
	}
}

// mountOptions is the data argument that mounts this existing v1
// hierarchy again; the kernel refuses a set that differs from it.
func (h hierarchy) mountOptions() string {
	opts := slices.Clone(h.Controllers)
	if len(opts) == 0 {
		opts = append(opts, "none")
	}
	if h.Name != "" {
		opts = append(opts, "name="+h.Name)
	}
	return strings.Join(opts, ",")
}

// hostPath maps a cgroup path as /proc/<pid>/cgroup shows it (relative to
// the caller's cgroup namespace) to a directory on the host, or "" when
// the mount does not reach it.
func (h hierarchy) hostPath(cgPath string) string {
	if !within(cgPath, h.MountRoot) {
		return ""
	}
	rel := cgPath
	if h.MountRoot != "/" {
		rel = strings.TrimPrefix(cgPath, h.MountRoot)
	}
	return path.Join(h.Mountpoint, "/"+rel)
}

// errUnreachable marks a hierarchy the caller belongs to that no mount
// visible to it reaches; it is left alone.
var errUnreachable = errors.New("no mount reaches the caller's cgroup")

// discoverHierarchies matches the caller's cgroups to the mounts that
// reach them. Hierarchies that no mount reaches are returned in skipped
// with the reason, and are never touched.
func discoverHierarchies(self []procCgroup, mounts []mountEntry, kernel []kernelController) (hs []hierarchy, skipped map[string]error) {
	known := map[string]bool{}
	for _, k := range kernel {
		known[k.Name] = true
	}
	skipped = map[string]error{}
	for _, c := range self {
		h := hierarchy{ID: c.ID}
		var want []string
		if c.ID != 0 {
			for _, e := range c.List {
				if n, ok := strings.CutPrefix(e, "name="); ok {
					h.Name = n
				} else {
					h.Controllers = append(h.Controllers, e)
				}
			}
			slices.Sort(h.Controllers)
			want = superSet(c.List, known)
		}
		var best *mountEntry
		for i, m := range mounts {
			switch {
			case c.ID == 0 && m.FSType != "cgroup2":
				continue
			case c.ID != 0 && (m.FSType != "cgroup" || !slices.Equal(superSet(m.Super, known), want)):
				continue
			}
			if !within(c.Path, m.Root) {
				continue
			}
			// The mount with the widest view is the least surprising one
			// to report paths in.
			if best == nil || len(m.Root) < len(best.Root) {
				best = &mounts[i]
			}
		}
		if best == nil {
			skipped[h.Key()] = errUnreachable
			continue
		}
		h.Mountpoint, h.MountRoot = best.Mountpoint, best.Root
		h.Own = h.hostPath(c.Path)
		hs = append(hs, h)
	}
	return hs, skipped
}

// superSet reduces v1 superblock options to the set that identifies a
// hierarchy: its controllers and its name=, sorted.
func superSet(opts []string, known map[string]bool) []string {
	var out []string
	for _, o := range opts {
		if known[o] || strings.HasPrefix(o, "name=") {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

// within reports whether cgroup path p is root or below it.
func within(p, root string) bool {
	if root == "/" || p == root {
		return true
	}
	return strings.HasPrefix(p, root+"/")
}

// cgroupMount is one mount below /sys/fs/cgroup inside the container.
type cgroupMount struct {
	Dir     string // relative to /sys/fs/cgroup; "" is /sys/fs/cgroup itself
	FSType  string // cgroup, cgroup2 or tmpfs
	Source  string
	Options string
	Flags   uintptr // on top of nosuid,nodev,noexec
}

// cgroupLayout is what the container's /sys/fs/cgroup holds before
// systemd starts.
type cgroupLayout struct {
	Mounts   []cgroupMount
	Symlinks [][2]string // {name, target}, both relative to /sys/fs/cgroup
}

// systemdJoins are the controller pairs that systemd (in legacy and hybrid
// mode) mounts together as one hierarchy, under the joined name.
func systemdJoins() [][]string {
	return [][]string{{"cpu", "cpuacct"}, {"net_cls", "net_prio"}}
}

// planLayout decides the container's cgroup mounts. In hybrid mode it
// mounts every reachable v1 controller hierarchy and name=systemd (all
// seen through the new cgroup namespace, so rooted at the container's
// group), cgroup2 at unified, and a read-only placeholder wherever systemd
// would otherwise mount a controller the host has not bound to a v1
// hierarchy: such a mount would take the controller off the host's cgroup2
// hierarchy, a change to the whole host.
func planLayout(mode string, hs []hierarchy, kernel []kernelController) (cgroupLayout, error) {
	var l cgroupLayout
	var v2 *hierarchy
	for i := range hs {
		if hs[i].ID == 0 {
			v2 = &hs[i]
		}
	}
	switch mode {
	case ModeUnified:
		if v2 == nil {
			return l, fmt.Errorf("mode %s: no cgroup2 mount reaches this process's cgroup: %w", mode, errors.ErrUnsupported)
		}
		l.Mounts = append(l.Mounts, cgroupMount{FSType: "cgroup2", Source: "cgroup2"})
		return l, nil
	case ModeHybrid:
	default:
		return l, fmt.Errorf("mode %q: want %q or %q", mode, ModeHybrid, ModeUnified)
	}
	if v2 == nil {
		return l, fmt.Errorf("mode %s: no cgroup2 mount reaches this process's cgroup: %w", mode, errors.ErrUnsupported)
	}
	l.Mounts = append(l.Mounts, cgroupMount{FSType: "tmpfs", Source: "tmpfs", Options: "mode=755"})
	mounted := map[string]string{} // controller -> dir
	haveSystemd := false
	for _, h := range hs {
		if h.ID == 0 || (len(h.Controllers) == 0 && h.Name != "systemd") {
			continue
		}
		haveSystemd = haveSystemd || h.Name == "systemd"
		l.Mounts = append(l.Mounts, cgroupMount{Dir: h.dir(), FSType: "cgroup", Source: "cgroup", Options: h.mountOptions()})
		for _, c := range h.Controllers {
			mounted[c] = h.dir()
			if len(h.Controllers) > 1 {
				l.Symlinks = append(l.Symlinks, [2]string{c, h.dir()})
			}
		}
	}
	if !haveSystemd {
		// systemd would create the name=systemd hierarchy itself: a new
		// hierarchy for the whole host.
		return l, fmt.Errorf("mode %s: no name=systemd hierarchy reaches this process's cgroup: %w", mode, errors.ErrUnsupported)
	}
	l.Mounts = append(l.Mounts, cgroupMount{Dir: "unified", FSType: "cgroup2", Source: "cgroup2"})

	handled := map[string]bool{}
	placeholder := func(dir string) {
		l.Mounts = append(l.Mounts, cgroupMount{Dir: dir, FSType: "tmpfs", Source: "cgsem-placeholder", Options: "size=4k,mode=555", Flags: unix.MS_RDONLY})
	}
	enabled := map[string]bool{}
	for _, k := range kernel {
		enabled[k.Name] = k.Enabled
	}
	for _, j := range systemdJoins() {
		joined := strings.Join(j, ",")
		if _, ok := mounted[joined]; ok || dirTaken(l, joined) {
			continue
		}
		present := false
		for _, c := range j {
			present = present || enabled[c]
		}
		if !present {
			continue
		}
		target := ""
		for _, c := range j {
			if d, ok := mounted[c]; ok && target == "" {
				target = d
			}
		}
		if target != "" {
			// systemd looks at the joined name first; pointing it at the
			// mounted member makes it see a mount and go on.
			l.Symlinks = append(l.Symlinks, [2]string{joined, target})
		} else {
			placeholder(joined)
			for _, c := range j {
				l.Symlinks = append(l.Symlinks, [2]string{c, joined})
			}
		}
		for _, c := range j {
			handled[c] = true
		}
	}
	for _, k := range kernel {
		if !k.Enabled || handled[k.Name] {
			continue
		}
		if _, ok := mounted[k.Name]; ok {
			continue
		}
		placeholder(k.Name)
	}
	return l, nil
}

func dirTaken(l cgroupLayout, dir string) bool {
	for _, m := range l.Mounts {
		if m.Dir == dir {
			return true
		}
	}
	for _, s := range l.Symlinks {
		if s[0] == dir {
			return true
		}
	}
	return false
}
