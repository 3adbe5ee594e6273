package v1

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// The bench module's v1 lifecycle request: memory 256 MiB, pids 100, CPU
// weight 50 (cpu.shares 512), every device denied but /dev/null.
func lifecycleResources() *semantic.Resources {
	return &semantic.Resources{
		Memory: &semantic.Memory{Max: ptr(256 * semantic.MiB)},
		CPU:    &semantic.CPU{Weight: ptr(uint64(50))},
		Pids:   &semantic.Pids{Max: ptr(semantic.Count(100))},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
		}},
	}
}

// benchDriver opens a driver on a scratch root beneath the benchmark's own
// cgroup in every v1 hierarchy, with a "park" group below it that the
// benchmarks create their groups in (as the bench module does below its
// run's root).
func benchDriver(b *testing.B, settings map[string]string) (*Driver, semantic.Path) {
	b.Helper()
	testenv.RequireV1(b, suiteControllers...)
	s := testenv.NewScratch(b, hierarchyKeys(b)...)
	d, err := New(semantic.Options{Root: "self/" + s.Name, Settings: settings})
	require.NoError(b, err)
	park := semantic.MustPath("park")
	g, err := d.Create(b.Context(), park, nil)
	require.NoError(b, err)
	b.Cleanup(func() {
		if err := g.Delete(context.Background(), &semantic.DeleteOptions{Kill: true, Recursive: true}); err != nil {
			b.Errorf("delete park: %v", err)
		}
		if err := d.Close(); err != nil {
			b.Errorf("close: %v", err)
		}
	})
	return d, park
}

// BenchmarkLifecycle is the bench module's v1 lifecycle row: Create with
// lifecycleResources, then Delete; at the top of the driver's root (the
// bench module roots the driver where the floor holds its descriptor)
// and one level below it.
func BenchmarkLifecycle(b *testing.B) {
	for _, where := range []string{"top", "nested"} {
		b.Run(where, func(b *testing.B) {
			d, park := benchDriver(b, nil)
			if where == "top" {
				park = semantic.Root
			}
			res := lifecycleResources()
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				g, err := d.Create(ctx, park.Child("g"+strconv.Itoa(i)), res)
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Delete(ctx, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStats is the bench module's v1 stats row, held and reopened.
func BenchmarkStats(b *testing.B) {
	for _, mode := range []string{"hold", "reopen"} {
		b.Run(mode, func(b *testing.B) {
			d, park := benchDriver(b, map[string]string{SettingStatFiles: mode})
			g, err := d.Open(b.Context(), park)
			require.NoError(b, err)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Stats(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// syscallChildEnv tells a re-executed test binary to run one scenario of
// TestSyscallCounts as TestSyscallCountsChild: "SCENARIO ROOT N".
const syscallChildEnv = "CGSEM_V1_SYSCALL_CHILD"

// TestSyscallCountsChild is the traced side of TestSyscallCounts; it runs
// only when re-executed by it.
func TestSyscallCountsChild(t *testing.T) {
	spec := os.Getenv(syscallChildEnv)
	if spec == "" {
		t.Skip("run by TestSyscallCounts")
	}
	var scenario, root string
	var n int
	_, err := fmt.Sscan(spec, &scenario, &root, &n)
	require.NoError(t, err)
	settings := map[string]string{}
	if mode, ok := strings.CutPrefix(scenario, "stats-"); ok {
		settings[SettingStatFiles] = mode
	}
	d, err := New(semantic.Options{Root: root, Settings: settings})
	require.NoError(t, err)
	defer d.Close()
	ctx := t.Context()
	switch scenario {
	case "lifecycle":
		res := lifecycleResources()
		for i := range n {
			g, err := d.Create(ctx, semantic.MustPath("g"+strconv.Itoa(i)), res)
			require.NoError(t, err)
			require.NoError(t, g.Delete(ctx, nil))
		}
	default:
		g, err := d.Open(ctx, semantic.MustPath("stats"))
		require.NoError(t, err)
		for range n {
			_, err := g.Stats(ctx)
			require.NoError(t, err)
		}
	}
}

// straceLine is one system call strace -f -y printed: the pid, the call's
// name and its arguments (an unfinished call's, and no resumed one, so
// each call is one line).
var straceLine = regexp.MustCompile(`^\d+ +([a-z0-9_]+)\((.*)`)

// tracedCalls runs scenario n times in a re-executed test binary under
// strace and counts the calls on files below dir, by name.
func tracedCalls(t *testing.T, dir, root, scenario string, n int) map[string]int {
	t.Helper()
	out := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command("strace", "-f", "-y", "-qq", "-o", out,
		"-e", "trace=openat,openat2,read,pread64,write,close,mkdirat,unlinkat,newfstatat,fstatfs",
		os.Args[0], "-test.run=^TestSyscallCountsChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", syscallChildEnv, scenario, root, n))
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	calls := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := straceLine.FindStringSubmatch(sc.Text())
		if m != nil && strings.Contains(m[2], dir) {
			calls[m[1]]++
		}
	}
	require.NoError(t, sc.Err())
	return calls
}

// TestSyscallCounts holds the hot paths to the system calls the raw floor
// makes (bench: the v1 lifecycle's floor of the same layout, and the
// stats floor), counted with strace: the difference between 11 runs and
// one, over 10, is what one more costs, whatever opening the driver took.
func TestSyscallCounts(t *testing.T) {
	testenv.RequireV1(t, suiteControllers...)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed: " + err.Error())
	}
	d, s := newTestDriver(t, semantic.Options{})
	g, err := d.Create(t.Context(), semantic.MustPath("stats"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, g.Delete(context.Background(), nil)) })
	hs, cpuset := len(d.hs), 0
	if d.byCtrl["cpuset"] != nil {
		cpuset = 1
	}
	for _, tt := range []struct {
		scenario string
		want     map[string]int
	}{
		{
			// A group in every hierarchy: mkdirat each, cpuset seeded from
			// the root's held cpuset.cpus and cpuset.mems (a pread each)
			// and written, the five limits written (memory, pids, cpu,
			// devices deny and allow), unlinkat each. The floor differs
			// only in reading the seeds once, before its timing.
			scenario: "lifecycle",
			want: map[string]int{
				"mkdirat": hs, "pread64": 2 * cpuset,
				"openat2": 5 + 2*cpuset, "write": 5 + 2*cpuset, "close": 5 + 2*cpuset,
				"unlinkat": hs,
			},
		},
		{
			scenario: "stats-reopen",
			want:     map[string]int{"openat2": len(statFiles), "read": len(statFiles), "close": len(statFiles)},
		},
		{
			scenario: "stats-hold",
			want:     map[string]int{"pread64": len(statFiles)},
		},
	} {
		t.Run(tt.scenario, func(t *testing.T) {
			one := tracedCalls(t, s.Name, "self/"+s.Name, tt.scenario, 1)
			eleven := tracedCalls(t, s.Name, "self/"+s.Name, tt.scenario, 11)
			got := map[string]int{}
			for name, c := range eleven {
				if diff := c - one[name]; diff != 0 {
					require.Zero(t, diff%10, "%s: %d calls in 11 runs, %d in one", name, c, one[name])
					got[name] = diff / 10
				}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestKernelSeedFollowsRoot: the root's cpuset files are held open, and a
// group made at the top is seeded with what they hold when it is made,
// not when the driver opened.
func TestKernelSeedFollowsRoot(t *testing.T) {
	testenv.RequireV1(t, suiteControllers...)
	d, s := newTestDriver(t, semantic.Options{})
	h := d.byCtrl["cpuset"]
	if h == nil {
		t.Skip("no cpuset hierarchy")
	}
	require.NotNil(t, h.seeds[0], "the root's cpuset.cpus is held")
	before, err := h.root.ReadString("cpuset.cpus")
	require.NoError(t, err)
	cpus, err := semantic.ParseCPUSet(before)
	require.NoError(t, err)
	ids := []int(cpus)
	if len(ids) < 2 {
		t.Skipf("the root has one CPU (%s): nothing to narrow", before)
	}
	for _, tt := range []struct {
		name, cpus string
	}{
		{"narrowed", strconv.Itoa(ids[0])},
		{"widened again", before},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The scratch root is this test's own group.
			require.NoError(t, os.WriteFile(filepath.Join(s.Dirs["cpuset"], "cpuset.cpus"), []byte(tt.cpus), 0))
			g, err := d.Create(t.Context(), semantic.MustPath("seeded"), nil)
			require.NoError(t, err)
			defer func() { require.NoError(t, g.Delete(context.Background(), nil)) }()
			got, err := h.root.ReadString("seeded/cpuset.cpus")
			require.NoError(t, err)
			assert.Equal(t, tt.cpus, got)
		})
	}
}
