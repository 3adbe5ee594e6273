package reliability

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// nobody is the unprivileged user the children run as.
const nobody = 65534

// NonRoot runs a driver as an unprivileged user (uid and gid 65534, in a
// child started with those credentials):
//
//   - Denied: on a root owned by root, every call that would change
//     something fails with ErrPermission, and its message says which file
//     or directory it could not change and that permission was denied
//     (an operation whose feature the driver does not support here fails
//     with ErrNotSupported instead, before it tries); reads work, and the
//     groups are exactly as they were.
//   - Delegated: with the root handed to that user as cgroup delegation
//     does (Target.Delegate), the user creates a group, sets each
//     delegated feature (read back as set), starts a process in it,
//     freezes and thaws it and deletes it with the process killed; the
//     features delegation does not grant fail with ErrPermission. With
//     Target.Contained the user's process runs in a group of the subtree
//     ("agent", made by root and left to it), and the user's start of a
//     process moves it from there.
func NonRoot(t *testing.T, tg Target) {
	if asChild(t, tg) {
		return
	}
	tg.require(t)
	if tg.NewRoot == nil || tg.Open == nil || tg.Dirs == nil {
		t.Skip("the target has no NewRoot, Open and Dirs")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as another user")
	}
	exe := publicCopy(t)
	attr := func() *syscall.SysProcAttr {
		return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	t.Run("Denied", func(t *testing.T) {
		ctx := testContext(t)
		opts := tg.NewRoot(t)
		d, err := tg.Open(opts)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		t.Cleanup(func() { tidy(t, d) })
		base, _, _ := tg.fullPair(d.Capabilities())
		pre, err := d.Create(ctx, semantic.MustPath("pre/kid"), base)
		require.NoError(t, err)
		fields := base.Fields()
		was, err := pre.Resources(ctx)
		require.NoError(t, err)
		var obsWas *semantic.Resources
		if obs := tg.Harness.Observer; obs != nil {
			obsWas = obs.Resources(t, d, pre.Path(), fields)
		}

		outs := runChild(t, childSpec{Scenario: "denied", Root: opts.Root, Settings: opts.Settings}, childOpts{exe: exe, attr: attr()})
		require.NotEmpty(t, outs)
		require.Equal(t, "ok", byCall(outs)["open driver"].Kind, "an unprivileged user can open a driver on a readable root")
		roots := tg.Dirs(d, semantic.Root)
		caps := d.Capabilities()
		for _, o := range outs {
			f, needs := callFeature(o.Call)
			switch {
			case needs && !caps.Supports(f):
				if o.Kind != semantic.ErrNotSupported.Error() {
					t.Errorf("%s: %s (%s), want ErrNotSupported: %s is %s here", o.Call, o.Kind, o.Err, f, caps.Get(f).Support)
				}
			case strings.HasPrefix(o.Call, "change "):
				if o.Kind != semantic.ErrPermission.Error() {
					t.Errorf("%s: %s (%s), want ErrPermission", o.Call, o.Kind, o.Err)
					continue
				}
				if !strings.Contains(o.Err, "permission denied") || !slices.ContainsFunc(roots, func(r string) bool { return strings.Contains(o.Err, r) }) {
					t.Errorf("%s: %q does not say which file or directory refused permission", o.Call, o.Err)
				}
			case strings.HasPrefix(o.Call, "read "), strings.HasPrefix(o.Call, "no-op "):
				if o.Kind != "ok" {
					t.Errorf("%s: %s; reading needs no write permission", o.Call, o.Err)
				}
			}
		}
		got, err := pre.Resources(ctx)
		require.NoError(t, err)
		if dd := diffResources(was, got, fields); dd != "" {
			t.Fatalf("the refused calls changed pre/kid: %s", dd)
		}
		if obs := tg.Harness.Observer; obs != nil {
			if dd := diffResources(obsWas, obs.Resources(t, d, pre.Path(), fields), fields); dd != "" {
				t.Fatalf("the refused calls changed pre/kid, as the observer sees it: %s", dd)
			}
		}
		kids, err := d.Children(ctx, semantic.Root)
		require.NoError(t, err)
		require.Equal(t, []semantic.Path{semantic.MustPath("pre")}, kids, "nothing was created")
	})
	t.Run("Delegated", func(t *testing.T) {
		if tg.Delegate == nil {
			t.Skip("the target cannot delegate a subtree")
		}
		ctx := testContext(t)
		opts := tg.NewRoot(t)
		d, err := tg.Open(opts)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		t.Cleanup(func() { tidy(t, d) })
		var agent []semantic.Path
		a := attr()
		if tg.Contained {
			g, err := d.Create(ctx, semantic.MustPath("agent"), nil)
			require.NoError(t, err)
			dirs := tg.Dirs(d, g.Path())
			require.Len(t, dirs, 1, "a contained target has one hierarchy")
			dir, err := os.Open(dirs[0])
			require.NoError(t, err)
			defer dir.Close()
			a.UseCgroupFD, a.CgroupFD = true, int(dir.Fd())
			agent = append(agent, g.Path())
		}
		tg.Delegate(t, d, nobody, nobody)
		outs := runChild(t, childSpec{Scenario: "delegated", Root: opts.Root, Settings: opts.Settings}, childOpts{exe: exe, attr: a})
		calls := byCall(outs)
		caps := d.Capabilities()
		for _, o := range outs {
			f, isField := strings.CutPrefix(o.Call, "set ")
			switch {
			case isField && slices.Contains(tg.Delegated, semantic.Feature(f)):
				if o.Kind != "ok" {
					t.Errorf("%s: %s; delegation grants it", o.Call, o.Err)
				}
			case isField:
				if o.Kind != semantic.ErrPermission.Error() || !strings.Contains(o.Err, "not permitted") && !strings.Contains(o.Err, "permission denied") {
					t.Errorf("%s: %s %s; delegation does not grant it: want ErrPermission saying so", o.Call, o.Kind, o.Err)
				}
			case strings.HasPrefix(o.Call, "read back "):
				if o.Kind != "ok" {
					t.Errorf("%s: %s", o.Call, o.Err)
				}
			default:
				if o.Kind != "ok" && (o.Call != "freeze" && o.Call != "thaw" || exact(caps, semantic.Freeze)) {
					t.Errorf("%s: %s", o.Call, o.Err)
				}
			}
		}
		for _, call := range []string{"open driver", "create job", "start", "processes", "delete job"} {
			require.Contains(t, calls, call)
		}
		require.Equal(t, calls["start"].Value, calls["processes"].Value, "the started process is the group's")
		kids, err := d.Children(ctx, semantic.Root)
		require.NoError(t, err)
		require.True(t, slices.EqualFunc(agent, kids, semantic.Path.Equal), "the delegated user removed what it made: the root has %v, want %v", kids, agent)
	})
}

// callFeature is the operation feature a denied call needs, if any.
func callFeature(call string) (semantic.Feature, bool) {
	switch call {
	case "change add thread":
		return semantic.Threads, true
	case "change start":
		return semantic.StartInside, true
	case "change freeze", "change thaw":
		return semantic.Freeze, true
	case "change kill":
		return semantic.Kill, true
	}
	return "", false
}

// deniedChild runs as nobody against a root it does not own.
func deniedChild(ctx context.Context, tg *Target, spec childSpec) ([]outcome, error) {
	if os.Geteuid() == 0 {
		return nil, fmt.Errorf("the denied child runs as root")
	}
	d, err := tg.Open(spec.options())
	outs := []outcome{outcomeOf("open driver", err)}
	if err != nil {
		return outs, nil
	}
	add := func(call string, err error) { outs = append(outs, outcomeOf(call, err)) }
	_, full, _ := tg.fullPair(d.Capabilities())
	pre, err := d.Open(ctx, semantic.MustPath("pre"))
	add("read open pre", err)
	kid, err := d.Open(ctx, semantic.MustPath("pre/kid"))
	add("read open pre/kid", err)
	if pre == nil || kid == nil {
		return outs, nil
	}
	_, err = d.Create(ctx, semantic.MustPath("mine"), nil)
	add("change create mine", err)
	_, err = d.Create(ctx, semantic.MustPath("pre/kid/mine"), nil)
	add("change create pre/kid/mine", err)
	for _, f := range full.Fields() {
		// A request that changes nothing needs no permission (one memory
		// node: cpu.mems cannot differ).
		call := "change set "
		if plan, err := kid.Plan(ctx, only(full, f)); err == nil && len(plan.Steps) == 0 {
			call = "no-op set "
		}
		add(call+string(f), kid.Apply(ctx, only(full, f)))
	}
	add("change add process", kid.AddProcess(ctx, os.Getpid()))
	add("change add thread", kid.AddThread(ctx, unix.Gettid()))
	cmd := sleeperCommand()
	err = kid.Start(ctx, cmd)
	if err == nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
	add("change start", err)
	if exact(d.Capabilities(), semantic.Freeze) {
		add("change freeze", kid.Freeze(ctx))
		add("change thaw", kid.Thaw(ctx))
	}
	add("change kill", kid.Kill(ctx))
	add("change delete pre/kid", kid.Delete(ctx, nil))
	add("change delete pre recursive", pre.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true}))
	_, err = kid.Resources(ctx)
	add("read resources", err)
	_, err = kid.Processes(ctx)
	add("read processes", err)
	_, err = kid.Stats(ctx)
	add("read stats", err)
	_, err = d.Children(ctx, semantic.MustPath("pre"))
	add("read children", err)
	_, err = kid.Plan(ctx, full)
	add("read plan", err)
	return outs, nil
}

// delegatedChild runs as nobody in a root delegated to it.
func delegatedChild(ctx context.Context, tg *Target, spec childSpec) ([]outcome, error) {
	if os.Geteuid() == 0 {
		return nil, fmt.Errorf("the delegated child runs as root")
	}
	d, err := tg.Open(spec.options())
	outs := []outcome{outcomeOf("open driver", err)}
	if err != nil {
		return outs, nil
	}
	add := func(call string, err error) { outs = append(outs, outcomeOf(call, err)) }
	g, err := d.Create(ctx, semantic.MustPath("job"), nil)
	add("create job", err)
	if err != nil {
		return outs, nil
	}
	base, full, _ := tg.fullPair(d.Capabilities())
	for _, f := range full.Fields() {
		// From the base, then to the full value: a change either way.
		part := only(full, f)
		if err := g.Apply(ctx, only(base, f)); err != nil {
			add("set "+string(f), err)
			continue
		}
		err := g.Apply(ctx, part)
		add("set "+string(f), err)
		if err != nil {
			continue
		}
		got, err := g.Resources(ctx)
		if err == nil {
			if dd := diffResources(part.Normalize(tg.pageSize()), got, []semantic.Feature{f}); dd != "" {
				err = fmt.Errorf("read back after set: %s", dd)
			}
		}
		add("read back "+string(f), err)
	}
	cmd := sleeperCommand()
	err = g.Start(ctx, cmd)
	o := outcomeOf("start", err)
	if err == nil {
		o.Value = strconv.Itoa(cmd.Process.Pid)
		go cmd.Wait()
	}
	outs = append(outs, o)
	pids, err := g.Processes(ctx)
	o = outcomeOf("processes", err)
	o.Value = strings.Trim(fmt.Sprint(pids), "[]")
	outs = append(outs, o)
	if exact(d.Capabilities(), semantic.Freeze) {
		add("freeze", g.Freeze(ctx))
		add("thaw", g.Thaw(ctx))
	}
	add("delete job", g.Delete(ctx, &semantic.DeleteOptions{Kill: true}))
	return outs, nil
}

// only is r with every field but f cleared, except that a swap limit
// keeps its memory limit: v1 has no swap limit without one.
func only(r *semantic.Resources, f semantic.Feature) *semantic.Resources {
	out := r.Only(f)
	if f == semantic.MemorySwap {
		out.Memory.Max = r.Memory.Max
	}
	return out
}
