package v1

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
	"github.com/cgsem/cgsem/test/reliability"
)

// The reliability checks of package test/reliability, run on this driver
// on the host. reliabilityTarget has no side effects beyond reading the
// host's cgroup view: a re-executed child reaches the same test and must
// find nothing made for it.

// settingsFiles hold every setting the driver writes; the fault matrix
// compares them byte for byte before and after a failed apply.
var settingsFiles = []string{
	"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
	"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us",
	"cpuset.cpus", "cpuset.mems",
	"blkio.bfq.weight", "blkio.weight",
	"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device",
	"pids.max", "devices.list", "freezer.state",
}

func reliabilityTarget(t *testing.T) reliability.Target {
	return reliability.Target{
		Harness: hostHarness(t),
		Require: func(t *testing.T) { testenv.RequireV1(t, suiteControllers...) },
		NewRoot: func(t *testing.T) semantic.Options {
			s := testenv.NewScratch(t, hierarchyKeys(t)...)
			return semantic.Options{Root: "self/" + s.Name}
		},
		Open: func(opts semantic.Options) (semantic.Driver, error) { return New(opts) },
		Dirs: func(d semantic.Driver, p semantic.Path) []string {
			var out []string
			for _, h := range d.(*Driver).hs {
				out = append(out, filepath.Join(h.dir, p.String()))
			}
			return out
		},
		SettingsFiles: settingsFiles,
		RetriesEINTR:  true,
		// v1's frozen tasks wait for their ancestor's thaw to die.
		FrozenKillBusy: true,
		Changes:        func(d semantic.Driver) int64 { return d.(*Driver).faults.n.Load() },
		Delegate:       delegateV1,
		// What an owner of a delegated v1 subtree can write: every file
		// it owns, except devices, whose writes need CAP_SYS_ADMIN.
		Delegated: []semantic.Feature{semantic.MemoryMax, semantic.MemoryLow, semantic.MemorySwap,
			semantic.CPUWeight, semantic.CPUMaxFeature, semantic.CPUSetCPUs, semantic.CPUSetMems,
			semantic.IOWeight, semantic.IOLimits, semantic.PidsMax},
	}
}

// delegateV1 hands the root to uid as v1 delegation does: the directory
// (so the owner can make and remove groups below it) and the files that
// move tasks into it, in every hierarchy. Groups the owner makes below are
// its own: the kernel gives a new cgroup's files to its creator.
func delegateV1(t *testing.T, d semantic.Driver, uid, gid int) {
	for _, h := range d.(*Driver).hs {
		for _, name := range []string{"", "cgroup.procs", "tasks"} {
			require.NoError(t, os.Chown(filepath.Join(h.dir, name), uid, gid))
		}
	}
}

func TestReliabilityFaultMatrix(t *testing.T) {
	reliability.FaultMatrix(t, reliabilityTarget(t))
}

func TestReliabilityDifferential(t *testing.T) {
	reliability.Differential(t, reliabilityTarget(t))
}

func TestReliabilityConcurrency(t *testing.T) {
	reliability.Concurrency(t, reliabilityTarget(t))
}

func TestReliabilityRestart(t *testing.T) {
	reliability.Restart(t, reliabilityTarget(t))
}

func TestReliabilitySymlinks(t *testing.T) {
	reliability.Symlinks(t, reliabilityTarget(t))
}

func TestReliabilityNonRoot(t *testing.T) {
	reliability.NonRoot(t, reliabilityTarget(t))
}
