package conformance

import (
	"testing"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// Harness adapts a driver to the suite. Only NewDriver is required.
type Harness struct {
	// NewDriver returns a fresh driver on a fresh, empty root, and
	// registers with t.Cleanup whatever removes that root and closes the
	// driver. Each subtest calls it once; parallel subtests call it
	// concurrently.
	NewDriver func(t *testing.T) semantic.Driver

	// InjectFault arranges that the nth (1-based) backend change the driver
	// makes from now on (a file write, a D-Bus call) fails with err, and
	// reports whether the driver supports injection. A fault stays armed
	// until it fires; nth < 1 disarms a pending one. nil: no injection,
	// and the rollback subtests are skipped with that reason.
	InjectFault func(d semantic.Driver, nth int, err error) bool

	// Observer reads the backend's real state independently of the driver
	// (cgroupfs files, unit properties). nil: the suite trusts read-back.
	Observer Observer

	// Enforces lists the features whose enforcement the suite checks with
	// real processes on this host (a memory hog is OOM-killed, a fork past
	// the pids limit fails, ...): memory.max, pids.max, devices, freeze,
	// cpu.max and kill. The others are skipped with "harness does not
	// enforce". The fake enforces only kill.
	Enforces []semantic.Feature

	// Leaks lists what is left below the driver's root after a subtest's
	// own cleanup ran (directories, units, processes). nil: no check.
	Leaks func(d semantic.Driver) []string

	// PageSize is the page size read-back rounds to; 0 means the host's.
	PageSize uint64

	// CPUs and Mems are sets the host can give a group; nil means {0}.
	CPUs, Mems semantic.CPUSet

	// IODevice is a block device (major, minor) usable in IO limits; nil
	// skips IO limit round trips.
	IODevice *[2]int64

	// ConcurrencyDeadline bounds how long the concurrency subtests wait
	// for their workers (each runs tens of creates, applies and deletes)
	// before calling it a deadlock; 0 means twice the suite's patience,
	// one minute. It is a liveness bound, not a timing assertion: a host
	// that emulates its CPU (the TCG VM lanes, an order of magnitude
	// slower, on a loaded machine) may raise it.
	ConcurrencyDeadline time.Duration

	// HugePageSizes lists the huge page sizes the host has; nil skips the
	// HugeTLB round trip.
	HugePageSizes []semantic.Bytes

	// InGroup reports whether a process whose /proc/self/cgroup read
	// procCgroup is in group p of d. The start-inside subtests hand it what
	// the started process printed as its very first act, which proves the
	// process was in the group before it ran. nil: start-inside is checked
	// through Processes only (the fake cannot do better).
	InGroup func(d semantic.Driver, p semantic.Path, procCgroup string) bool
}

// Observer is an independent view of the backend.
type Observer interface {
	// Exists reports whether the group exists in the backend.
	Exists(t *testing.T, d semantic.Driver, p semantic.Path) bool
	// Processes lists the pids the backend has in the group, sorted.
	Processes(t *testing.T, d semantic.Driver, p semantic.Path) []int
	// Resources reads the group's settings from the backend itself, for
	// the features in fs; fields it cannot observe stay nil.
	Resources(t *testing.T, d semantic.Driver, p semantic.Path, fs []semantic.Feature) *semantic.Resources
}
