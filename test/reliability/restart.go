package reliability

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// The groups a restart child makes: two leaves below one level.
var (
	restartTop = semantic.MustPath("svc")
	restartWeb = semantic.MustPath("svc/web")
	restartDB  = semantic.MustPath("svc/db")
)

// Restart proves that a driver's state lives in the backend, not in the
// process: a child opens a driver on a fresh root, creates svc/web and
// svc/db with settings on every exact feature, starts a sleeper in
// svc/web, and exits without closing or deleting anything. A new driver
// in this process then opens both groups, reads back the same settings
// (through the driver and the harness's observer), lists the sleeper,
// receives frozen, thawed and empty events as it freezes, thaws and kills
// svc/web, and deletes everything. The sleeper, orphaned by the child,
// is reaped here (this process is made a child subreaper for the test)
// and must have died of SIGKILL.
func Restart(t *testing.T, tg Target) {
	if asChild(t, tg) {
		return
	}
	tg.require(t)
	if tg.NewRoot == nil || tg.Open == nil {
		t.Skip("the target has no NewRoot and Open: a second driver cannot be opened on the same root")
	}
	ctx := testContext(t)
	opts := tg.NewRoot(t)
	// The orphaned sleeper comes to this process, so it can be reaped and
	// its end seen.
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })

	outs := byCall(runChild(t, childSpec{Scenario: "restart", Root: opts.Root, Settings: opts.Settings}, childOpts{}))
	for _, call := range []string{"open", "create web", "create db", "start"} {
		require.Equal(t, "ok", outs[call].Kind, "child: %s: %s", call, outs[call].Err)
	}
	pid, err := strconv.Atoi(outs["start"].Value)
	require.NoError(t, err)
	var reaped bool
	t.Cleanup(func() {
		if !reaped {
			unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		}
	})

	d, err := tg.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	t.Cleanup(func() { tidy(t, d) })
	caps := d.Capabilities()
	webReq, dbReq, _ := tg.fullPair(caps)

	kids, err := d.Children(ctx, restartTop)
	require.NoError(t, err)
	require.Equal(t, []semantic.Path{restartDB, restartWeb}, kids)
	web, err := d.Open(ctx, restartWeb)
	require.NoError(t, err)
	db, err := d.Open(ctx, restartDB)
	require.NoError(t, err)
	for _, c := range []struct {
		g   semantic.Group
		req *semantic.Resources
	}{{web, webReq}, {db, dbReq}} {
		got, err := c.g.Resources(ctx)
		require.NoError(t, err)
		fields := c.req.Fields()
		want := c.req.Normalize(tg.pageSize())
		if d := diffResources(want, got, fields); d != "" {
			t.Fatalf("%s after the restart: %s", c.g.Path(), d)
		}
		if obs := tg.Harness.Observer; obs != nil {
			if d := diffResources(want, obs.Resources(t, d, c.g.Path(), fields), fields); d != "" {
				t.Fatalf("%s after the restart, as the observer sees it: %s", c.g.Path(), d)
			}
		}
	}
	pids, err := web.Processes(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{pid}, pids, "the sleeper the dead child started")

	evCtx, stop := context.WithCancel(ctx)
	defer stop()
	events, err := web.Events(evCtx)
	require.NoError(t, err)
	if exact(caps, semantic.Freeze) && exact(caps, semantic.EventsFrozen) {
		require.NoError(t, web.Freeze(ctx))
		requireEvent(t, events, semantic.EventFrozen)
		require.NoError(t, web.Thaw(ctx))
		requireEvent(t, events, semantic.EventThawed)
	}
	require.NoError(t, web.Kill(ctx))
	if exact(caps, semantic.EventsPopulated) {
		requireEvent(t, events, semantic.EventEmpty)
	}
	var ws unix.WaitStatus
	got, err := wait4(ctx, pid, &ws)
	require.NoError(t, err)
	reaped = true
	require.Equal(t, pid, got)
	require.True(t, ws.Signaled() && ws.Signal() == unix.SIGKILL, "the sleeper ended by %v", ws)

	top, err := d.Open(ctx, restartTop)
	require.NoError(t, err)
	require.NoError(t, top.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true}))
	_, err = d.Open(ctx, restartWeb)
	require.ErrorIs(t, err, semantic.ErrNotExist)
	kids, err = d.Children(ctx, semantic.Root)
	require.NoError(t, err)
	require.Empty(t, kids)
}

// requireEvent waits for an event of kind, skipping others.
func requireEvent(t *testing.T, ch <-chan semantic.Event, kind semantic.EventKind) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "the events channel closed while waiting for %s", kind)
			if ev.Kind == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event within 30s", kind)
		}
	}
}

// wait4 reaps pid, polling so ctx is honoured.
func wait4(ctx context.Context, pid int, ws *unix.WaitStatus) (int, error) {
	for {
		got, err := unix.Wait4(pid, ws, unix.WNOHANG, nil)
		if err != nil || got == pid {
			return got, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// restartChild is the process that dies untidily.
func restartChild(ctx context.Context, tg *Target, spec childSpec) ([]outcome, error) {
	var outs []outcome
	d, err := tg.Open(spec.options())
	outs = append(outs, outcomeOf("open", err))
	if err != nil {
		return outs, nil
	}
	webReq, dbReq, _ := tg.fullPair(d.Capabilities())
	web, err := d.Create(ctx, restartWeb, webReq)
	outs = append(outs, outcomeOf("create web", err))
	_, err = d.Create(ctx, restartDB, dbReq)
	outs = append(outs, outcomeOf("create db", err))
	if web == nil {
		return outs, nil
	}
	cmd := sleeperCommand()
	err = web.Start(ctx, cmd)
	o := outcomeOf("start", err)
	if err == nil {
		o.Value = strconv.Itoa(cmd.Process.Pid)
	}
	outs = append(outs, o)
	if err != nil && !errors.Is(err, semantic.ErrNotSupported) {
		return outs, fmt.Errorf("start: %w", err)
	}
	// No Wait, no Close, no Delete: the caller exits now.
	return outs, nil
}
