package mountinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Cgroup filesystem types as mountinfo names them.
const (
	FSTypeV1 = "cgroup"
	FSTypeV2 = "cgroup2"
)

// nonControllerOptions are cgroup v1 super options that are not
// controllers. Every other option of a v1 mount names a controller; a
// new kernel option would be mistaken for one, and the hierarchy would
// then fail to match its /proc/self/cgroup line rather than be misused.
var nonControllerOptions = []string{
	"rw", "ro", "noprefix", "xattr", "cpuset_v2_mode", "clone_children",
	"favordynmods", "nofavordynmods", "all", "none",
}

// Hierarchy is one cgroup hierarchy (one superblock) and where it is
// mounted.
type Hierarchy struct {
	// Version is 1 or 2.
	Version int
	// Controllers are the v1 controllers bound to the hierarchy, sorted
	// ("cpu", "cpuacct" for a co-mount). Empty for a named hierarchy
	// without controllers and for v2 (whose controllers are listed in its
	// cgroup.controllers file, not in mountinfo).
	Controllers []string
	// Name is the name of a named v1 hierarchy ("systemd" for
	// name=systemd), "" otherwise.
	Name string
	// Mounts are the mounts of this hierarchy, in mountinfo order.
	Mounts []Mount
}

// Key is the hierarchy as /proc/<pid>/cgroup names it: controllers joined
// by commas, then "name=NAME" for a named hierarchy; "" for v2.
func (h Hierarchy) Key() string {
	parts := slices.Clone(h.Controllers)
	if h.Name != "" {
		parts = append(parts, "name="+h.Name)
	}
	return strings.Join(parts, ",")
}

// Has reports whether controller is bound to the (v1) hierarchy.
func (h Hierarchy) Has(controller string) bool { return slices.Contains(h.Controllers, controller) }

// Dir maps a cgroup path as /proc/<pid>/cgroup shows it ("/a/b") to a
// directory through one of the hierarchy's mounts whose root contains
// it. A mount hidden by a later mount on the same mount point is not
// used. ok is false when no usable mount shows that cgroup (for example
// a container that sees only its own subtree).
func (h Hierarchy) Dir(cgroupPath string) (dir string, ok bool) {
	cgroupPath = path.Clean("/" + cgroupPath)
	for i := len(h.Mounts) - 1; i >= 0; i-- {
		m := h.Mounts[i]
		rel, inside := within(m.Root, cgroupPath)
		if !inside {
			continue
		}
		return path.Join(m.MountPoint, rel), true
	}
	return "", false
}

// within reports whether p is root or below it, and p relative to root.
func within(root, p string) (string, bool) {
	root = path.Clean(root)
	switch {
	case root == "/":
		return p, true
	case p == root:
		return "/", true
	case strings.HasPrefix(p, root+"/"):
		return p[len(root):], true
	}
	return "", false
}

// Hierarchies groups the cgroup mounts (v1 and v2) by superblock, in the
// order each hierarchy was first mounted. Mounts hidden by a later mount
// on the same mount point are left out.
func Hierarchies(mounts []Mount) []Hierarchy {
	var out []Hierarchy
	index := map[[2]int]int{}
	for i, m := range mounts {
		if m.FSType != FSTypeV1 && m.FSType != FSTypeV2 {
			continue
		}
		if shadowed(mounts, i) {
			continue
		}
		dev := [2]int{m.Major, m.Minor}
		if j, ok := index[dev]; ok {
			out[j].Mounts = append(out[j].Mounts, m)
			continue
		}
		h := Hierarchy{Version: 2, Mounts: []Mount{m}}
		if m.FSType == FSTypeV1 {
			h.Version = 1
			h.Controllers, h.Name = V1Controllers(m.SuperOptions)
		}
		index[dev] = len(out)
		out = append(out, h)
	}
	return out
}

func shadowed(mounts []Mount, i int) bool {
	for _, later := range mounts[i+1:] {
		if later.MountPoint == mounts[i].MountPoint {
			return true
		}
	}
	return false
}

// V1Controllers splits a v1 cgroup mount's super options into its
// controllers (sorted) and its name ("" if unnamed).
func V1Controllers(superOptions []string) (controllers []string, name string) {
	for _, o := range superOptions {
		switch {
		case strings.HasPrefix(o, "name="):
			name = strings.TrimPrefix(o, "name=")
		case strings.HasPrefix(o, "release_agent="), slices.Contains(nonControllerOptions, o):
		default:
			controllers = append(controllers, o)
		}
	}
	slices.Sort(controllers)
	return controllers, name
}

// Layout is how a host arranges its cgroup hierarchies.
type Layout int

const (
	// NoCgroups: no cgroup filesystem is mounted.
	NoCgroups Layout = iota
	// Unified: only cgroup2.
	Unified
	// Hybrid: v1 hierarchies with controllers and a cgroup2 mount beside.
	Hybrid
	// Legacy: v1 hierarchies only.
	Legacy
)

func (l Layout) String() string {
	switch l {
	case Unified:
		return "unified"
	case Hybrid:
		return "hybrid"
	case Legacy:
		return "legacy"
	}
	return "none"
}

// LayoutOf classifies a set of hierarchies. A v1 hierarchy counts only
// if it has a controller: a lone name=systemd beside cgroup2 is unified
// as far as resource control goes.
func LayoutOf(hs []Hierarchy) Layout {
	var v1, v2 bool
	for _, h := range hs {
		switch {
		case h.Version == 2:
			v2 = true
		case len(h.Controllers) > 0:
			v1 = true
		}
	}
	switch {
	case v1 && v2:
		return Hybrid
	case v1:
		return Legacy
	case v2:
		return Unified
	}
	return NoCgroups
}

// Find returns the v1 hierarchy controller is bound to, or the v2
// hierarchy for controller "" (the unified one). ok is false if none is
// mounted.
func Find(hs []Hierarchy, controller string) (Hierarchy, bool) {
	for _, h := range hs {
		if controller == "" && h.Version == 2 || controller != "" && h.Version == 1 && h.Has(controller) {
			return h, true
		}
	}
	return Hierarchy{}, false
}

// CgroupEntry is one line of /proc/<pid>/cgroup: "4:cpu,cpuacct:/a/b".
type CgroupEntry struct {
	// ID is the hierarchy ID (0 for v2).
	ID int
	// Controllers are the v1 controllers of the hierarchy, sorted; empty
	// for v2 and for a named hierarchy without controllers.
	Controllers []string
	// Name is the named hierarchy's name ("systemd"), "" otherwise.
	Name string
	// Path is the process's cgroup in that hierarchy, "/" at its root.
	Path string
}

// Key is the hierarchy as Hierarchy.Key renders it, for matching.
func (e CgroupEntry) Key() string {
	return Hierarchy{Controllers: e.Controllers, Name: e.Name}.Key()
}

// IsV2 reports whether the entry is the unified hierarchy's ("0::/path").
func (e CgroupEntry) IsV2() bool { return e.ID == 0 && len(e.Controllers) == 0 && e.Name == "" }

// ParseCgroup reads a /proc/<pid>/cgroup file.
func ParseCgroup(r io.Reader) ([]CgroupEntry, error) {
	var out []CgroupEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		e, err := ParseCgroupLine(line)
		if err != nil {
			return nil, fmt.Errorf("cgroup line %d: %w", n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup file: %w", err)
	}
	return out, nil
}

// ParseCgroupLine parses one line of a /proc/<pid>/cgroup file.
func ParseCgroupLine(line string) (CgroupEntry, error) {
	id, rest, ok1 := strings.Cut(line, ":")
	list, p, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return CgroupEntry{}, fmt.Errorf("%q: want ID:CONTROLLERS:PATH", line)
	}
	var e CgroupEntry
	var err error
	if e.ID, err = strconv.Atoi(id); err != nil || e.ID < 0 {
		return CgroupEntry{}, fmt.Errorf("%q: hierarchy ID %q is not a number", line, id)
	}
	if !strings.HasPrefix(p, "/") {
		return CgroupEntry{}, fmt.Errorf("%q: path %q is not absolute", line, p)
	}
	e.Path = p
	if list != "" {
		e.Controllers, e.Name = V1Controllers(strings.Split(list, ","))
	}
	return e, nil
}

// ReadCgroup reads /proc/<pid>/cgroup; pid 0 means the calling process.
func ReadCgroup(pid int) ([]CgroupEntry, error) {
	name := "/proc/self/cgroup"
	if pid != 0 {
		name = "/proc/" + strconv.Itoa(pid) + "/cgroup"
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseCgroup(f)
}

// ErrNoEntry is returned by Lookup when the process has no entry for the
// hierarchy.
var ErrNoEntry = errors.New("no /proc/<pid>/cgroup entry for the hierarchy")

// Lookup returns the cgroup path entries give for hierarchy h.
func Lookup(entries []CgroupEntry, h Hierarchy) (string, error) {
	for _, e := range entries {
		if h.Version == 2 && e.IsV2() || h.Version == 1 && !e.IsV2() && e.Key() == h.Key() {
			return e.Path, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrNoEntry, h.Key())
}
