package mountinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Mount
	}{
		{
			name: "optional fields and release agent",
			line: `25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,relatime shared:8 master:2 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd`,
			want: Mount{ID: 25, ParentID: 24, Major: 0, Minor: 21, Root: "/", MountPoint: "/sys/fs/cgroup/systemd",
				Options: []string{"rw", "nosuid", "relatime"}, Optional: []string{"shared:8", "master:2"},
				FSType: "cgroup", Source: "cgroup",
				SuperOptions: []string{"rw", "xattr", "release_agent=/usr/lib/systemd/systemd-cgroups-agent", "name=systemd"}},
		},
		{
			name: "no optional fields",
			line: `41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`,
			want: Mount{ID: 41, ParentID: 31, Minor: 38, Root: "/", MountPoint: "/sys/fs/cgroup/unified",
				Options: []string{"rw", "relatime"}, FSType: "cgroup2", Source: "cgroup2", SuperOptions: []string{"rw"}},
		},
		{
			name: "escaped mount point, root and option",
			line: `52 1 0:42 /a\040b /mnt/back\134slash\011x rw - cgroup cg\040src rw,name=my\040name`,
			want: Mount{ID: 52, ParentID: 1, Minor: 42, Root: "/a b", MountPoint: "/mnt/back\\slash\tx",
				Options: []string{"rw"}, FSType: "cgroup", Source: "cg src", SuperOptions: []string{"rw", "name=my name"}},
		},
		{
			name: "block device numbers",
			line: `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard`,
			want: Mount{ID: 27, ParentID: 1, Major: 254, Root: "/", MountPoint: "/",
				Options: []string{"rw", "relatime"}, FSType: "ext4", Source: "/dev/vda", SuperOptions: []string{"rw", "discard"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine(tt.line)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"no separator", `25 24 0:21 / /x rw cgroup cgroup rw`, "want at least 6 fields"},
		{"too few after separator", `25 24 0:21 / /x rw - cgroup`, "want at least 6 fields"},
		{"bad id", `x 24 0:21 / /x rw - cgroup cgroup rw`, "mount ID"},
		{"bad device", `25 24 021 / /x rw - cgroup cgroup rw`, "MAJOR:MINOR"},
		{"bad escape", `25 24 0:21 / /x\09y rw - cgroup cgroup rw`, "bad escape"},
		{"truncated escape", `25 24 0:21 / /x\04 rw - cgroup cgroup rw`, "truncated escape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLine(tt.line)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "/plain", "/a b", "/t\tn\nb\\", "\\040 literal"} {
		got, err := Unescape(Escape(s))
		require.NoError(t, err, s)
		assert.Equal(t, s, got)
	}
}

// hierarchyWant is what a test data file must yield for one hierarchy.
type hierarchyWant struct {
	key        string // Hierarchy.Key, "" for v2
	version    int
	mountPoint string // first usable mount
	selfDir    string // where the process's own cgroup is, "" if not visible
}

func TestLayouts(t *testing.T) {
	tests := []struct {
		name   string
		layout Layout
		want   []hierarchyWant
	}{
		{"host-hybrid", Hybrid, []hierarchyWant{
			{"cpu", 1, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu"},
			{"cpuacct", 1, "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpuacct"},
			{"cpuset", 1, "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset"},
			{"memory", 1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/process_api/599e5e424f7513ad06560c183ac19ce9"},
			{"devices", 1, "/sys/fs/cgroup/devices", "/sys/fs/cgroup/devices"},
			{"freezer", 1, "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/freezer"},
			{"blkio", 1, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/blkio"},
			{"pids", 1, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids"},
			{"name=systemd", 1, "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd"},
			{"", 2, "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified"},
		}},
		{"legacy-centos7", Legacy, []hierarchyWant{
			{"name=systemd", 1, "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/user.slice/user-0.slice/session-1.scope"},
			{"net_cls,net_prio", 1, "/sys/fs/cgroup/net_cls,net_prio", "/sys/fs/cgroup/net_cls,net_prio"},
			{"cpu,cpuacct", 1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/user.slice"},
			{"perf_event", 1, "/sys/fs/cgroup/perf_event", "/sys/fs/cgroup/perf_event"},
			{"hugetlb", 1, "/sys/fs/cgroup/hugetlb", "/sys/fs/cgroup/hugetlb"},
			{"memory", 1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/user.slice"},
			{"devices", 1, "/sys/fs/cgroup/devices", "/sys/fs/cgroup/devices/user.slice"},
			{"blkio", 1, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/blkio/user.slice"},
			{"freezer", 1, "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/freezer"},
			{"cpuset", 1, "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset"},
			{"pids", 1, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids/user.slice"},
		}},
		{"hybrid-ubuntu2004", Hybrid, []hierarchyWant{
			{"", 2, "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/user.slice/user-1000.slice/session-3.scope"},
			{"name=systemd", 1, "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/user.slice/user-1000.slice/session-3.scope"},
			{"cpu,cpuacct", 1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/user.slice"},
			{"net_cls,net_prio", 1, "/sys/fs/cgroup/net_cls,net_prio", "/sys/fs/cgroup/net_cls,net_prio"},
			{"memory", 1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-3.scope"},
			{"rdma", 1, "/sys/fs/cgroup/rdma", "/sys/fs/cgroup/rdma"},
			{"blkio", 1, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/blkio/user.slice"},
			{"cpuset", 1, "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset"},
			{"pids", 1, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-3.scope"},
			{"hugetlb", 1, "/sys/fs/cgroup/hugetlb", "/sys/fs/cgroup/hugetlb"},
			{"perf_event", 1, "/sys/fs/cgroup/perf_event", "/sys/fs/cgroup/perf_event"},
			{"devices", 1, "/sys/fs/cgroup/devices", "/sys/fs/cgroup/devices/user.slice"},
			{"freezer", 1, "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/freezer"},
		}},
		{"unified", Unified, []hierarchyWant{
			{"", 2, "/sys/fs/cgroup", "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"},
		}},
		{"container-docker", Legacy, []hierarchyWant{
			{"name=systemd", 1, "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd"},
			{"cpu,cpuacct", 1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
			{"memory", 1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory"},
			{"devices", 1, "/sys/fs/cgroup/devices", "/sys/fs/cgroup/devices"},
			{"freezer", 1, "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/freezer"},
			{"pids", 1, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids"},
		}},
		{"comount-all", Legacy, []hierarchyWant{
			{"cpu,cpuacct,cpuset,devices,freezer,memory,pids", 1, "/sys/fs/cgroup", "/sys/fs/cgroup/apps/x"},
		}},
		{"escaped-partial", Legacy, []hierarchyWant{
			{"pids", 1, "/mnt/my cgroups/pids", "/srv/jobs-pids/a"},
			{"devices,freezer", 1, "/mnt/my cgroups/tab\tand\nnewline", "/mnt/my cgroups/tab\tand\nnewline/jobs/a"},
			{"name=my name", 1, "/mnt/back\\slash", "/mnt/back\\slash"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mounts, err := ParseFile(filepath.Join("testdata", tt.name+".mountinfo"))
			require.NoError(t, err)
			f, err := os.Open(filepath.Join("testdata", tt.name+".cgroup"))
			require.NoError(t, err)
			defer f.Close()
			self, err := ParseCgroup(f)
			require.NoError(t, err)

			hs := Hierarchies(mounts)
			assert.Equal(t, tt.layout, LayoutOf(hs))
			require.Len(t, hs, len(tt.want))
			for i, w := range tt.want {
				h := hs[i]
				assert.Equal(t, w.key, h.Key(), "hierarchy %d", i)
				assert.Equal(t, w.version, h.Version, "hierarchy %q", w.key)
				assert.Equal(t, w.mountPoint, h.Mounts[0].MountPoint, "hierarchy %q", w.key)
				p, err := Lookup(self, h)
				require.NoError(t, err, "hierarchy %q", w.key)
				dir, ok := h.Dir(p)
				if w.selfDir == "" {
					assert.False(t, ok, "hierarchy %q: %s visible at %q", w.key, p, dir)
					continue
				}
				assert.True(t, ok, "hierarchy %q: %s not visible", w.key, p)
				assert.Equal(t, w.selfDir, dir, "hierarchy %q", w.key)
			}
		})
	}
}

func TestDirOutsideMountRoot(t *testing.T) {
	mounts, err := ParseFile("testdata/container-docker.mountinfo")
	require.NoError(t, err)
	h, ok := Find(Hierarchies(mounts), "memory")
	require.True(t, ok)
	tests := []struct {
		name, cgroup, want string
		ok                 bool
	}{
		{"the mount root itself", "/docker/4e9b1c2a", "/sys/fs/cgroup/memory", true},
		{"below the mount root", "/docker/4e9b1c2a/sub", "/sys/fs/cgroup/memory/sub", true},
		{"a sibling sharing a prefix", "/docker/4e9b1c2abc", "", false},
		{"above the mount root", "/docker", "", false},
		{"dot-dot does not escape", "/docker/4e9b1c2a/../other", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := h.Dir(tt.cgroup)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFind(t *testing.T) {
	mounts, err := ParseFile("testdata/legacy-centos7.mountinfo")
	require.NoError(t, err)
	hs := Hierarchies(mounts)
	tests := []struct {
		controller, key string
		ok              bool
	}{
		{"cpu", "cpu,cpuacct", true},
		{"cpuacct", "cpu,cpuacct", true},
		{"net_prio", "net_cls,net_prio", true},
		{"rdma", "", false},
		{"", "", false}, // no v2 hierarchy on a legacy host
	}
	for _, tt := range tests {
		t.Run("controller "+tt.controller, func(t *testing.T) {
			h, ok := Find(hs, tt.controller)
			assert.Equal(t, tt.ok, ok)
			if ok {
				assert.Equal(t, tt.key, h.Key())
			}
		})
	}
}

func TestParseCgroupLine(t *testing.T) {
	tests := []struct {
		name, line string
		want       CgroupEntry
		err        string
	}{
		{name: "v2", line: "0::/user.slice", want: CgroupEntry{Path: "/user.slice"}},
		{name: "co-mount sorted", line: "3:cpuacct,cpu:/a", want: CgroupEntry{ID: 3, Controllers: []string{"cpu", "cpuacct"}, Path: "/a"}},
		{name: "named", line: "1:name=systemd:/", want: CgroupEntry{ID: 1, Name: "systemd", Path: "/"}},
		{name: "path with colon", line: "4:memory:/a:b", want: CgroupEntry{ID: 4, Controllers: []string{"memory"}, Path: "/a:b"}},
		{name: "missing field", line: "4:memory", err: "want ID:CONTROLLERS:PATH"},
		{name: "relative path", line: "4:memory:a", err: "not absolute"},
		{name: "bad id", line: "x:memory:/", err: "hierarchy ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCgroupLine(tt.line)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLookupMissing(t *testing.T) {
	entries, err := ParseCgroup(strings.NewReader("1:name=systemd:/\n"))
	require.NoError(t, err)
	_, err = Lookup(entries, Hierarchy{Version: 1, Controllers: []string{"memory"}})
	assert.ErrorIs(t, err, ErrNoEntry)
	_, err = Lookup(entries, Hierarchy{Version: 2})
	assert.ErrorIs(t, err, ErrNoEntry)
}

// TestThisHost parses the live files, so a format this kernel writes and
// the test data lacks is caught here.
func TestThisHost(t *testing.T) {
	mounts, err := ParseFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotEmpty(t, mounts)
	self, err := ReadCgroup(0)
	require.NoError(t, err)
	for _, h := range Hierarchies(mounts) {
		p, err := Lookup(self, h)
		if err != nil {
			continue // mounted but not ours (another cgroup namespace's view)
		}
		dir, ok := h.Dir(p)
		if !ok {
			continue
		}
		_, err = os.Stat(filepath.Join(dir, "cgroup.procs"))
		assert.NoError(t, err, "hierarchy %q: own cgroup directory %s", h.Key(), dir)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, name := range []string{"host-hybrid", "legacy-centos7", "escaped-partial", "container-docker"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".mountinfo"))
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			f.Add(l)
		}
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseLine(line)
		if err != nil {
			return
		}
		// Re-encoding the decoded fields must parse to the same mount:
		// the decoder loses nothing it accepted.
		again, err := ParseLine(render(m))
		if err != nil {
			t.Fatalf("re-rendered %q: %v", render(m), err)
		}
		assert.Equal(t, m, again)
	})
}

func render(m Mount) string {
	join := func(ss []string) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = escapeAll(s)
		}
		return strings.Join(out, ",")
	}
	fields := []string{
		strconv.Itoa(m.ID), strconv.Itoa(m.ParentID), strconv.Itoa(m.Major) + ":" + strconv.Itoa(m.Minor),
		escapeAll(m.Root), escapeAll(m.MountPoint), join(m.Options),
	}
	fields = append(fields, m.Optional...)
	fields = append(fields, "-", escapeAll(m.FSType), escapeAll(m.Source), join(m.SuperOptions))
	return strings.Join(fields, " ")
}

// escapeAll escapes every byte a field separator or the "-" marker could
// be confused with, which the kernel's decoder must accept as well.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._:=+@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "\\%03o", c)
	}
	return b.String()
}
