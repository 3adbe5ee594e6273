package v2

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/hostinfo"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// Priority is the driver's auto-selection priority: above v1, below
// systemd (which owns the hierarchy where it is PID 1).
const Priority = 20

func init() {
	registry.Register(registry.Registration{
		Name:     Name,
		Priority: Priority,
		Probe:    func() (bool, string) { return probe("/sys/fs/cgroup", "/") },
		New:      func(o semantic.Options) (semantic.Driver, error) { return New(o) },
	})
}

// probe accepts a host whose cgroupRoot is cgroup2 and whose PID 1 is not
// systemd (as hostinfo.Systemd decides on the host whose root directory is
// hostRoot), and says why or why not.
func probe(cgroupRoot, hostRoot string) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return false, fmt.Sprintf("cannot statfs %s: %v", cgroupRoot, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false, fmt.Sprintf("%s is not cgroup2 (a legacy or hybrid layout; on a hybrid host open v2 by name with setting mount=%s/unified)",
			cgroupRoot, cgroupRoot)
	}
	systemd, why := hostinfo.Systemd(hostRoot)
	if systemd {
		return false, fmt.Sprintf("%s is cgroup2, but systemd is PID 1 and owns it (the systemd driver manages this host)", cgroupRoot)
	}
	return true, fmt.Sprintf("%s is cgroup2 and systemd is not PID 1 (%s)", cgroupRoot, why)
}
