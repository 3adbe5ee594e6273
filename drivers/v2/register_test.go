package v2

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestProbe(t *testing.T) {
	// The probe looks at a filesystem's type and at PID 1; both are given
	// here, as a directory and a fake host root, so every verdict is
	// reachable on any host that has a cgroup2 mount somewhere.
	var cgroup2 string
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			cgroup2 = p
			break
		}
	}
	if cgroup2 == "" {
		t.Skip("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	// hostRoot makes a fake root whose PID 1 is named comm, with
	// /run/systemd/system if booted.
	hostRoot := func(comm string, booted bool) string {
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, "proc/1"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "proc/1/comm"), []byte(comm+"\n"), 0o644))
		if booted {
			require.NoError(t, os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755))
		}
		return root
	}
	other := hostRoot("vminit", true)
	for _, c := range []struct {
		name           string
		root, host     string
		ok             bool
		reasonContains string
	}{
		{"Cgroup2NoSystemd", cgroup2, other, true, `is cgroup2 and systemd is not PID 1 (PID 1 is "vminit", not systemd)`},
		{"Cgroup2SystemdBooted", cgroup2, hostRoot("systemd", true), false, "systemd is PID 1"},
		{"Cgroup2SystemdCommButNotBooted", cgroup2, hostRoot("systemd", false), true, "systemd is not PID 1"},
		{"NotCgroup2", other, other, false, "is not cgroup2"},
		{"Missing", filepath.Join(other, "missing"), other, false, "cannot statfs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, reason := probe(c.root, c.host)
			require.Equal(t, c.ok, ok, reason)
			require.Contains(t, reason, c.reasonContains)
		})
	}
}
