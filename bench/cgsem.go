package main

import (
	"fmt"
	"slices"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"

	// Every driver package is imported (systemd in driver_systemd.go): a
	// driver registers itself once its register.go lands, and until then
	// openDriver reports it "not built yet" instead of a figure.
	_ "github.com/cgsem/cgsem/drivers/fake"
	_ "github.com/cgsem/cgsem/drivers/v1"
	_ "github.com/cgsem/cgsem/drivers/v2"
)

// openDriver opens a cgsem driver by its registered name. When it cannot,
// it returns why, as the table shows it: "not built yet" for a driver that
// has not registered.
func openDriver(name string, opts semantic.Options) (semantic.Driver, string) {
	if !slices.Contains(registry.Drivers(), name) {
		return nil, fmt.Sprintf("not built yet: driver %q is not registered", name)
	}
	d, err := registry.Open(name, opts)
	if err != nil {
		return nil, "error: " + err.Error()
	}
	return d, ""
}

func ptr[T any](v T) *T { return &v }

// nullDevice is the rule "allow c 1:3 rwm", /dev/null on Linux.
func nullDevice() semantic.DeviceRule {
	return semantic.DeviceRule{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess}
}

// nullOnly denies every device but /dev/null.
func nullOnly() *semantic.Devices {
	return &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{nullDevice()}}
}

// v1Resources is the v1 lifecycle's request: memory 256 MiB, pids 100,
// CPU weight 50 (cpu.shares 512 through semantic.WeightToShares), every
// device denied but /dev/null.
func v1Resources() *semantic.Resources {
	return &semantic.Resources{
		Memory:  &semantic.Memory{Max: ptr(256 * semantic.MiB)},
		CPU:     &semantic.CPU{Weight: ptr(uint64(v1Weight))},
		Pids:    &semantic.Pids{Max: ptr(semantic.Count(100))},
		Devices: nullOnly(),
	}
}

// v1Weight is the CPU weight whose v1 image is 512 shares.
const v1Weight = 50

// benchPath is the run's root as a cgsem path below a "self" root, with
// name below it.
func benchPath(root *benchRoot, name string) (semantic.Path, error) {
	return semantic.NewPath(root.name, name)
}
