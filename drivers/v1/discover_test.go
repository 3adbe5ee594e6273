package v1

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/semantic"
)

// layout loads a captured mountinfo and /proc/self/cgroup pair.
func layout(t *testing.T, name string) ([]mountinfo.Mount, []mountinfo.CgroupEntry) {
	t.Helper()
	dir := filepath.Join("..", "..", "internal", "mountinfo", "testdata")
	mounts, err := mountinfo.ParseFile(filepath.Join(dir, name+".mountinfo"))
	require.NoError(t, err)
	f, err := os.Open(filepath.Join(dir, name+".cgroup"))
	require.NoError(t, err)
	defer f.Close()
	self, err := mountinfo.ParseCgroup(f)
	require.NoError(t, err)
	return mounts, self
}

func TestDiscover(t *testing.T) {
	tests := []struct {
		name, layout, root string
		want               map[string]string // hierarchy key -> root directory
		skipped            int
		err                error
	}{
		{name: "hybrid host, self", layout: "host-hybrid", root: "self", want: map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "cpuset": "/sys/fs/cgroup/cpuset",
			"memory":  "/sys/fs/cgroup/memory/process_api/599e5e424f7513ad06560c183ac19ce9",
			"devices": "/sys/fs/cgroup/devices", "freezer": "/sys/fs/cgroup/freezer", "blkio": "/sys/fs/cgroup/blkio",
			"pids": "/sys/fs/cgroup/pids", "name=systemd": "/sys/fs/cgroup/systemd",
		}},
		{name: "hybrid host, below self", layout: "host-hybrid", root: "self/cgsem-test-x", want: map[string]string{
			"cpu":     "/sys/fs/cgroup/cpu/cgsem-test-x",
			"memory":  "/sys/fs/cgroup/memory/process_api/599e5e424f7513ad06560c183ac19ce9/cgsem-test-x",
			"devices": "/sys/fs/cgroup/devices/cgsem-test-x", "cpuacct": "/sys/fs/cgroup/cpuacct/cgsem-test-x",
			"cpuset": "/sys/fs/cgroup/cpuset/cgsem-test-x", "freezer": "/sys/fs/cgroup/freezer/cgsem-test-x",
			"blkio": "/sys/fs/cgroup/blkio/cgsem-test-x", "pids": "/sys/fs/cgroup/pids/cgsem-test-x",
			"name=systemd": "/sys/fs/cgroup/systemd/cgsem-test-x",
		}},
		{name: "legacy, top", layout: "legacy-centos7", root: "", want: map[string]string{
			"name=systemd": "/sys/fs/cgroup/systemd", "net_cls,net_prio": "/sys/fs/cgroup/net_cls,net_prio",
			"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "perf_event": "/sys/fs/cgroup/perf_event",
			"hugetlb": "/sys/fs/cgroup/hugetlb", "memory": "/sys/fs/cgroup/memory", "devices": "/sys/fs/cgroup/devices",
			"blkio": "/sys/fs/cgroup/blkio", "freezer": "/sys/fs/cgroup/freezer", "cpuset": "/sys/fs/cgroup/cpuset",
			"pids": "/sys/fs/cgroup/pids",
		}},
		{name: "legacy, a cgroup path in every hierarchy", layout: "legacy-centos7", root: "/machine.slice/x", want: map[string]string{
			"name=systemd": "/sys/fs/cgroup/systemd/machine.slice/x", "net_cls,net_prio": "/sys/fs/cgroup/net_cls,net_prio/machine.slice/x",
			"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/machine.slice/x", "perf_event": "/sys/fs/cgroup/perf_event/machine.slice/x",
			"hugetlb": "/sys/fs/cgroup/hugetlb/machine.slice/x", "memory": "/sys/fs/cgroup/memory/machine.slice/x",
			"devices": "/sys/fs/cgroup/devices/machine.slice/x", "blkio": "/sys/fs/cgroup/blkio/machine.slice/x",
			"freezer": "/sys/fs/cgroup/freezer/machine.slice/x", "cpuset": "/sys/fs/cgroup/cpuset/machine.slice/x",
			"pids": "/sys/fs/cgroup/pids/machine.slice/x",
		}},
		{name: "container mounts are read-only", layout: "container-docker", root: "self", skipped: 6, err: semantic.ErrNotSupported},
		{name: "unified has no v1", layout: "unified", root: "self", err: semantic.ErrNotSupported},
		{name: "comount and subtree bind mount", layout: "escaped-partial", root: "self", want: map[string]string{
			"pids":            "/srv/jobs-pids/a",
			"devices,freezer": "/mnt/my cgroups/tab\tand\nnewline/jobs/a",
			"name=my name":    "/mnt/back\\slash",
		}},
		{name: "a path a subtree mount does not show", layout: "container-docker", root: "/elsewhere", skipped: 6, err: semantic.ErrNotSupported},
		{name: "relative root", layout: "host-hybrid", root: "machine.slice", err: semantic.ErrInvalid},
		{name: "dot-dot root", layout: "host-hybrid", root: "/a/../b", err: semantic.ErrInvalid},
		{name: "self with an invalid path", layout: "host-hybrid", root: "self/../x", err: semantic.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mounts, self := layout(t, tt.layout)
			use, skipped, err := discover(mounts, self, tt.root)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				assert.Len(t, skipped, tt.skipped)
				return
			}
			require.NoError(t, err)
			got := map[string]string{}
			for _, p := range use {
				got[p.h.Key()] = p.dir
			}
			assert.Equal(t, tt.want, got)
			assert.Len(t, skipped, tt.skipped, "skipped: %q", skipped)
		})
	}
}

func TestProbe(t *testing.T) {
	// The systemd verdict and its reason are hostinfo.Systemd's, tested
	// there on fake trees.
	const notSystemd = `PID 1 is "process_api", not systemd`
	tests := []struct {
		layout  string
		systemd bool
		ok      bool
		reason  string
	}{
		{"host-hybrid", false, true, "hybrid layout with v1 controllers blkio,cpu,cpuacct,cpuset,devices,freezer,memory,pids; " + notSystemd},
		{"legacy-centos7", false, true, "legacy layout"},
		{"legacy-centos7", true, false, "systemd is PID 1"},
		{"hybrid-ubuntu2004", true, false, "use the systemd driver"},
		{"unified", false, false, "no cgroup v1 hierarchy with controllers"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/systemd=%t", tt.layout, tt.systemd), func(t *testing.T) {
			mounts, _ := layout(t, tt.layout)
			why := notSystemd
			if tt.systemd {
				why = "PID 1 is systemd and booted the system"
			}
			ok, reason := probe(mounts, tt.systemd, why)
			assert.Equal(t, tt.ok, ok)
			assert.Contains(t, reason, tt.reason)
		})
	}
}

func TestHugeName(t *testing.T) {
	for ps, want := range map[semantic.Bytes]string{
		2 * semantic.MiB: "2MB", semantic.GiB: "1GB", 64 * semantic.KiB: "64KB", 16 * semantic.GiB: "16GB", 512 * semantic.MiB: "512MB",
	} {
		assert.Equal(t, want, hugeName(ps))
	}
}
