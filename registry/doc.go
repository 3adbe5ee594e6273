// Package registry keeps the cgsem drivers and picks one for this host.
//
// A driver registers itself, from a register.go in its package, with a
// name, a priority, a probe and a constructor:
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
// built-in real driver) and call Auto, which runs every probe, picks the
// highest priority that accepts this host (ties by name) and explains
// each verdict; CGSEM_DRIVER forces a driver by name. Open picks by name;
// an unknown name says "forgotten import?", as database/sql does.
//
// Register panics on a nameless registration or a duplicate name. The
// package-level functions use Default; a Registry's zero value is an empty
// registry, which tests use so they never change Default.
//
// Built-in priorities: systemd 30, v2 20, v1 10; fake has no probe and is
// never auto-selected.
package registry
