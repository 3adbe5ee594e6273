package cgroupfs

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFaultsHookEINTR: a hook returning EINTR interrupts the change the
// way the kernel does, so the change is retried and made; the hook is
// consulted once per attempt.
func TestFaultsHookEINTR(t *testing.T) {
	tests := []struct {
		name       string
		interrupts int
	}{
		{"once", 1},
		{"three times", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tree(t)
			var mu sync.Mutex
			calls := map[string]int{}
			cfg := Config{Faults: func(op Op, name, value string) error {
				mu.Lock()
				defer mu.Unlock()
				calls[string(op)+" "+name]++
				if calls[string(op)+" "+name] <= tc.interrupts {
					return unix.EINTR
				}
				return nil
			}}
			root, err := OpenRoot(base, cfg)
			require.NoError(t, err)
			defer root.Close()

			require.NoError(t, root.Write("a/b/value", "9"))
			v, err := root.ReadString("a/b/value")
			require.NoError(t, err)
			assert.Equal(t, "9", v, "the interrupted write was made")

			require.NoError(t, root.Mkdir("a/c", 0o755))
			ok, err := root.Exists("a/c")
			require.NoError(t, err)
			assert.True(t, ok, "the interrupted mkdir was made")
			require.NoError(t, root.Rmdir(t.Context(), "a/c"))

			f, err := root.OpenFile("a/b/value", unix.O_WRONLY)
			require.NoError(t, err)
			defer f.Close()
			mu.Lock()
			require.Equal(t, tc.interrupts+1, calls["write a/b/value"], "Dir.Write's attempts")
			calls["write a/b/value"] = 0 // interrupt File.Write as often
			mu.Unlock()
			require.NoError(t, f.Write("10"))
			v, _ = root.ReadString("a/b/value")
			assert.Equal(t, "10", v)

			want := tc.interrupts + 1
			assert.Equal(t, map[string]int{
				"write a/b/value": want, // File.Write's attempts

				"mkdir a/c": want,
				"rmdir a/c": want,
			}, calls)
		})
	}
}
