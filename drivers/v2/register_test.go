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
	// here as a directory and two files, so every verdict is reachable on
	// any host that has a cgroup2 mount somewhere.
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
	tmp := t.TempDir()
	comm := func(name string) string {
		p := filepath.Join(tmp, name)
		require.NoError(t, os.WriteFile(p, []byte(name+"\n"), 0o644))
		return p
	}
	systemd, other := comm("systemd"), comm("vminit")
	run := filepath.Join(tmp, "run-systemd-system")
	require.NoError(t, os.Mkdir(run, 0o755))
	for _, c := range []struct {
		name            string
		root, comm, run string
		ok              bool
		reasonContains  string
	}{
		{"Cgroup2NoSystemd", cgroup2, other, run, true, "is cgroup2 and systemd is not PID 1"},
		{"Cgroup2SystemdBooted", cgroup2, systemd, run, false, "systemd is PID 1"},
		{"Cgroup2SystemdCommButNotBooted", cgroup2, systemd, filepath.Join(tmp, "missing"), true, "systemd is not PID 1"},
		{"NotCgroup2", tmp, other, run, false, "is not cgroup2"},
		{"Missing", filepath.Join(tmp, "missing"), other, run, false, "cannot statfs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, reason := probe(c.root, c.comm, c.run)
			require.Equal(t, c.ok, ok, reason)
			require.Contains(t, reason, c.reasonContains)
		})
	}
}
