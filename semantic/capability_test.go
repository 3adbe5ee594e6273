package semantic_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestCapabilitiesCheck(t *testing.T) {
	caps := semantic.Capabilities{
		semantic.MemoryMax:  {Feature: semantic.MemoryMax, Support: semantic.Exact},
		semantic.MemorySwap: {Feature: semantic.MemorySwap, Support: semantic.Unsupported, Reason: "no swap accounting"},
		semantic.CPUWeight:  {Feature: semantic.CPUWeight, Support: semantic.Approximate, Conversion: semantic.ConvWeightToShares},
		semantic.PidsMax:    {Feature: semantic.PidsMax, Support: semantic.Exact},
	}
	tests := []struct {
		name   string
		r      *semantic.Resources
		approx bool
		why    string // "" when the request passes
	}{
		{"nil request", nil, false, ""},
		{"empty request", &semantic.Resources{}, false, ""},
		{"exact field", &semantic.Resources{Memory: &semantic.Memory{Max: ptr(semantic.MiB)}}, false, ""},
		{"unsupported field", &semantic.Resources{Memory: &semantic.Memory{Swap: ptr(semantic.MiB)}}, false,
			"cgsem/v1: use memory.swap: memory.swap is not supported by this driver here: no swap accounting"},
		{"unsupported even when approximations are allowed", &semantic.Resources{Memory: &semantic.Memory{Swap: ptr(semantic.MiB)}}, true,
			"memory.swap is not supported"},
		{"undeclared field", &semantic.Resources{IO: &semantic.IO{Weight: ptr[uint64](100)}}, true,
			"io.weight is not supported by this driver here: not declared by the driver"},
		{"approximate refused", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](100)}}, false,
			"cpu.weight is only approximate here (" + semantic.ConvWeightToShares + "); allow approximations to apply it"},
		{"approximate allowed", &semantic.Resources{CPU: &semantic.CPU{Weight: ptr[uint64](100)}}, true, ""},
		{"first refusal in field order", &semantic.Resources{
			Memory: &semantic.Memory{Max: ptr(semantic.MiB), Swap: ptr(semantic.MiB)},
			IO:     &semantic.IO{Weight: ptr[uint64](100)},
		}, false, "use memory.swap"},
		{"empty section touches nothing", &semantic.Resources{IO: &semantic.IO{}}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := caps.Check("v1", tt.r, tt.approx)
			if tt.why == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, semantic.ErrNotSupported)
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.Contains(t, err.Error(), tt.why)
		})
	}
}

func TestCapabilitiesGet(t *testing.T) {
	caps := semantic.Capabilities{
		semantic.Freeze: {Feature: semantic.Freeze, Support: semantic.Exact},
		semantic.Kill:   {Feature: semantic.Kill, Support: semantic.Approximate, Conversion: "signal each pid"},
	}
	assert.True(t, caps.Supports(semantic.Freeze))
	assert.True(t, caps.Supports(semantic.Kill))
	assert.False(t, caps.Supports(semantic.Threads))
	got := caps.Get(semantic.Threads)
	assert.Equal(t, semantic.Unsupported, got.Support)
	assert.Equal(t, semantic.Threads, got.Feature)
	assert.NotEmpty(t, got.Reason)
	var none semantic.Capabilities
	assert.False(t, none.Supports(semantic.MemoryMax), "a nil map supports nothing")
}

func TestCapabilitiesString(t *testing.T) {
	caps := semantic.Capabilities{
		semantic.MemoryMax: {Feature: semantic.MemoryMax, Support: semantic.Exact},
		semantic.CPUWeight: {Feature: semantic.CPUWeight, Support: semantic.Approximate, Conversion: "conv", Reason: "lossy"},
	}
	lines := strings.Split(strings.TrimSuffix(caps.String(), "\n"), "\n")
	require.Len(t, lines, len(semantic.AllFeatures()), "one line per feature")
	assert.Equal(t, "memory.max         exact", lines[0])
	assert.Equal(t, "memory.high        unsupported: not declared by the driver", lines[1])
	assert.Equal(t, "cpu.weight         approximate (conv): lossy", lines[5])
}

func TestSupport(t *testing.T) {
	tests := []struct {
		s    semantic.Support
		want string
	}{
		{semantic.Unsupported, "unsupported"},
		{semantic.Exact, "exact"},
		{semantic.Approximate, "approximate"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.s.String())
			out, err := json.Marshal(semantic.Capability{Feature: semantic.MemoryMax, Support: tt.s})
			require.NoError(t, err)
			assert.JSONEq(t, `{"feature":"memory.max","support":"`+tt.want+`"}`, string(out))
		})
	}
}

func TestFeatureLists(t *testing.T) {
	all := semantic.AllFeatures()
	assert.Equal(t, len(semantic.ResourceFeatures)+len(semantic.OperationFeatures), len(all))
	seen := map[semantic.Feature]bool{}
	for _, f := range all {
		assert.False(t, seen[f], "feature %s listed twice", f)
		seen[f] = true
	}
	all[0] = "changed"
	assert.Equal(t, semantic.MemoryMax, semantic.AllFeatures()[0], "AllFeatures returns a fresh slice")
}

func TestCapabilityJSONRoundTrip(t *testing.T) {
	caps := semantic.Capabilities{
		semantic.MemoryMax: {Feature: semantic.MemoryMax, Support: semantic.Exact},
		semantic.CPUWeight: {Feature: semantic.CPUWeight, Support: semantic.Approximate, Conversion: semantic.ConvWeightToShares},
		semantic.Threads:   {Feature: semantic.Threads, Support: semantic.Unsupported, Reason: "systemd moves whole processes"},
	}
	out, err := json.Marshal(caps)
	require.NoError(t, err)
	var back semantic.Capabilities
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, caps, back)
	var s semantic.Support
	assert.ErrorIs(t, json.Unmarshal([]byte(`"sometimes"`), &s), semantic.ErrInvalid)
}
