// Package testenv holds the environment gates and fixtures of cgsem's
// kernel tests, so every package skips for the same reasons and cleans up
// the same way.
//
// Gates skip with a reason: RequireRoot, RequireV1 (root and a v1
// hierarchy per controller where the test's own cgroup is writable),
// RequireCgroup2 and RequireCgroup2Controllers, RequireSystemd. LoadHost
// reads this process's hierarchies and own cgroups afresh (nothing is
// cached); Host.SelfDir maps a controller ("" for cgroup2,
// "name=systemd") to the own-cgroup directory.
//
// Tests create groups only beneath their own cgroup, under names from
// UniqueName ("cgsem-test-" and 12 random hex digits). NewScratch makes
// such a directory in each hierarchy asked for (seeding cpuset), and its
// cleanup is the leak check: any directory still below it when the test
// ends is reported with t.Errorf, then the whole tree is removed, killing
// what the test left running inside. Leaks and RemoveTree are usable on
// their own.
//
//	func TestSomething(t *testing.T) {
//		testenv.RequireV1(t, "memory", "pids")
//		s := testenv.NewScratch(t, "memory", "pids")
//		// create groups below s.Dirs["memory"] and s.Dirs["pids"] ...
//	}
package testenv
