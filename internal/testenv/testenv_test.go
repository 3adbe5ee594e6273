package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t), UniqueName(t)
	assert.Regexp(t, regexp.MustCompile(`^cgsem-test-[0-9a-f]{12}$`), a)
	assert.NotEqual(t, a, b)
}

func TestLeaks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a/b/c", "d"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "file"), nil, 0o644))
	got, err := Leaks(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "a/b", "a/b/c", "d"}, got)

	got, err = Leaks(filepath.Join(dir, "gone"))
	require.NoError(t, err)
	assert.Empty(t, got)
}

// recorder is a testing.TB whose errors and cleanups the test inspects.
type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestScratchReportsAndRemovesLeaks(t *testing.T) {
	RequireV1(t, "pids", "cpuset")
	tests := []struct {
		name  string
		leave []string // directories left below the scratch
		want  string   // in the leak report, "" for none
	}{
		{"clean", nil, ""},
		{"nested leftovers", []string{"x", "x/y"}, `["x" "x/y"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			s := NewScratch(rec, "pids", "cpuset")
			for _, c := range []string{"pids", "cpuset"} {
				_, err := os.Stat(filepath.Join(s.Dirs[c], "cgroup.procs"))
				require.NoError(t, err, "scratch %s is a cgroup", c)
				assert.True(t, strings.HasPrefix(filepath.Base(s.Dirs[c]), Prefix))
			}
			cpus, err := os.ReadFile(filepath.Join(s.Dirs["cpuset"], "cpuset.cpus"))
			require.NoError(t, err)
			assert.NotEmpty(t, strings.TrimSpace(string(cpus)), "cpuset seeded from the parent")
			for _, d := range tt.leave {
				require.NoError(t, os.Mkdir(filepath.Join(s.Dirs["pids"], d), 0o755))
			}

			rec.runCleanups()
			if tt.want == "" {
				assert.Empty(t, rec.errs)
			} else {
				require.Len(t, rec.errs, 1)
				assert.Contains(t, rec.errs[0], tt.want)
			}
			for _, c := range []string{"pids", "cpuset"} {
				_, err := os.Stat(s.Dirs[c])
				assert.ErrorIs(t, err, os.ErrNotExist, "scratch %s removed", c)
			}
		})
	}
}

func TestSelfDirOfThisHost(t *testing.T) {
	h := LoadHost(t)
	for _, hier := range h.Hierarchies {
		key := hier.Key()
		if hier.Version == 1 && len(hier.Controllers) > 0 {
			key = hier.Controllers[0]
		}
		if hier.Version == 2 {
			key = ""
		}
		dir, ok, why := h.SelfDir(key)
		if !ok {
			t.Logf("hierarchy %q: %s", hier.Key(), why)
			continue
		}
		_, err := os.Stat(filepath.Join(dir, "cgroup.procs"))
		assert.NoError(t, err, "hierarchy %q", hier.Key())
	}
	_, ok, why := h.SelfDir("no-such-controller")
	assert.False(t, ok)
	assert.Contains(t, why, "no hierarchy")
}
