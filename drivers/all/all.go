// Package all registers every built-in real driver, for auto-selection.
//
// A program that wants cgsem to pick the driver that fits the host
// blank-imports this package and calls registry.Auto:
//
//	import _ "github.com/cgsem/cgsem/drivers/all"
//
// Each driver registers itself from its own register.go. The fake driver
// is deliberately not imported: it is never auto-selected, and a program
// that wants it (tests, the cgsem tool's --driver fake) imports
// drivers/fake itself.
package all

import (
	_ "github.com/cgsem/cgsem/drivers/systemd" // transient slices and scopes over D-Bus
	_ "github.com/cgsem/cgsem/drivers/v1"      // cgroup v1 hierarchies
	_ "github.com/cgsem/cgsem/drivers/v2"      // cgroup v2 unified, eBPF device filter
)
