package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCstring(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		onStack  bool
		err      error
	}{
		{"short", "memory.max", true, nil},
		{"longest that fits", strings.Repeat("a", len(nameBuf{})-1), true, nil},
		{"one byte longer", strings.Repeat("a", len(nameBuf{})), false, nil},
		{"long path", strings.Repeat("group/", 100) + "memory.max", false, nil},
		{"holds a NUL", "memory\x00max", false, unix.EINVAL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf nameBuf
			p, err := cstring(&buf, tt.in)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.in, unix.BytePtrToString(p))
			assert.Equal(t, tt.onStack, p == &buf[0])
		})
	}
}

// TestChangesDoNotAllocate: a group's lifecycle is dozens of these calls;
// on success none of them allocates (an error allocates its message).
func TestChangesDoNotAllocate(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "value"), []byte("1\n"), 0o644))
	root, err := OpenRoot(dir, Config{})
	require.NoError(t, err)
	defer root.Close()
	require.NoError(t, root.Mkdir("g", 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "g", "value"), []byte("1\n"), 0o644))
	buf := make([]byte, 0, 4096)
	for _, tt := range []struct {
		name string
		op   func() error
	}{
		{"mkdir and rmdir", func() error {
			if err := root.Mkdir("h", 0o755); err != nil {
				return err
			}
			return root.TryRmdir("h")
		}},
		{"write", func() error { return root.Write("value", "2") }},
		{"write a group's file", func() error { return root.Write("g/value", "2") }},
		{"read", func() error { _, err := root.ReadInto("value", buf); return err }},
		{"read a group's file", func() error { _, err := root.ReadInto("g/value", buf); return err }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.op())
			assert.Zero(t, testing.AllocsPerRun(20, func() {
				if err := tt.op(); err != nil {
					t.Fatal(err)
				}
			}))
		})
	}
}
