package v1

import (
	"github.com/cgsem/cgsem/internal/hostinfo"
	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// Priority is the v1 driver's auto-selection priority (below v2 and
// systemd).
const Priority = 10

func init() {
	registry.Register(registry.Registration{
		Name:     Name,
		Priority: Priority,
		Probe:    Probe,
		New:      func(o semantic.Options) (semantic.Driver, error) { return New(o) },
	})
}

// Probe accepts a legacy or hybrid host whose v1 hierarchies have
// controllers, unless systemd is PID 1 and booted the host
// (hostinfo.Systemd): then the systemd driver owns the tree, and writing
// into it behind systemd's back would be undone.
func Probe() (bool, string) {
	mounts, err := mountinfo.ParseFile("/proc/self/mountinfo")
	if err != nil {
		return false, "cannot read /proc/self/mountinfo: " + err.Error()
	}
	systemd, why := hostinfo.Systemd("/")
	return probe(mounts, systemd, why)
}
