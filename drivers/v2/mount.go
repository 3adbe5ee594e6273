package v2

import (
	"fmt"
	"path"
	"strings"

	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/semantic"
)

// Where the cgroup2 hierarchy is mounted, in the order a mount point is
// preferred when several show it: a pure v2 host, then a hybrid one.
var preferredMounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// location is where a driver's root is.
type location struct {
	// mount is the mount point the root is reached through.
	mount string
	// cgroup is the root's cgroup path, as /proc/<pid>/cgroup names it.
	cgroup string
	// dir is the root's directory.
	dir string
}

// locate finds the driver's root from a mountinfo table and the caller's
// /proc/self/cgroup: root is Options.Root ("", "self" or a cgroup path),
// mountPoint the "mount" setting ("" to choose). It is pure, so every
// layout (pure v2, hybrid, a container's view) is tested without root.
func locate(mounts []mountinfo.Mount, self []mountinfo.CgroupEntry, root, mountPoint string) (location, error) {
	h, ok := mountinfo.Find(mountinfo.Hierarchies(mounts), "")
	if !ok || len(h.Mounts) == 0 {
		return location{}, fmt.Errorf("no cgroup2 filesystem is mounted: %w", semantic.ErrNotSupported)
	}
	m, err := chooseMount(h.Mounts, mountPoint)
	if err != nil {
		return location{}, err
	}
	var cg string
	switch root {
	case "":
		cg = m.Root
	case semantic.RootSelf:
		var e *mountinfo.CgroupEntry
		for i := range self {
			if self[i].IsV2() {
				e = &self[i]
			}
		}
		if e == nil {
			return location{}, fmt.Errorf("root %q: /proc/self/cgroup has no \"0::\" line for cgroup2: %w", root, semantic.ErrNotExist)
		}
		cg = e.Path
	default:
		if cg, err = cleanCgroupPath(root); err != nil {
			return location{}, err
		}
	}
	dir, ok := dirThrough(m, cg)
	if !ok {
		return location{}, fmt.Errorf("root %q: cgroup %s is not visible through the cgroup2 mount at %s, which shows %s: %w",
			root, cg, m.MountPoint, m.Root, semantic.ErrNotExist)
	}
	return location{mount: m.MountPoint, cgroup: cg, dir: dir}, nil
}

// chooseMount picks the mount named by the "mount" setting, or the
// preferred one.
func chooseMount(ms []mountinfo.Mount, want string) (mountinfo.Mount, error) {
	if want != "" {
		want = path.Clean(want)
		for _, m := range ms {
			if m.MountPoint == want {
				return m, nil
			}
		}
		var have []string
		for _, m := range ms {
			have = append(have, m.MountPoint)
		}
		return mountinfo.Mount{}, fmt.Errorf("setting mount=%q: not a cgroup2 mount point (cgroup2 is mounted at %q): %w",
			want, have, semantic.ErrInvalid)
	}
	for _, p := range preferredMounts {
		for _, m := range ms {
			if m.MountPoint == p {
				return m, nil
			}
		}
	}
	return ms[0], nil
}

// cleanCgroupPath checks a cgroup path given as Options.Root. A "." or
// ".." segment is refused rather than cleaned away: a root is where the
// driver promises to stay, so it must say plainly where that is.
func cleanCgroupPath(p string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("root %q: %s: %w", p, why, semantic.ErrInvalid)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", bad("contains NUL")
	}
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		if s == "." || s == ".." {
			return "", bad(`"." and ".." are not allowed`)
		}
	}
	return path.Clean("/" + p), nil
}

// dirThrough maps a cgroup path to a directory through mount m, whose
// root must contain it.
func dirThrough(m mountinfo.Mount, cg string) (string, bool) {
	rel, ok := within(m.Root, cg)
	if !ok {
		return "", false
	}
	return path.Join(m.MountPoint, rel), true
}

// within returns p relative to base when base is p or an ancestor of it.
func within(base, p string) (string, bool) {
	if base == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if p == base {
		return "", true
	}
	rest, ok := strings.CutPrefix(p, base+"/")
	return rest, ok
}
