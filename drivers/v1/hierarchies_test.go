package v1

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// TestKernelHierarchiesSetting: with SettingHierarchies a group lives in
// the named hierarchies only, a process added goes there and nowhere
// else, and a feature of a hierarchy left out is refused, not dropped.
func TestKernelHierarchiesSetting(t *testing.T) {
	d := kernelDriver(t, semantic.Options{Settings: map[string]string{SettingHierarchies: "memory,pids,freezer"}})
	var keys []string
	for _, h := range d.hs {
		keys = append(keys, h.key)
	}
	require.ElementsMatch(t, []string{"memory", "pids", "freezer"}, keys)

	ctx := t.Context()
	g := mustCreate(t, d, "only", &semantic.Resources{
		Memory: &semantic.Memory{Max: ptr(64 * semantic.MiB)},
		Pids:   &semantic.Pids{Max: ptr(semantic.Count(10))},
	})
	// The scratch group below the test's own cgroup exists in every
	// hierarchy; the new group only in the three named.
	host := testenv.LoadHost(t)
	scratch := filepath.Base(d.hs[0].dir)
	for _, key := range hierarchyKeys(t) {
		own, ok, why := host.SelfDir(key)
		require.True(t, ok, why)
		_, err := os.Stat(filepath.Join(own, scratch, "only"))
		if key == "memory" || key == "pids" || key == "freezer" {
			assert.NoError(t, err, "group in %s", key)
		} else {
			assert.ErrorIs(t, err, os.ErrNotExist, "no group in %s", key)
		}
	}

	cmd := exec.Command("sleep", "1000")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	before, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	require.NoError(t, err)
	require.NoError(t, g.AddProcess(ctx, cmd.Process.Pid))
	after, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(after)), "\n") {
		fields := strings.SplitN(line, ":", 3)
		inGroup := strings.HasSuffix(fields[2], "/only")
		switch fields[1] {
		case "memory", "pids", "freezer":
			assert.True(t, inGroup, "moved in %s: %s", fields[1], line)
		default:
			assert.False(t, inGroup, "left alone in %q: %s", fields[1], line)
			assert.Contains(t, string(before), line, "unchanged in %q", fields[1])
		}
	}

	err = g.Apply(ctx, &semantic.Resources{CPU: &semantic.CPU{Weight: ptr(uint64(200))}})
	assert.ErrorIs(t, err, semantic.ErrNotSupported, "cpu is left out")
	r, err := g.Resources(ctx)
	require.NoError(t, err)
	assert.Nil(t, r.CPU, "nothing of cpu was written or read")
	assert.False(t, d.Capabilities().Supports(semantic.CPUWeight))
	assert.True(t, d.Capabilities().Supports(semantic.Freeze))
}

func TestHierarchiesSettingRefusals(t *testing.T) {
	testenv.RequireV1(t, "memory")
	tests := []struct{ name, value, want string }{
		{"Unknown", "memory,bogus", `"bogus" is no controller`},
		{"Empty", "", `"" is no controller`},
		{"EmptyItem", "memory,,pids", `"" is no controller`},
		{"NamedTypo", "name=nosuch", `"name=nosuch" is no controller`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(semantic.Options{Root: "self", Settings: map[string]string{SettingHierarchies: tt.value}})
			require.ErrorIs(t, err, semantic.ErrInvalid)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, "usable: ", "the error lists what is there")
		})
	}
}
