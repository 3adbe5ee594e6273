package fake_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func TestRegistered(t *testing.T) {
	require.Contains(t, registry.Drivers(), fake.Name)
	var found bool
	for _, v := range registry.Probe().Verdicts {
		if v.Name == fake.Name {
			found = true
			require.False(t, v.OK, "the fake is never auto-selected")
			require.Equal(t, 0, v.Priority)
		}
	}
	require.True(t, found)
}

func TestOpenSettings(t *testing.T) {
	tests := []struct {
		name        string
		settings    map[string]string
		wantErr     error
		unsupported []semantic.Feature
		pageSize    uint64
	}{
		{name: "none"},
		{name: "unsupported list", settings: map[string]string{"unsupported": "memory.swap, freeze,"},
			unsupported: []semantic.Feature{semantic.MemorySwap, semantic.Freeze}},
		{name: "empty unsupported list", settings: map[string]string{"unsupported": ""}},
		{name: "page size", settings: map[string]string{"pagesize": "64KiB"}, pageSize: 64 << 10},
		{name: "page size in bytes", settings: map[string]string{"pagesize": "16384"}, pageSize: 16384},
		{name: "unknown feature", settings: map[string]string{"unsupported": "memory.max,teleport"}, wantErr: semantic.ErrInvalid},
		{name: "page size not a power of two", settings: map[string]string{"pagesize": "3000"}, wantErr: semantic.ErrInvalid},
		{name: "page size zero", settings: map[string]string{"pagesize": "0"}, wantErr: semantic.ErrInvalid},
		{name: "page size max", settings: map[string]string{"pagesize": "max"}, wantErr: semantic.ErrInvalid},
		{name: "page size garbage", settings: map[string]string{"pagesize": "big"}, wantErr: semantic.ErrInvalid},
		{name: "unknown key", settings: map[string]string{"bus": "unix:path=/x"}, wantErr: semantic.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := registry.Open(fake.Name, semantic.Options{Settings: tt.settings})
			if tt.wantErr != nil {
				requireKind(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, d.Close()) })
			require.Equal(t, fake.Name, d.Name())
			for _, f := range tt.unsupported {
				require.Equal(t, semantic.Unsupported, d.Capabilities().Get(f).Support, f)
			}
			require.Equal(t, semantic.Exact, d.Capabilities().Get(semantic.MemoryMax).Support)
			if tt.pageSize != 0 {
				g, err := d.Create(t.Context(), semantic.MustPath("a"), &semantic.Resources{
					Memory: &semantic.Memory{Max: new(semantic.Bytes(tt.pageSize*3 - 1))},
				})
				require.NoError(t, err)
				require.Equal(t, semantic.Bytes(tt.pageSize*2), *readBack(t, g).Memory.Max)
			}
		})
	}
}
