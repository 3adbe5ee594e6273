package systemd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// cgroups is read access to systemd's cgroup hierarchies, for read-back
// checks, processes, stats and events. The driver never writes a cgroup
// file: every change goes through systemd.
type cgroups struct {
	layout layout
	// unified is the cgroup2 hierarchy (at /sys/fs/cgroup, or
	// /sys/fs/cgroup/unified in hybrid mode); nil in legacy mode.
	unified *cgroupfs.Dir
	// v1 maps each v1 controller, and "name=systemd", to its hierarchy.
	v1 map[string]*cgroupfs.Dir
	// open lists every Dir once, for Close.
	open []*cgroupfs.Dir
}

// openCgroups finds systemd's hierarchies in its mount table (mountinfo of
// a process in its mount namespace) and opens each through the view.
func openCgroups(v *view, procDir string, log hclog.Logger) (*cgroups, error) {
	mounts, err := mountinfo.ParseFile(procDir + "/mountinfo")
	if err != nil {
		return nil, err
	}
	hs := mountinfo.Hierarchies(mounts)
	c := &cgroups{v1: map[string]*cgroupfs.Dir{}}
	switch mountinfo.LayoutOf(hs) {
	case mountinfo.Unified:
		c.layout = layoutUnified
	case mountinfo.Hybrid:
		c.layout = layoutHybrid
	case mountinfo.Legacy:
		c.layout = layoutLegacy
	default:
		return nil, errors.New("systemd's mount namespace has no cgroup hierarchy")
	}
	cfg := cgroupfs.Config{Logger: log}
	for _, h := range hs {
		mp := ""
		for _, m := range h.Mounts {
			// systemd reads its groups below /sys/fs/cgroup; a mount of
			// a hierarchy anywhere else is someone else's view.
			if m.MountPoint == "/sys/fs/cgroup" || strings.HasPrefix(m.MountPoint, "/sys/fs/cgroup/") {
				mp = m.MountPoint
				break
			}
		}
		if mp == "" {
			continue
		}
		if h.Version == 2 && c.layout == layoutLegacy {
			continue
		}
		d, err := cgroupfs.OpenRoot(v.path(mp), cfg)
		if err != nil {
			c.close()
			return nil, err
		}
		c.open = append(c.open, d)
		if h.Version == 2 {
			if c.unified == nil {
				c.unified = d
			}
			continue
		}
		for _, ctrl := range h.Controllers {
			c.v1[ctrl] = d
		}
		if h.Name != "" {
			c.v1["name="+h.Name] = d
		}
	}
	if c.layout != layoutLegacy && c.unified == nil {
		c.close()
		return nil, errors.New("systemd's cgroup2 hierarchy is not mounted below /sys/fs/cgroup")
	}
	if c.layout == layoutLegacy && c.v1["name=systemd"] == nil {
		c.close()
		return nil, errors.New("systemd's name=systemd hierarchy is not mounted below /sys/fs/cgroup")
	}
	return c, nil
}

func (c *cgroups) close() {
	for _, d := range c.open {
		d.Close()
	}
	c.open = nil
}

// tracking is the hierarchy systemd keeps its units in: cgroup2, or
// name=systemd in legacy mode.
func (c *cgroups) tracking() *cgroupfs.Dir {
	if c.unified != nil {
		return c.unified
	}
	return c.v1["name=systemd"]
}

// rel turns a cgroup path as systemd names it ("/a.slice/b.scope") into a
// name below a hierarchy's root ("a.slice/b.scope"; "" for "/").
func rel(cgroup string) string { return strings.Trim(cgroup, "/") }

// file joins a group's relative path and a file name.
func file(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// controllers lists what systemd can use, and features of the kernel
// the capabilities depend on.
func (c *cgroups) probe(h *host) {
	h.controllers = map[string]bool{}
	if c.layout == layoutUnified {
		if s, err := c.unified.ReadString("cgroup.controllers"); err == nil {
			for _, ctrl := range strings.Fields(s) {
				h.controllers[ctrl] = true
			}
		}
	} else {
		for ctrl := range c.v1 {
			if !strings.HasPrefix(ctrl, "name=") {
				h.controllers[ctrl] = true
			}
		}
	}
	if d := c.v1["blkio"]; d != nil {
		h.blkioWeight = anyHas(d, "blkio.bfq.weight", "blkio.weight")
	}
	if c.unified != nil {
		// The root group has neither file; systemd itself checks
		// init.scope for cgroup.freeze.
		h.freeze = anyHas(c.unified, "cgroup.freeze")
		if c.layout == layoutUnified {
			h.cpus = readSet(c.unified, "cpuset.cpus.effective")
			h.mems = readSet(c.unified, "cpuset.mems.effective")
		}
		h.pressure = anyHas(c.unified, "cpu.pressure")
	}
}

// readSet reads a CPU or node list; nil when there is none.
func readSet(d *cgroupfs.Dir, name string) semantic.CPUSet {
	s, err := d.ReadString(name)
	if err != nil {
		return nil
	}
	set, err := semantic.ParseCPUSet(s)
	if err != nil || len(set) == 0 {
		return nil
	}
	return set
}

// nearestSet reads file (cpuset.cpus.effective, cpuset.mems.effective)
// of the nearest group, from cgroup up to the root, that has it: the
// cgroup2 view of what a group without a set of its own gets. nil when no
// group has it (no cpuset, or not the unified layout).
func (c *cgroups) nearestSet(cgroup, name string) semantic.CPUSet {
	if c.layout != layoutUnified {
		return nil
	}
	dir := rel(cgroup)
	for {
		// A group without cpuset has no such file.
		if s := readSet(c.unified, file(dir, name)); s != nil {
			return s
		}
		if dir == "" {
			return nil
		}
		i := strings.LastIndexByte(dir, '/')
		dir = dir[:max(i, 0)]
	}
}

// anyHas reports whether a hierarchy's root, or one of the groups just
// below it, has one of the files.
func anyHas(d *cgroupfs.Dir, names ...string) bool {
	dirs := []string{""}
	if subs, err := d.Subdirs(); err == nil {
		dirs = append(dirs, subs...)
	}
	for _, sub := range dirs {
		for _, n := range names {
			if ok, _ := d.Exists(file(sub, n)); ok {
				return true
			}
		}
	}
	return false
}

// exists reports whether a group directory exists in the tracking
// hierarchy.
func (c *cgroups) exists(cgroup string) (bool, error) {
	r := rel(cgroup)
	if r == "" {
		return true, nil
	}
	return c.tracking().Exists(r)
}

// procs lists the pids in a group's cgroup.procs, sorted; nil when the
// group has no directory (a scope that is not running) or is removed
// while it is read (a scope systemd stops once its last process died,
// which may be just after a Kill returned).
func (c *cgroups) procs(cgroup string) ([]int, error) {
	b, err := c.tracking().Read(file(rel(cgroup), "cgroup.procs"))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int
	for f := range strings.FieldsSeq(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// populated reports whether a group or any group below it holds a process.
func (c *cgroups) populated(cgroup string) (bool, error) {
	if c.unified != nil {
		b, err := c.unified.Read(file(rel(cgroup), "cgroup.events"))
		if isNotExist(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return eventsField(b, "populated") == 1, nil
	}
	return c.populatedV1(rel(cgroup))
}

func (c *cgroups) populatedV1(r string) (bool, error) {
	d := c.v1["name=systemd"]
	b, err := d.Read(file(r, "cgroup.procs"))
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		return true, nil
	}
	sub, err := d.OpenDir(r)
	if err != nil {
		return false, nil
	}
	kids, err := sub.Subdirs()
	sub.Close()
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, k := range kids {
		if p, err := c.populatedV1(file(r, k)); p || err != nil {
			return p, err
		}
	}
	return false, nil
}

// subdirs lists the child groups of a group in a v1 controller's
// hierarchy; nil when it has no directory there.
func (c *cgroups) subdirs(controller, cgroup string) ([]string, error) {
	d := c.v1[controller]
	if d == nil {
		return nil, nil
	}
	r := rel(cgroup)
	if r == "" {
		return d.Subdirs()
	}
	sub, err := d.OpenDir(r)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	kids, err := sub.Subdirs()
	if isNotExist(err) {
		return nil, nil
	}
	return kids, err
}

// eventsField reads one key of a flat keyed file (cgroup.events); -1
// when absent or unreadable.
func eventsField(b []byte, key string) int64 {
	m, err := statfile.ParseFlat(b)
	if err != nil {
		return -1
	}
	v, ok := m[key]
	if !ok {
		return -1
	}
	return int64(v)
}
