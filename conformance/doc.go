// Package conformance is the suite every cgsem driver passes: one exported
// function, Run, over a Harness that makes drivers, in the manner of
// testing/fstest.TestFS and nettest.TestConn. The built-in drivers run it,
// and so can a third-party driver, which then means the same thing by the
// same words as they do.
//
// # Running it on a driver
//
// A driver's test package calls Run from one test function:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			NewDriver: func(t *testing.T) semantic.Driver {
//				root := makeRoot(t) // unique, empty, beneath the test's own cgroup
//				d, err := mydriver.New(semantic.Options{Root: root})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() {
//					d.Close()
//					removeRoot(t, root)
//				})
//				return d
//			},
//			Leaks:    leftBelowRoot,   // func(semantic.Driver) []string
//			Observer: cgroupfsObserver{},
//			Enforces: []semantic.Feature{semantic.MemoryMax, semantic.PidsMax, semantic.Kill},
//			IODevice: &[2]int64{8, 0},
//		})
//	}
//
// and `go test -race` runs it. drivers/fake/conformance_test.go is a
// complete, small example.
//
// # What it checks
//
// Every property is one subtest named Feature/Behaviour (a resource field
// adds a level: Memory/Max/RoundTrip), each on a fresh driver from
// Harness.NewDriver, most of them in parallel:
//
//   - Path: the hostile names every driver refuses alike with ErrInvalid
//     ("", ".", "..", "a/../b", "/abs", NUL, newline, leading or trailing
//     space, attribute-file names such as memory.x, cgroup.procs and tasks,
//     a 256-byte segment, 33 levels), the ordinary names every driver
//     accepts, and that the root cannot be created.
//   - Lifecycle: create, open, list and delete; ErrExist and ErrNotExist;
//     nested creation with bare intermediate levels; deleting a group with
//     children or processes (ErrBusy, unless Recursive or Kill); handles on
//     deleted groups; complete read-back; a re-created group starts fresh.
//   - Memory, CPU, IO, Pids, Devices, HugeTLB: for every field, a round
//     trip of several values (read-back equals Resources.Normalize of what
//     was applied, no other field moves, the observer agrees), creation
//     with the field set, and invalid values refused with ErrInvalid by
//     Apply, Create and Plan, changing nothing. Device lists are compared
//     by meaning: Devices.Allowed over a grid of devices, since a backend
//     may read back an equivalent list in another form.
//   - Apply: partial updates leave other fields alone; an empty request
//     changes nothing; all-or-nothing under an injected failure at every
//     position of an Apply and of a nested Create.
//   - Unsupported: a request mixing supported fields with an unsupported
//     one is refused with ErrNotSupported naming it, and changes nothing.
//   - Process, Thread, Start: adding, listing, moving; pid 0 and negative
//     pids refused (0 would move the caller); exited processes leave;
//     Start places the process in the group before it runs.
//   - Freeze, Kill, Events, Stats: freeze and thaw (with their events),
//     kill empties a group and its descendants, populated and empty
//     events, event channels close with their context, stats shape.
//   - Context: calls with a cancelled context return promptly; blocking
//     ones fail with the context's error, and a failed call changed nothing.
//   - Concurrency: many goroutines creating, applying and deleting distinct
//     and overlapping groups, with no deadlock and no lost update.
//   - Plan: planning changes nothing, and the plan is of the request.
//   - Enforce: real processes against real limits, for the features the
//     harness lists in Enforces (see below).
//
// A feature the driver declares unsupported (Driver.Capabilities) is
// skipped with t.Skip naming the reason, but only after the suite checked
// that a request touching it fails with ErrNotSupported and changes
// nothing. An approximate feature is not compared exactly. A declared
// feature must work.
//
// # The harness
//
// NewDriver is the one required field: a fresh driver on a fresh, empty
// root, cleaned up through t.Cleanup. It is called concurrently by
// parallel subtests. The others are optional:
//
//   - InjectFault makes the nth backend change fail, for the
//     all-or-nothing subtests; without it they are skipped.
//   - Observer reads the backend's state independently of the driver
//     (cgroupfs files, unit properties); with it, existence, processes and
//     resources are checked twice. Without it the suite trusts read-back.
//   - Enforces lists the features whose effect the host lets the suite
//     check with real processes: memory.max (a 256MiB hog under a 64MiB
//     limit dies of SIGKILL, counted and reported where the driver has
//     the figures), pids.max (with a limit of 5, or more if the forking
//     helper's own threads need room, forks beyond it fail with EAGAIN),
//     devices (opens of /dev/null, /dev/zero and /dev/full succeed
//     exactly as Devices.Allows says, as the list changes), freeze (a
//     spinning process makes no progress while frozen), cpu.max (a spinner
//     capped at 0.2 CPUs uses well under half a CPU) and kill (every
//     process dies of SIGKILL). The others are skipped with "harness does
//     not enforce". Bounds are generous: these prove a limit holds, not
//     how fast.
//   - Leaks lists what is left below the root after a subtest's own
//     cleanup; anything listed fails the subtest.
//   - PageSize, CPUs, Mems, IODevice and HugePageSizes describe the host,
//     so round trips use values it can take.
//   - InGroup tells from a process's /proc/self/cgroup whether it is in a
//     group, to prove Start put it there before it ran.
//   - ConcurrencyDeadline raises the one-minute bound within which the
//     concurrency subtests' workers must finish, for hosts where the
//     backend is slow without being stuck (an emulated VM).
//
// Cleanup runs in this order, whether the subtest passed or not: the
// subtest's helper processes are killed and reaped, frozen groups thawed;
// then every group left below the root is deleted through the driver
// (recursively, killing where the driver can); then Leaks is consulted;
// last, the harness's own cleanup registered by NewDriver runs.
//
// # Helper processes
//
// The processes the suite puts in groups are the test binary itself,
// re-executed with -test.run narrowed to the test that called Run and the
// environment variable CGSEM_CONFORMANCE_HELPER naming what to do (sleep,
// print its cgroup, hog memory, fork, open device nodes, spin). Run checks
// that variable before anything else and, in such a child, does the job
// and exits, so a driver needs no TestMain. A TestMain, if the package has
// one, runs in the children too: it should do nothing costly or visible
// before m.Run when IsHelper reports true. Every helper is killed and
// reaped when its subtest ends.
package conformance
