package systemd

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func verdict(t *testing.T) registry.Verdict {
	t.Helper()
	for _, v := range registry.Probe().Verdicts {
		if v.Name == Name {
			return v
		}
	}
	t.Fatalf("%q is not registered: %v", Name, registry.Drivers())
	return registry.Verdict{}
}

// TestProbe: systemd is picked exactly where systemd is PID 1 and answers
// on the system bus. Here the test checks this host's verdict against
// /proc/1/comm, then runs itself inside a container, where it is picked.
func TestProbe(t *testing.T) {
	v := verdict(t)
	assert.Equal(t, 30, v.Priority)
	comm, err := os.ReadFile("/proc/1/comm")
	require.NoError(t, err)
	pid1 := strings.TrimSpace(string(comm))
	if os.Getenv(insideEnv) != "" {
		require.Equal(t, "systemd", pid1)
		require.True(t, v.OK, "inside, systemd is PID 1 and answers: %s", v.Reason)
		d, sel, err := registry.Auto(semantic.Options{})
		require.NoError(t, err)
		defer d.Close()
		assert.Equal(t, Name, sel.Picked, "the highest priority driver whose probe accepts")
		assert.Equal(t, Name, d.Name())
		return
	}
	if pid1 != "systemd" {
		assert.False(t, v.OK)
		assert.Contains(t, v.Reason, pid1, "the reason names PID 1")
	}
	in := startContainer(t, sdns.ModeHybrid)
	runInside(t, in, t.Name())
}
