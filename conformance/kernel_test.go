package conformance_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/semantic"
)

// The fake enforces nothing but kill, so the enforcement subtests' helper
// processes (a memory hog, a process moved in before it acts) would go
// untried until a real driver runs them. TestKernelEnforcement runs the
// memory and kill enforcement subtests against the kernel, through memV1:
// a test double over the cgroup v1 memory hierarchy, beneath this test's
// own memory cgroup. It is not a driver; it does only what those subtests
// need.

const kernelEnv = "CGSEM_CONFORMANCE_KERNEL"

func TestKernelEnforcement(t *testing.T) {
	if testing.Short() {
		t.Skip("touches the kernel")
	}
	if _, err := memV1Base(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelTarget$/^Enforce$/^(Memory|Kill)$", "-test.v")
	cmd.Env = append(os.Environ(), kernelEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, sub := range []string{"Memory", "Kill"} {
		require.Contains(t, string(out), "--- PASS: TestKernelTarget/Enforce/"+sub+" ", "%s", out)
	}
}

// TestKernelTarget is the suite on memV1; only TestKernelEnforcement runs it.
func TestKernelTarget(t *testing.T) {
	if os.Getenv(kernelEnv) == "" {
		t.Skip("run by TestKernelEnforcement")
	}
	var seq atomic.Int64
	base, err := memV1Base()
	require.NoError(t, err)
	conformance.Run(t, conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			root := filepath.Join(base, fmt.Sprintf("cgsem-test-conformance-%d-%d", os.Getpid(), seq.Add(1)))
			require.NoError(t, os.Mkdir(root, 0o755))
			t.Cleanup(func() {
				if err := os.Remove(root); err != nil {
					t.Errorf("remove test root: %v", err)
				}
			})
			return &memV1{root: root}
		},
		Leaks: func(d semantic.Driver) []string {
			var left []string
			filepath.WalkDir(d.(*memV1).root, func(path string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() && path != d.(*memV1).root {
					left = append(left, path)
				}
				return nil
			})
			return left
		},
		Enforces: []semantic.Feature{semantic.MemoryMax, semantic.Kill},
	})
}

// memV1Base is this process's own memory cgroup directory, or why the
// kernel test cannot run here.
func memV1Base() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("needs root")
	}
	const mount = "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(mount, "memory.limit_in_bytes")); err != nil {
		return "", fmt.Errorf("no cgroup v1 memory hierarchy at %s", mount)
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			return filepath.Join(mount, parts[2]), nil
		}
	}
	return "", errors.New("no memory line in /proc/self/cgroup")
}

type memV1 struct{ root string }

type memV1Group struct {
	d *memV1
	p semantic.Path
}

const memV1Name = "memv1-test"

func (d *memV1) Name() string { return memV1Name }

func (d *memV1) Capabilities() semantic.Capabilities {
	return semantic.Capabilities{
		semantic.MemoryMax: {Feature: semantic.MemoryMax, Support: semantic.Exact},
		semantic.Kill:      {Feature: semantic.Kill, Support: semantic.Exact},
	}
}

func (d *memV1) dir(p semantic.Path) string {
	return filepath.Join(d.root, filepath.FromSlash(p.String()))
}

func memV1Err(op string, p semantic.Path, err error) error {
	return semantic.Wrap(memV1Name, op, p.Display(), err)
}

func (d *memV1) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	if err := ctx.Err(); err != nil {
		return nil, memV1Err("create", p, err)
	}
	if p.IsRoot() {
		return nil, memV1Err("create", p, semantic.ErrInvalid)
	}
	if err := d.Capabilities().Check(memV1Name, res, false); err != nil {
		return nil, err
	}
	var made []string
	for i := 1; i <= p.Len(); i++ {
		dir := d.dir(p.Prefix(i))
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) && i < p.Len() {
			continue
		}
		if err != nil {
			removeAll(made)
			return nil, memV1Err("create", p, err)
		}
		made = append(made, dir)
	}
	g := &memV1Group{d: d, p: p}
	if err := g.Apply(ctx, res); err != nil {
		removeAll(made)
		return nil, err
	}
	return g, nil
}

func removeAll(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}

func (d *memV1) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	if _, err := os.Stat(d.dir(p)); err != nil {
		return nil, memV1Err("open", p, err)
	}
	return &memV1Group{d: d, p: p}, nil
}

func (d *memV1) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	ents, err := os.ReadDir(d.dir(p))
	if err != nil {
		return nil, memV1Err("children", p, err)
	}
	var out []semantic.Path
	for _, e := range ents {
		if e.IsDir() {
			if c, err := p.Join(e.Name()); err == nil {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func (d *memV1) Close() error { return nil }

func (g *memV1Group) Path() semantic.Path { return g.p }

func (g *memV1Group) file(name string) string { return filepath.Join(g.d.dir(g.p), name) }

func (g *memV1Group) exists(op string) error {
	if _, err := os.Stat(g.d.dir(g.p)); err != nil {
		return memV1Err(op, g.p, err)
	}
	return nil
}

func (g *memV1Group) Apply(ctx context.Context, res *semantic.Resources) error {
	if err := g.d.Capabilities().Check(memV1Name, res, false); err != nil {
		return err
	}
	if err := res.Validate(); err != nil {
		return err
	}
	if err := g.exists("apply"); err != nil {
		return err
	}
	if res == nil || res.Memory == nil || res.Memory.Max == nil {
		return nil
	}
	v := "-1"
	if !res.Memory.Max.IsUnlimited() {
		v = strconv.FormatUint(uint64(*res.Memory.Max), 10)
	}
	return memV1Err("set memory.limit_in_bytes", g.p, os.WriteFile(g.file("memory.limit_in_bytes"), []byte(v), 0))
}

func (g *memV1Group) Resources(ctx context.Context) (*semantic.Resources, error) {
	b, err := os.ReadFile(g.file("memory.limit_in_bytes"))
	if err != nil {
		return nil, memV1Err("read memory.limit_in_bytes", g.p, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, memV1Err("read memory.limit_in_bytes", g.p, err)
	}
	max := semantic.Bytes(n)
	if n >= 1<<62 {
		max = semantic.Unlimited
	}
	return &semantic.Resources{Memory: &semantic.Memory{Max: &max}}, nil
}

func (g *memV1Group) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	return nil, semantic.NotSupported(memV1Name, "plan", "test double")
}

func (g *memV1Group) AddProcess(ctx context.Context, pid int) error {
	if pid <= 0 {
		return memV1Err("add process", g.p, semantic.ErrInvalid)
	}
	return memV1Err("add process", g.p, os.WriteFile(g.file("cgroup.procs"), []byte(strconv.Itoa(pid)), 0))
}

func (g *memV1Group) AddThread(ctx context.Context, tid int) error {
	return semantic.NotSupported(memV1Name, semantic.Threads, "test double")
}

func (g *memV1Group) Start(ctx context.Context, cmd *exec.Cmd) error {
	return semantic.NotSupported(memV1Name, semantic.StartInside, "test double")
}

func (g *memV1Group) Processes(ctx context.Context) ([]int, error) {
	b, err := os.ReadFile(g.file("cgroup.procs"))
	if err != nil {
		return nil, memV1Err("read cgroup.procs", g.p, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, memV1Err("read cgroup.procs", g.p, err)
		}
		pids = append(pids, n)
	}
	slices.Sort(pids)
	return pids, nil
}

func (g *memV1Group) Stats(ctx context.Context) (*semantic.Stats, error) {
	b, err := os.ReadFile(g.file("memory.oom_control"))
	if err != nil {
		return nil, memV1Err("read memory.oom_control", g.p, err)
	}
	st := &semantic.Stats{Memory: &semantic.MemoryStats{}}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, memV1Err("read memory.oom_control", g.p, err)
			}
			st.Memory.OOMKill = &n
		}
	}
	return st, nil
}

func (g *memV1Group) Freeze(ctx context.Context) error {
	return semantic.NotSupported(memV1Name, semantic.Freeze, "test double")
}

func (g *memV1Group) Thaw(ctx context.Context) error {
	return semantic.NotSupported(memV1Name, semantic.Freeze, "test double")
}

// Kill signals what the group and its descendants hold until they are empty.
func (g *memV1Group) Kill(ctx context.Context) error {
	for {
		var pids []int
		err := filepath.WalkDir(g.d.dir(g.p), func(path string, e os.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(g.d.root, path)
			ps, err := (&memV1Group{d: g.d, p: semantic.MustPath(filepath.ToSlash(rel))}).Processes(ctx)
			pids = append(pids, ps...)
			return err
		})
		if err != nil {
			return memV1Err("kill", g.p, err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return memV1Err("kill", g.p, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (g *memV1Group) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	if err := ctx.Err(); err != nil {
		return memV1Err("delete", g.p, err)
	}
	if opts == nil {
		opts = &semantic.DeleteOptions{}
	}
	kids, err := g.d.Children(ctx, g.p)
	if err != nil {
		return err
	}
	if len(kids) > 0 && !opts.Recursive {
		return memV1Err("delete", g.p, semantic.ErrBusy)
	}
	if opts.Kill {
		if err := g.Kill(ctx); err != nil {
			return err
		}
	} else if pids, err := g.Processes(ctx); err != nil || len(pids) > 0 {
		return memV1Err("delete", g.p, errors.Join(err, semantic.ErrBusy))
	}
	for _, k := range kids {
		if err := (&memV1Group{d: g.d, p: k}).Delete(ctx, opts); err != nil {
			return err
		}
	}
	for {
		err := os.Remove(g.d.dir(g.p))
		if !errors.Is(err, syscall.EBUSY) || ctx.Err() != nil {
			return memV1Err("delete", g.p, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *memV1Group) Events(ctx context.Context) (<-chan semantic.Event, error) {
	return nil, semantic.NotSupported(memV1Name, semantic.EventsOOM, "test double")
}
