// Package mountinfo finds cgroup hierarchies: it parses
// /proc/<pid>/mountinfo and /proc/<pid>/cgroup and maps a process's cgroup
// path in a hierarchy to a directory.
//
// Parse and ParseLine decode every field the kernel escapes (\040 for a
// space, \011, \012, \134 and any \ooo) in the root, the mount point, the
// source and each option. Hierarchies groups cgroup mounts by superblock,
// so two mounts of one hierarchy (a bind mount of a subtree) are one
// Hierarchy with two Mounts, and a v1 co-mount ("cpu,cpuacct") is one
// Hierarchy with two Controllers. Named hierarchies ("name=systemd") carry
// their Name. A mount hidden by a later mount on the same mount point is
// dropped.
//
// A v1 hierarchy's Key ("cpu,cpuacct", "name=systemd") is how
// /proc/<pid>/cgroup names it, so Lookup finds the process's path in it
// whatever the option order of the mount. Hierarchy.Dir maps that path to
// a directory through a mount whose root contains it (inside a container
// the mount root is the container's own cgroup, and paths above it are not
// visible: ok is false).
//
// Typical use, finding the calling process's memory cgroup directory:
//
//	mounts, err := mountinfo.ParseFile("/proc/self/mountinfo")
//	...
//	h, ok := mountinfo.Find(mountinfo.Hierarchies(mounts), "memory")
//	self, err := mountinfo.ReadCgroup(0)
//	p, err := mountinfo.Lookup(self, h)
//	dir, ok := h.Dir(p) // "/sys/fs/cgroup/memory/user.slice"
//
// The package is pure apart from ParseFile and ReadCgroup; nothing is
// cached, so two callers never share state.
package mountinfo
