// Package reliability holds cgsem's stress, fault and hostile-environment
// checks, written once over semantic.Driver so each driver runs them with
// one call per check:
//
//   - FaultMatrix: a fault at every position of an apply sequence leaves
//     the group exactly as it was (read through the driver, the harness's
//     observer and the raw files), and the error names the file and wraps
//     the errno's kind; an EINTR at every position is retried away.
//   - Differential: random operation sequences run in lockstep on the fake
//     (the executable specification) and on a real driver agree on error
//     kinds, read-backs, children and process lists. The seed is printed;
//     CGSEM_SEED replays it, CGSEM_LONG=1 runs the long version.
//   - Concurrency: many goroutines create, apply to, add processes to and
//     delete overlapping groups; no deadlock (every call has a deadline),
//     no lost update, no leaked group, process, descriptor or goroutine.
//   - Restart: a child process creates groups, applies settings, starts a
//     sleeper and dies without cleaning up; a new driver opens the groups,
//     reads the same settings, sees the sleeper, receives events and
//     deletes everything.
//   - Symlinks: directories inside the root replaced (in a private mount
//     namespace) by a symlink or a bind mount leading outside; every
//     operation is refused and nothing outside changes.
//   - NonRoot: an unprivileged child fails every change with ErrPermission
//     naming the file it could not change, and works inside a subtree
//     delegated to it.
//
// A driver describes itself with a Target: a conformance.Harness (fresh
// driver, fault seam, observer, leak check, host sets) plus what the
// child-process checks need (a fresh root as semantic.Options, a
// constructor, the group's backend directories). Checks that need a
// capability the Target lacks skip with the reason.
//
// Child processes are the test binary itself, re-executed with
// CGSEM_RELIABILITY_CHILD set and -test.run narrowed to the calling test:
// every check that uses one tests for that variable first and runs its
// child side instead, so the calling test must not do anything with side
// effects before calling the check (build the Target lazily).
//
// A driver joins with one test per check, in its own package's tests:
//
//	func v2Target(t *testing.T) reliability.Target {
//		return reliability.Target{Harness: hostHarness(t), NewRoot: ..., Open: ..., Dirs: ...}
//	}
//	func TestReliabilityFaultMatrix(t *testing.T) { reliability.FaultMatrix(t, v2Target(t)) }
//	func TestReliabilityRestart(t *testing.T)     { reliability.Restart(t, v2Target(t)) }
//
// drivers/v1/reliability_test.go is the worked example.
//
// The guarantees the checks prove are listed, each with its test, in the
// README's "Guarantees" section.
package reliability
