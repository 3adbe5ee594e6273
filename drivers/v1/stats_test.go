package v1

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// fileDriver is a driver over plain directories, one per controller below
// dir, so Stats can be checked against files whose every byte the test
// chose (the kernel's own figures move).
func fileDriver(t *testing.T, dir string, hold bool, ctrls ...string) *Driver {
	t.Helper()
	d := &Driver{
		byCtrl:    map[string]*hier{},
		holdStats: hold,
		done:      make(chan struct{}),
		held:      map[*statsHolder]struct{}{},
		locks:     map[string]*lockEntry{},
	}
	d.leave = d.life.RUnlock
	for _, c := range ctrls {
		p := filepath.Join(dir, c)
		require.NoError(t, os.MkdirAll(filepath.Join(p, "g"), 0o755))
		root, err := cgroupfs.OpenRoot(p, cgroupfs.Config{})
		require.NoError(t, err)
		h := &hier{key: c, controllers: []string{c}, cgroupRoot: "/", dir: p, root: root, undo: root.Unhooked()}
		d.hs = append(d.hs, h)
		d.byCtrl[c] = h
	}
	d.primary = d.hs[0]
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
}

// The files of a group that ran, as this kernel writes them.
var statsFixture = map[string]string{
	"memory/g/memory.usage_in_bytes":     "1234567\n",
	"memory/g/memory.max_usage_in_bytes": "7654321\n",
	"memory/g/memory.stat":               "cache 1\nrss 2\nswap 3\ntotal_cache 40960\ntotal_rss 598016\ntotal_rss_huge 0\ntotal_swap 8192\ntotal_pgfault 6640\n",
	"memory/g/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	"cpuacct/g/cpuacct.usage":            "467959434\n",
	"cpuacct/g/cpuacct.usage_all":        "cpu user system\n0 371982864 95976570\n1 10 20\n",
	"cpu/g/cpu.stat":                     "nr_periods 13\nnr_throttled 1\nthrottled_time 8959153\nnr_bursts 0\nburst_time 0\n",
	"pids/g/pids.current":                "3\n",
	"pids/g/pids.max":                    "max\n",
	"blkio/g/blkio.throttle.io_service_bytes_recursive": "254:0 Read 5640192\n254:0 Write 3997696\n254:0 Sync 9637888\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 9637888\n" +
		"8:16 Read 512\n8:16 Write 0\n8:16 Total 512\nTotal 9638400\n",
	"blkio/g/blkio.throttle.io_serviced_recursive": "8:16 Read 1\n8:16 Write 0\n8:16 Total 1\n254:0 Read 349\n254:0 Write 61\n254:0 Total 410\nTotal 411\n",
}

var statsControllers = []string{"memory", "cpuacct", "cpu", "pids", "blkio"}

func TestStatsFromFiles(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	dur := func(v time.Duration) *time.Duration { return &v }
	full := &semantic.Stats{
		Memory: &semantic.MemoryStats{Usage: u(1234567), Peak: u(7654321), Anon: u(598016), File: u(40960), Swap: u(8192), OOMKill: u(2)},
		CPU: &semantic.CPUStats{Usage: dur(467959434), User: dur(371982874), System: dur(95976590),
			Periods: u(13), ThrottledPeriods: u(1), ThrottledTime: dur(8959153)},
		Pids: &semantic.PidsStats{Current: u(3), Limit: ptr(semantic.Count(statfile.Max))},
		IO: []semantic.IODeviceStats{
			{Major: 254, Minor: 0, ReadBytes: u(5640192), WriteBytes: u(3997696), ReadIOs: u(349), WriteIOs: u(61)},
			{Major: 8, Minor: 16, ReadBytes: u(512), WriteBytes: u(0), ReadIOs: u(1), WriteIOs: u(0)},
		},
	}
	for _, tt := range []struct {
		name    string
		ctrls   []string
		change  map[string]string // written over the fixture
		remove  []string          // files taken away
		want    *semantic.Stats
		wantErr error
	}{
		{name: "every figure", ctrls: statsControllers, want: full},
		{
			name: "absent keys and files stay nil", ctrls: statsControllers,
			change: map[string]string{
				"memory/g/memory.stat":                              "cache 1\ntotal_rss 5\n",
				"memory/g/memory.oom_control":                       "oom_kill_disable 0\nunder_oom 0\n",
				"cpu/g/cpu.stat":                                    "nr_periods 0\n",
				"pids/g/pids.max":                                   "100\n",
				"blkio/g/blkio.throttle.io_service_bytes_recursive": "Total 0\n",
				"blkio/g/blkio.throttle.io_serviced_recursive":      "Total 0\n",
			},
			remove: []string{"cpuacct/g/cpuacct.usage_all", "pids/g/pids.current"},
			want: &semantic.Stats{
				Memory: &semantic.MemoryStats{Usage: u(1234567), Peak: u(7654321), Anon: u(5)},
				CPU:    &semantic.CPUStats{Usage: dur(467959434), Periods: u(0)},
				Pids:   &semantic.PidsStats{Limit: ptr(semantic.Count(100))},
			},
		},
		{
			name: "sections of unmounted controllers are absent", ctrls: []string{"pids", "cpu"},
			want: &semantic.Stats{
				CPU:  &semantic.CPUStats{Periods: u(13), ThrottledPeriods: u(1), ThrottledTime: dur(8959153)},
				Pids: &semantic.PidsStats{Current: u(3), Limit: ptr(semantic.Count(statfile.Max))},
			},
		},
		{name: "a malformed number", ctrls: statsControllers, change: map[string]string{"pids/g/pids.current": "3 4\n"}, wantErr: statfile.ErrFormat},
		{name: "a malformed flat file", ctrls: statsControllers, change: map[string]string{"memory/g/memory.stat": "total_rss\n"}, wantErr: statfile.ErrFormat},
		{name: "a malformed usage_all", ctrls: statsControllers, change: map[string]string{"cpuacct/g/cpuacct.usage_all": "0 1 2\n"}, wantErr: statfile.ErrFormat},
		{name: "a malformed blkio file", ctrls: statsControllers, change: map[string]string{"blkio/g/blkio.throttle.io_serviced_recursive": "8:16 Read\n"}, wantErr: statfile.ErrFormat},
	} {
		for _, hold := range []bool{true, false} {
			name := tt.name + map[bool]string{true: " (held)", false: " (reopened)"}[hold]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				d := fileDriver(t, dir, hold, tt.ctrls...)
				files := map[string]string{}
				for k, v := range statsFixture {
					if _, ok := d.byCtrl[filepath.Dir(filepath.Dir(k))]; ok {
						files[k] = v
					}
				}
				writeFiles(t, dir, files)
				writeFiles(t, dir, tt.change)
				for _, f := range tt.remove {
					require.NoError(t, os.Remove(filepath.Join(dir, f)))
				}
				g := d.newGroup(semantic.MustPath("g"))
				// Twice: the second read goes through what the first kept.
				for range 2 {
					st, err := g.Stats(t.Context())
					if tt.wantErr != nil {
						require.ErrorIs(t, err, tt.wantErr)
						continue
					}
					require.NoError(t, err)
					assert.Equal(t, tt.want, st)
				}
			})
		}
	}
}

// TestStatsRereadsHeldFiles: a held file is read again, from its start,
// on every call.
func TestStatsRereadsHeldFiles(t *testing.T) {
	dir := t.TempDir()
	d := fileDriver(t, dir, true, statsControllers...)
	writeFiles(t, dir, statsFixture)
	g := d.newGroup(semantic.MustPath("g"))
	st, err := g.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, uint64(3), *st.Pids.Current)
	writeFiles(t, dir, map[string]string{"pids/g/pids.current": "12\n", "memory/g/memory.stat": "total_rss 1\n"})
	again, err := g.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, uint64(12), *again.Pids.Current)
	assert.Equal(t, uint64(1), *again.Memory.Anon)
	assert.Nil(t, again.Memory.File, "total_cache is gone from the new content")
	assert.Equal(t, uint64(3), *st.Pids.Current, "an earlier result is not overwritten")
	assert.Len(t, d.held, 1, "the group's files are held")
	d.release(g.stats.Load())
	assert.Empty(t, d.held, "release (Delete's, or the group's cleanup) gives the held files back")
	assert.Equal(t, [numStatFiles]*cgroupfs.File{}, g.stats.Load().files)
}

// TestStatsAllocations: Stats is called in loops; with its files held, a
// call allocates the result and nothing else (the IO devices are the
// second and third allocation when there are any).
func TestStatsAllocations(t *testing.T) {
	for _, tt := range []struct {
		name string
		io   string
		max  float64
	}{
		{"no IO devices", "Total 0\n", 1},
		{"IO devices", statsFixture["blkio/g/blkio.throttle.io_service_bytes_recursive"], 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d := fileDriver(t, dir, true, statsControllers...)
			writeFiles(t, dir, statsFixture)
			writeFiles(t, dir, map[string]string{"blkio/g/blkio.throttle.io_service_bytes_recursive": tt.io,
				"blkio/g/blkio.throttle.io_serviced_recursive": tt.io})
			g := d.newGroup(semantic.MustPath("g"))
			ctx := t.Context()
			_, err := g.Stats(ctx)
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := g.Stats(ctx); err != nil {
					t.Fatal(err)
				}
			})
			assert.LessOrEqual(t, allocs, tt.max)
		})
	}
}
