package fake_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func TestCreateOpenChildren(t *testing.T) {
	tests := []struct {
		name     string
		existing []string // created first, in order
		create   string
		wantErr  error
		want     []string // every group afterwards
	}{
		{name: "top level", create: "a", want: []string{"a"}},
		{name: "nested makes every level", create: "libvirt/lxc/web1", want: []string{"libvirt", "libvirt/lxc", "libvirt/lxc/web1"}},
		{name: "below an existing level", existing: []string{"a/b"}, create: "a/b/c/d", want: []string{"a", "a/b", "a/b/c", "a/b/c/d"}},
		{name: "beside a sibling", existing: []string{"a/b"}, create: "a/c", want: []string{"a", "a/b", "a/c"}},
		{name: "leaf exists", existing: []string{"a/b"}, create: "a/b", wantErr: semantic.ErrExist, want: []string{"a", "a/b"}},
		{name: "intermediate exists as leaf", existing: []string{"a/b/c"}, create: "a", wantErr: semantic.ErrExist, want: []string{"a", "a/b", "a/b/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			for _, p := range tt.existing {
				create(t, d, p, nil)
			}
			g, err := d.Create(t.Context(), semantic.MustPath(tt.create), nil)
			if tt.wantErr != nil {
				requireKind(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.create, g.Path().String())
			}
			require.Equal(t, tt.want, allGroups(t, d))
			for _, p := range tt.want {
				o, err := d.Open(t.Context(), semantic.MustPath(p))
				require.NoError(t, err, p)
				require.True(t, o.Path().Equal(semantic.MustPath(p)))
			}
		})
	}
}

func TestChildrenSorted(t *testing.T) {
	d := newDriver(t, fake.Options{})
	for _, p := range []string{"b", "a/z", "c", "a/y", "a/x/deep"} {
		create(t, d, p, nil)
	}
	tests := []struct {
		name string
		path semantic.Path
		want []string
	}{
		{"root", semantic.Root, []string{"a", "b", "c"}},
		{"inner", semantic.MustPath("a"), []string{"a/x", "a/y", "a/z"}},
		{"leaf", semantic.MustPath("b"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kids, err := d.Children(t.Context(), tt.path)
			require.NoError(t, err)
			var got []string
			for _, k := range kids {
				got = append(got, k.String())
			}
			require.Equal(t, tt.want, got)
		})
	}
	_, err := d.Children(t.Context(), semantic.MustPath("nope"))
	requireKind(t, err, semantic.ErrNotExist)
}

func TestMissingGroup(t *testing.T) {
	d := newDriver(t, fake.Options{})
	_, err := d.Open(t.Context(), semantic.MustPath("a/b"))
	e := requireKind(t, err, semantic.ErrNotExist)
	require.Equal(t, "a/b", e.Group)
	require.Equal(t, "cgsem/fake: open on a/b: no such group", err.Error())
}

// groupOps calls every Group method once; each returns its error.
func groupOps(pid int) map[string]func(ctx context.Context, g semantic.Group) error {
	pids := new(semantic.Count(3))
	return map[string]func(ctx context.Context, g semantic.Group) error{
		"Apply": func(ctx context.Context, g semantic.Group) error {
			return g.Apply(ctx, &semantic.Resources{Pids: &semantic.Pids{Max: pids}})
		},
		"Resources": func(ctx context.Context, g semantic.Group) error { _, err := g.Resources(ctx); return err },
		"Plan": func(ctx context.Context, g semantic.Group) error {
			_, err := g.Plan(ctx, &semantic.Resources{Pids: &semantic.Pids{Max: pids}})
			return err
		},
		"AddProcess": func(ctx context.Context, g semantic.Group) error { return g.AddProcess(ctx, pid) },
		"AddThread":  func(ctx context.Context, g semantic.Group) error { return g.AddThread(ctx, pid) },
		"Start": func(ctx context.Context, g semantic.Group) error {
			cmd := exec.Command("true")
			err := g.Start(ctx, cmd)
			if err == nil {
				_ = cmd.Wait()
			}
			return err
		},
		"Processes": func(ctx context.Context, g semantic.Group) error { _, err := g.Processes(ctx); return err },
		"Stats":     func(ctx context.Context, g semantic.Group) error { _, err := g.Stats(ctx); return err },
		"Freeze":    func(ctx context.Context, g semantic.Group) error { return g.Freeze(ctx) },
		"Thaw":      func(ctx context.Context, g semantic.Group) error { return g.Thaw(ctx) },
		"Kill":      func(ctx context.Context, g semantic.Group) error { return g.Kill(ctx) },
		"Delete":    func(ctx context.Context, g semantic.Group) error { return g.Delete(ctx, nil) },
		"Events":    func(ctx context.Context, g semantic.Group) error { _, err := g.Events(ctx); return err },
	}
}

func TestDeletedGroup(t *testing.T) {
	cmd := sleeper(t)
	for name, op := range groupOps(cmd.Process.Pid) {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			g := create(t, d, "a/b", nil)
			other, err := d.Open(t.Context(), semantic.MustPath("a/b"))
			require.NoError(t, err)
			require.NoError(t, other.Delete(t.Context(), nil))
			if name == "AddThread" && !d.Capabilities().Supports(semantic.Threads) {
				requireKind(t, op(t.Context(), g), semantic.ErrNotSupported)
				return
			}
			requireKind(t, op(t.Context(), g), semantic.ErrNotExist)
			require.Equal(t, []string{"a"}, allGroups(t, d), "the failed call created nothing")
		})
	}
}

func TestHandleNamesThePath(t *testing.T) {
	d := newDriver(t, fake.Options{})
	g := create(t, d, "a", &semantic.Resources{Pids: &semantic.Pids{Max: new(semantic.Count(5))}})
	require.NoError(t, g.Delete(t.Context(), nil))
	create(t, d, "a", nil)
	// As a cgroupfs path would, the old handle reaches the new group, which
	// starts from the defaults.
	require.Equal(t, semantic.Count(semantic.Unlimited), *readBack(t, g).Pids.Max)
}

func TestRoot(t *testing.T) {
	d := newDriver(t, fake.Options{})
	cmd := sleeper(t)
	_, err := d.Create(t.Context(), semantic.Root, nil)
	requireKind(t, err, semantic.ErrInvalid)

	root, err := d.Open(t.Context(), semantic.Root)
	require.NoError(t, err)
	require.True(t, root.Path().IsRoot())
	allowed := map[string]bool{"AddProcess": true, "AddThread": true, "Start": true, "Processes": true, "Stats": true, "Events": true}
	for name, op := range groupOps(cmd.Process.Pid) {
		t.Run(name, func(t *testing.T) {
			err := op(t.Context(), root)
			if allowed[name] {
				if name == "AddThread" && !d.Capabilities().Supports(semantic.Threads) {
					requireKind(t, err, semantic.ErrNotSupported)
					return
				}
				require.NoError(t, err)
				return
			}
			e := requireKind(t, err, semantic.ErrInvalid)
			require.Equal(t, "/", e.Group)
		})
	}
	requireKind(t, d.InjectOOM(semantic.Root), semantic.ErrInvalid)
}

func TestDelete(t *testing.T) {
	type setup struct {
		children bool // a/b has a child a/b/c
		procs    bool // a/b holds a process
		deepProc bool // a/b/c holds a process
	}
	tests := []struct {
		name    string
		setup   setup
		opts    *semantic.DeleteOptions
		wantErr error
	}{
		{name: "empty", opts: nil},
		{name: "children refused", setup: setup{children: true}, wantErr: semantic.ErrBusy},
		{name: "children with kill only refused", setup: setup{children: true}, opts: &semantic.DeleteOptions{Kill: true}, wantErr: semantic.ErrBusy},
		{name: "children recursive", setup: setup{children: true}, opts: &semantic.DeleteOptions{Recursive: true}},
		{name: "processes refused", setup: setup{procs: true}, wantErr: semantic.ErrBusy},
		{name: "processes with recursive only refused", setup: setup{procs: true}, opts: &semantic.DeleteOptions{Recursive: true}, wantErr: semantic.ErrBusy},
		{name: "processes killed", setup: setup{procs: true}, opts: &semantic.DeleteOptions{Kill: true}},
		{name: "process below refused", setup: setup{children: true, deepProc: true}, opts: &semantic.DeleteOptions{Recursive: true}, wantErr: semantic.ErrBusy},
		{name: "subtree killed and removed", setup: setup{children: true, procs: true, deepProc: true}, opts: &semantic.DeleteOptions{Kill: true, Recursive: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			ctx := ctxFor(t)
			g := create(t, d, "a/b", nil)
			var cmds []*exec.Cmd
			if tt.setup.children {
				c := create(t, d, "a/b/c", nil)
				if tt.setup.deepProc {
					cmd := sleeper(t)
					require.NoError(t, c.AddProcess(ctx, cmd.Process.Pid))
					cmds = append(cmds, cmd)
				}
			}
			if tt.setup.procs {
				cmd := sleeper(t)
				require.NoError(t, g.AddProcess(ctx, cmd.Process.Pid))
				cmds = append(cmds, cmd)
			}
			before := allGroups(t, d)

			err := g.Delete(ctx, tt.opts)
			if tt.wantErr != nil {
				requireKind(t, err, tt.wantErr)
				require.Equal(t, before, allGroups(t, d), "nothing removed")
				for _, cmd := range cmds {
					require.Nil(t, cmd.ProcessState, "nothing killed")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, []string{"a"}, allGroups(t, d))
			for _, cmd := range cmds {
				require.Error(t, cmd.Wait(), "killed")
				require.Equal(t, "signal: killed", cmd.ProcessState.String())
			}
			requireKind(t, g.Delete(ctx, nil), semantic.ErrNotExist)
		})
	}
}

func TestCancelledContext(t *testing.T) {
	cmd := sleeper(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, op := range groupOps(cmd.Process.Pid) {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			g := create(t, d, "a", nil)
			require.ErrorIs(t, op(ctx, g), context.Canceled)
			require.Equal(t, []string{"a"}, allGroups(t, d))
			require.Empty(t, processes(t, g))
		})
	}
	t.Run("driver", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		_, err := d.Create(ctx, semantic.MustPath("a"), nil)
		require.ErrorIs(t, err, context.Canceled)
		_, err = d.Open(ctx, semantic.Root)
		require.ErrorIs(t, err, context.Canceled)
		_, err = d.Children(ctx, semantic.Root)
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, allGroups(t, d))
	})
}

func TestClose(t *testing.T) {
	d := fake.New(fake.Options{})
	g := create(t, d, "a", nil)
	cmd := sleeper(t)
	require.NoError(t, g.AddProcess(t.Context(), cmd.Process.Pid))
	events, err := g.Events(t.Context())
	require.NoError(t, err)

	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "closing twice is harmless")
	_, open := <-events
	require.False(t, open, "Close ends every event channel")
	requireKind(t, g.Apply(t.Context(), &semantic.Resources{}), semantic.ErrInvalid)
	_, err = d.Open(t.Context(), semantic.Root)
	requireKind(t, err, semantic.ErrInvalid)
	require.Nil(t, cmd.ProcessState, "Close leaves processes alone")
	require.NoError(t, cmd.Process.Signal(syscall.Signal(0)))
}
