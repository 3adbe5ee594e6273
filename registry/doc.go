// Package registry keeps the cgsem drivers and picks one for this host.
//
// A driver registers itself, from a register.go in its package, with a
// name, an explicit priority, a probe and a constructor, as plain data:
//
//	func init() {
//		registry.Register(registry.Registration{
//			Name:     "v1",
//			Priority: 10,
//			Probe:    probe,
//			New:      func(o semantic.Options) (semantic.Driver, error) { return New(o) },
//		})
//	}
//
// Programs blank-import the drivers they want (drivers/all for every
// built-in real driver) and then either name one or let the registry
// choose:
//
//   - Open opens a driver by name. An unknown name fails with an error
//     wrapping semantic.ErrNotExist that says "forgotten import?" and lists
//     the registered names, as database/sql does.
//   - Auto runs every probe and opens the highest priority driver whose
//     probe accepts this host; equal priorities go to the smaller name. A
//     driver with no probe is never chosen this way, only by name.
//   - The CGSEM_DRIVER environment variable (EnvDriver) names a driver that
//     Auto opens instead, whatever the probes say.
//   - Probe does what Auto does without opening anything and returns the
//     Selection: the driver picked, whether it was forced, and every
//     driver's verdict with its probe's reason, in the order considered.
//     When nothing fits, Auto's error wraps ErrNoDriver and
//     semantic.ErrNotSupported and lists every verdict.
//
// Register panics on a registration with no name or no constructor, and
// on a name already taken: both are programming errors found at init.
// Drivers lists the names, sorted.
//
// The package-level functions use Default. A Registry's zero value is an
// empty registry ready to use, and its Getenv field replaces os.Getenv, so
// tests build their own Registry and never change Default or the process
// environment. A Registry is safe for concurrent use.
//
// Built-in priorities: systemd 30, v2 20, v1 10; fake has no probe and is
// used only when forced.
package registry
