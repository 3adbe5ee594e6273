package sdns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// loadHost parses a host's captured /proc/self/cgroup, mountinfo and
// /proc/cgroups from testdata/<dir>.
func loadHost(t *testing.T, dir string) ([]procCgroup, []mountEntry, []kernelController) {
	t.Helper()
	open := func(name string) *os.File {
		f, err := os.Open(filepath.Join("testdata", dir, name))
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		return f
	}
	self, err := parseProcCgroup(open("cgroup"))
	require.NoError(t, err)
	mounts, err := parseMountinfo(open("mountinfo"))
	require.NoError(t, err)
	kernel, err := parseProcCgroups(open("cgroups"))
	require.NoError(t, err)
	return self, mounts, kernel
}

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		line string
		want mountEntry
	}{
		{
			name: "cgroup v1 with optional fields",
			line: `33 27 0:30 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:15 - cgroup cgroup rw,net_cls,net_prio`,
			want: mountEntry{Root: "/", Mountpoint: "/sys/fs/cgroup/net_cls,net_prio", Options: []string{"rw", "nosuid"}, FSType: "cgroup", Super: []string{"rw", "net_cls", "net_prio"}},
		},
		{
			name: "no optional fields",
			line: `41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`,
			want: mountEntry{Root: "/", Mountpoint: "/sys/fs/cgroup/unified", Options: []string{"rw", "relatime"}, FSType: "cgroup2", Super: []string{"rw"}},
		},
		{
			name: "escaped space and backslash",
			line: `50 1 0:40 /a\040b /mnt/x\134y rw - tmpfs tmpfs rw`,
			want: mountEntry{Root: "/a b", Mountpoint: `/mnt/x\y`, Options: []string{"rw"}, FSType: "tmpfs", Super: []string{"rw"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.line + "\n"))
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, tt.want, got[0])
		})
	}
	_, err := parseMountinfo(strings.NewReader("1 2 3\n"))
	assert.Error(t, err, "a truncated line")
}

func TestParseProcCgroup(t *testing.T) {
	got, err := parseProcCgroup(strings.NewReader("3:cpu,cpuacct:/a\n1:name=systemd:/b:c\n0::/\n"))
	require.NoError(t, err)
	assert.Equal(t, []procCgroup{
		{ID: 3, List: []string{"cpu", "cpuacct"}, Path: "/a"},
		{ID: 1, List: []string{"name=systemd"}, Path: "/b:c"},
		{ID: 0, Path: "/"},
	}, got)
	_, err = parseProcCgroup(strings.NewReader("x::/\n"))
	assert.Error(t, err)
}

func TestDiscoverHierarchies(t *testing.T) {
	tests := []struct {
		host    string
		wantOwn map[string]string // Key -> Own
	}{
		{
			host: "host-hybrid",
			wantOwn: map[string]string{
				"name=systemd": "/sys/fs/cgroup/systemd",
				"pids":         "/sys/fs/cgroup/pids",
				"blkio":        "/sys/fs/cgroup/blkio",
				"freezer":      "/sys/fs/cgroup/freezer",
				"devices":      "/sys/fs/cgroup/devices",
				"memory":       "/sys/fs/cgroup/memory/jobs/runner-1",
				"cpuset":       "/sys/fs/cgroup/cpuset",
				"cpuacct":      "/sys/fs/cgroup/cpuacct",
				"cpu":          "/sys/fs/cgroup/cpu",
				"unified":      "/sys/fs/cgroup/unified",
			},
		},
		{
			host: "systemd-hybrid",
			wantOwn: map[string]string{
				"cpuset":           "/sys/fs/cgroup/cpuset",
				"net_cls,net_prio": "/sys/fs/cgroup/net_cls,net_prio",
				"memory":           "/sys/fs/cgroup/memory/user.slice/user-0.slice/session-3.scope",
				"rdma":             "/sys/fs/cgroup/rdma",
				"freezer":          "/sys/fs/cgroup/freezer",
				"blkio":            "/sys/fs/cgroup/blkio/user.slice",
				"devices":          "/sys/fs/cgroup/devices/user.slice",
				"pids":             "/sys/fs/cgroup/pids/user.slice/user-0.slice/session-3.scope",
				"perf_event":       "/sys/fs/cgroup/perf_event",
				"cpu,cpuacct":      "/sys/fs/cgroup/cpu,cpuacct/user.slice",
				"hugetlb":          "/sys/fs/cgroup/hugetlb",
				"name=systemd":     "/sys/fs/cgroup/systemd/user.slice/user-0.slice/session-3.scope",
				"unified":          "/sys/fs/cgroup/unified/user.slice/user-0.slice/session-3.scope",
			},
		},
		{
			host:    "v2",
			wantOwn: map[string]string{"unified": "/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			self, mounts, kernel := loadHost(t, tt.host)
			hs, skipped := discoverHierarchies(self, mounts, kernel)
			assert.Empty(t, skipped)
			got := map[string]string{}
			for _, h := range hs {
				got[h.Key()] = h.Own
			}
			assert.Equal(t, tt.wantOwn, got)
		})
	}
}

func TestDiscoverHierarchiesMountRoot(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		root    string
		wantOwn string // "" = unreachable
	}{
		{name: "subtree mount reaches a deeper group", path: "/a/b", root: "/a", wantOwn: "/sys/fs/cgroup/b"},
		{name: "subtree mount at the group itself", path: "/a", root: "/a", wantOwn: "/sys/fs/cgroup"},
		{name: "sibling subtree does not reach", path: "/ab/c", root: "/a", wantOwn: ""},
		{name: "other subtree does not reach", path: "/x", root: "/a", wantOwn: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self := []procCgroup{{ID: 0, Path: tt.path}}
			mounts := []mountEntry{{Root: tt.root, Mountpoint: "/sys/fs/cgroup", FSType: "cgroup2", Super: []string{"rw"}}}
			hs, skipped := discoverHierarchies(self, mounts, nil)
			if tt.wantOwn == "" {
				assert.Empty(t, hs)
				assert.ErrorIs(t, skipped["unified"], errUnreachable)
				return
			}
			require.Len(t, hs, 1)
			assert.Equal(t, tt.wantOwn, hs[0].Own)
			assert.Equal(t, tt.wantOwn+"/x.scope", hs[0].hostPath(tt.path+"/x.scope"))
		})
	}
}

func TestPlanLayout(t *testing.T) {
	cg := func(dir, opts string) cgroupMount {
		return cgroupMount{Dir: dir, FSType: "cgroup", Source: "cgroup", Options: opts}
	}
	placeholder := func(dir string) cgroupMount {
		return cgroupMount{Dir: dir, FSType: "tmpfs", Source: "cgsem-placeholder", Options: "size=4k,mode=555", Flags: unix.MS_RDONLY}
	}
	tmpfs := cgroupMount{FSType: "tmpfs", Source: "tmpfs", Options: "mode=755"}
	unified := cgroupMount{Dir: "unified", FSType: "cgroup2", Source: "cgroup2"}
	tests := []struct {
		name    string
		host    string
		mode    string
		want    cgroupLayout
		wantErr error // nil and failAny false: success
		failAny bool  // any error will do
	}{
		{
			// Each controller on its own hierarchy; net_cls, net_prio,
			// perf_event and hugetlb are on the host's cgroup2.
			name: "this host, hybrid",
			host: "host-hybrid",
			mode: ModeHybrid,
			want: cgroupLayout{
				Mounts: []cgroupMount{
					tmpfs,
					cg("systemd", "none,name=systemd"), cg("pids", "pids"), cg("blkio", "blkio"),
					cg("freezer", "freezer"), cg("devices", "devices"), cg("memory", "memory"),
					cg("cpuset", "cpuset"), cg("cpuacct", "cpuacct"), cg("cpu", "cpu"),
					unified,
					placeholder("net_cls,net_prio"), placeholder("perf_event"), placeholder("hugetlb"),
				},
				Symlinks: [][2]string{
					{"cpu,cpuacct", "cpu"},
					{"net_cls", "net_cls,net_prio"}, {"net_prio", "net_cls,net_prio"},
				},
			},
		},
		{
			name: "this host, unified",
			host: "host-hybrid",
			mode: ModeUnified,
			want: cgroupLayout{Mounts: []cgroupMount{{FSType: "cgroup2", Source: "cgroup2"}}},
		},
		{
			// systemd's own hybrid layout: co-mounts, every controller on
			// v1 but misc.
			name: "systemd host, hybrid",
			host: "systemd-hybrid",
			mode: ModeHybrid,
			want: cgroupLayout{
				Mounts: []cgroupMount{
					tmpfs,
					cg("cpuset", "cpuset"), cg("net_cls,net_prio", "net_cls,net_prio"), cg("memory", "memory"),
					cg("rdma", "rdma"), cg("freezer", "freezer"), cg("blkio", "blkio"), cg("devices", "devices"),
					cg("pids", "pids"), cg("perf_event", "perf_event"), cg("cpu,cpuacct", "cpu,cpuacct"),
					cg("hugetlb", "hugetlb"), cg("systemd", "none,name=systemd"),
					unified,
					placeholder("misc"),
				},
				Symlinks: [][2]string{
					{"net_cls", "net_cls,net_prio"}, {"net_prio", "net_cls,net_prio"},
					{"cpu", "cpu,cpuacct"}, {"cpuacct", "cpu,cpuacct"},
				},
			},
		},
		{
			name: "pure cgroup2 host, unified",
			host: "v2",
			mode: ModeUnified,
			want: cgroupLayout{Mounts: []cgroupMount{{FSType: "cgroup2", Source: "cgroup2"}}},
		},
		{
			// systemd would create a name=systemd hierarchy for the host.
			name:    "pure cgroup2 host, hybrid",
			host:    "v2",
			mode:    ModeHybrid,
			wantErr: errors.ErrUnsupported,
		},
		{
			name:    "unknown mode",
			host:    "host-hybrid",
			mode:    "legacy",
			failAny: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, mounts, kernel := loadHost(t, tt.host)
			hs, _ := discoverHierarchies(self, mounts, kernel)
			got, err := planLayout(tt.mode, hs, kernel)
			switch {
			case tt.failAny:
				require.Error(t, err)
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			default:
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

func TestMountOptions(t *testing.T) {
	tests := []struct {
		name string
		h    hierarchy
		want string
	}{
		{name: "controller", h: hierarchy{ID: 4, Controllers: []string{"memory"}}, want: "memory"},
		{name: "co-mount", h: hierarchy{ID: 3, Controllers: []string{"cpu", "cpuacct"}}, want: "cpu,cpuacct"},
		{name: "named", h: hierarchy{ID: 1, Name: "systemd"}, want: "none,name=systemd"},
		{name: "named with controller", h: hierarchy{ID: 5, Controllers: []string{"cpu"}, Name: "x"}, want: "cpu,name=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.h.mountOptions())
		})
	}
}
