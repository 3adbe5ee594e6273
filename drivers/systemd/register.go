package systemd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func init() {
	registry.Register(registry.Registration{
		Name:     Name,
		Priority: 30,
		Probe:    probe,
		New:      func(o semantic.Options) (semantic.Driver, error) { return Open(o) },
	})
}

// probeTimeout bounds how long the probe waits for the bus: a probe has
// no context, and auto-selection must not hang on a bus that does not
// answer.
const probeTimeout = 5 * time.Second

// probe accepts a host whose PID 1 is systemd (/proc/1/comm, and
// /run/systemd/system as sd_booted checks) and whose manager answers on
// the system bus.
func probe() (bool, string) {
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return false, fmt.Sprintf("cannot read PID 1's name: %v", err)
	}
	if c := strings.TrimSpace(string(comm)); c != "systemd" {
		return false, fmt.Sprintf("PID 1 is %q, not systemd", c)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false, "systemd is PID 1 but /run/systemd/system is missing: it did not boot the system"
	}
	addr, err := busAddress("")
	if err != nil {
		return false, err.Error()
	}
	b, err := dialBus(addr, hclog.NewNullLogger())
	if err != nil {
		return false, fmt.Sprintf("systemd is PID 1 but the system bus does not answer: %v", err)
	}
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	v, err := b.managerProperty(ctx, "Version")
	if err != nil {
		return false, fmt.Sprintf("systemd is PID 1 but its manager does not answer on the system bus: %v", err)
	}
	return true, fmt.Sprintf("systemd %v is PID 1 and answers on the system bus", v.Value())
}
