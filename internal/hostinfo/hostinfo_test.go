package hostinfo

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tree makes a fake root with the given files ("path": content) and
// directories ("path/": ""), and returns it.
func tree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range entries {
		full := filepath.Join(root, p)
		if p[len(p)-1] == '/' {
			require.NoError(t, os.MkdirAll(full, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	return root
}

func TestSystemd(t *testing.T) {
	tests := []struct {
		name    string
		entries map[string]string
		ok      bool
		why     string
	}{
		{
			name:    "booted by systemd",
			entries: map[string]string{"proc/1/comm": "systemd\n", "run/systemd/system/": ""},
			ok:      true,
			why:     "PID 1 is systemd and booted the system",
		},
		{
			name:    "comm without a newline",
			entries: map[string]string{"proc/1/comm": "systemd", "run/systemd/system/": ""},
			ok:      true,
			why:     "PID 1 is systemd",
		},
		{
			name:    "systemd that did not boot the system",
			entries: map[string]string{"proc/1/comm": "systemd\n", "run/systemd/": ""},
			why:     "run/systemd/system is missing: it did not boot the system",
		},
		{
			name:    "run/systemd/system not a directory",
			entries: map[string]string{"proc/1/comm": "systemd\n", "run/systemd/system": ""},
			why:     "is not a directory",
		},
		{
			name:    "another init seeing systemd's run directory",
			entries: map[string]string{"proc/1/comm": "init\n", "run/systemd/system/": ""},
			why:     `PID 1 is "init", not systemd`,
		},
		{
			name:    "a name that only starts with systemd",
			entries: map[string]string{"proc/1/comm": "systemd-shim\n", "run/systemd/system/": ""},
			why:     `PID 1 is "systemd-shim", not systemd`,
		},
		{
			name:    "no proc",
			entries: map[string]string{"run/systemd/system/": ""},
			why:     "cannot read PID 1's name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := Systemd(tree(t, tt.entries))
			assert.Equal(t, tt.ok, ok, why)
			assert.Contains(t, why, tt.why)
		})
	}
}

// TestSystemdHostRoot: "" and "/" both name this host, and agree.
func TestSystemdHostRoot(t *testing.T) {
	ok1, why1 := Systemd("")
	ok2, why2 := Systemd("/")
	assert.Equal(t, ok1, ok2)
	assert.Equal(t, why1, why2)
}
