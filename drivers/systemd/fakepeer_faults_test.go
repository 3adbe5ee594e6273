package systemd

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// The driver against a systemd peer that fails on cue (fakepeer_test.go):
// each D-Bus error and job result reaches the caller as the right kind,
// naming the unit, the method or job, and the cause; a failed Create
// leaves no unit; a failed Apply leaves the properties as they were; a
// cancelled ctx ends every wait.

// fakeOp is one driver operation on a group g made beforehand (at
// "g"), with the unit the failure is expected to name.
type fakeOp struct {
	name string
	// setup prepares what the op needs (a scope for Kill) before the
	// fault is armed.
	setup func(t *testing.T, d *Driver, g semantic.Group)
	run   func(ctx context.Context, d *Driver, g semantic.Group) error
	// method is the manager call the op makes that the fault hits.
	method string
	// unit names the unit the call is about, from the driver's names.
	unit func(d *Driver) string
}

func sliceUnit(path string) func(d *Driver) string {
	return func(d *Driver) string { return mustSlice(d, semantic.MustPath(path)) }
}

func scopeUnit(path string) func(d *Driver) string {
	return func(d *Driver) string { s, _ := d.names.scope(semantic.MustPath(path)); return s }
}

// withScope starts g's scope with this process as its member: the fake
// moves nothing, it only records the scope.
func withScope(t *testing.T, d *Driver, g semantic.Group) {
	require.NoError(t, g.AddProcess(t.Context(), os.Getpid()))
}

// fakeOps are the operations whose manager calls the fault tests fail:
// the job calls (start, stop) and the plain ones.
func fakeOps() map[string]fakeOp {
	pids := &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(42))}}
	return map[string]fakeOp{
		"create": {
			run: func(ctx context.Context, d *Driver, _ semantic.Group) error {
				_, err := d.Create(ctx, semantic.MustPath("new"), pids)
				return err
			},
			method: "StartTransientUnit", unit: sliceUnit("new"),
		},
		"apply": {
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.Apply(ctx, pids) },
			method: "SetUnitProperties", unit: sliceUnit("g"),
		},
		"delete": {
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.Delete(ctx, nil) },
			method: "StopUnit", unit: sliceUnit("g"),
		},
		"freeze": {
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.Freeze(ctx) },
			method: "FreezeUnit", unit: sliceUnit("g"),
		},
		"thaw": {
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.Thaw(ctx) },
			method: "ThawUnit", unit: sliceUnit("g"),
		},
		"kill": {
			setup:  withScope,
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.Kill(ctx) },
			method: "KillUnit", unit: scopeUnit("g"),
		},
		"add-process": {
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.AddProcess(ctx, os.Getpid()) },
			method: "StartTransientUnit", unit: scopeUnit("g"),
		},
		"attach": {
			setup:  withScope,
			run:    func(ctx context.Context, _ *Driver, g semantic.Group) error { return g.AddProcess(ctx, os.Getpid()) },
			method: "AttachProcessesToUnit", unit: scopeUnit("g"),
		},
	}
}

// freezable lets the driver freeze on the fake: the host's layout is
// hybrid, where the driver refuses Freeze before any call, but the
// fake's manager answers FreezeUnit, and only the bus calls are tested.
func freezable(d *Driver) {
	d.caps[semantic.Freeze] = semantic.Capability{Feature: semantic.Freeze, Support: semantic.Exact}
}

// newFakeGroup opens the driver on a fake peer and creates "g".
func newFakeGroup(t *testing.T) (*Driver, *fakeSystemd, semantic.Group) {
	d, f := openOnFake(t)
	freezable(d)
	g, err := d.Create(t.Context(), semantic.MustPath("g"), nil)
	require.NoError(t, err)
	return d, f, g
}

// requireNames checks that an error's message names each part.
func requireNames(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		require.Contains(t, err.Error(), p, "the error names %q", p)
	}
}

// requireKind checks the error's kind: want, or none when want is nil.
func requireKind(t *testing.T, err error, want error) {
	t.Helper()
	var e *semantic.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, Name, e.Driver)
	if want == nil {
		require.Nil(t, semantic.Classify(err), "%v has no class", err)
		return
	}
	require.ErrorIs(t, err, want)
}

func TestFakePeerErrorKinds(t *testing.T) {
	errorsByName := []struct {
		name string
		want error
	}{
		{errAccessDenied, semantic.ErrPermission},
		{errAuthRequired, semantic.ErrPermission},
		{errInvalidArgs, semantic.ErrInvalid},
		{errNoSuchUnit, semantic.ErrNotExist},
		{errUnitMasked, semantic.ErrPermission},
		{errNotSupported, semantic.ErrNotSupported},
		{"org.freedesktop.DBus.Error.Failed", nil},
	}
	for opName, op := range fakeOps() {
		for _, e := range errorsByName {
			short := e.name[strings.LastIndexByte(e.name, '.')+1:]
			t.Run(opName+"/"+short, func(t *testing.T) {
				d, f, g := newFakeGroup(t)
				if op.setup != nil {
					op.setup(t, d, g)
				}
				unit := op.unit(d)
				had := f.loaded()
				f.fail(fakeFault{method: op.method, unit: unit, err: dbusErr(e.name, "planted %s refusal", short)})
				err := op.run(t.Context(), d, g)
				if e.name == errNoSuchUnit {
					switch op.method {
					case "StopUnit", "KillUnit":
						// A unit gone already is stopped, and has no
						// process to kill.
						require.NoError(t, err)
						return
					case "AttachProcessesToUnit":
						// The scope ended with its last process between
						// the look and the attach: it is looked at and
						// attached to (or started) again, once.
						require.NoError(t, err)
						require.Len(t, f.saw("AttachProcessesToUnit", "StartTransientUnit"), 4, "create, scope start, attach refused, attach again")
						return
					}
				}
				require.Error(t, err)
				requireKind(t, err, e.want)
				requireNames(t, err, unit, op.method, "planted "+short+" refusal")
				if e.want == nil {
					requireNames(t, err, e.name)
				}
				if op.method == "StartTransientUnit" {
					require.Equal(t, had, f.loaded(), "a failed start leaves no unit")
				}
			})
		}
	}
}

// rootOnly is what the fake holds when only the root slice is left.
func (f *fakeSystemd) rootOnly(d *Driver) []string {
	return []string{d.names.root + " active"}
}

// A name taken twice over is ErrExist: once is a leftover on its way out,
// retried.
func TestFakePeerUnitExists(t *testing.T) {
	for _, c := range []struct {
		name  string
		times int
		want  error
	}{
		{"once-retried", 1, nil},
		{"twice-refused", 2, semantic.ErrExist},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, f := openOnFake(t)
			unit := mustSlice(d, semantic.MustPath("x"))
			f.fail(fakeFault{method: "StartTransientUnit", unit: unit, times: c.times, err: dbusErr(errUnitExists, "Unit %s already exists.", unit)})
			_, err := d.Create(t.Context(), semantic.MustPath("x"), nil)
			if c.want == nil {
				require.NoError(t, err)
				require.Equal(t, []string{"StartTransientUnit " + unit, "StartTransientUnit " + unit}, f.saw("StartTransientUnit"))
				return
			}
			requireKind(t, err, c.want)
			requireNames(t, err, unit, "StartTransientUnit", "already exists")
			require.Empty(t, f.saw("StopUnit"), "a unit someone else holds is not stopped")
			require.Equal(t, f.rootOnly(d), f.loaded())
		})
	}
}

// jobResults are the results of a job that did not succeed, with their
// kinds.
var jobResults = []struct {
	result string
	want   error
}{
	{"failed", nil},
	{"dependency", nil},
	{"timeout", semantic.ErrBusy},
	{"canceled", semantic.ErrBusy},
}

func TestFakePeerJobResults(t *testing.T) {
	for _, r := range jobResults {
		t.Run("start/"+r.result, func(t *testing.T) {
			d, f := openOnFake(t)
			unit := mustSlice(d, semantic.MustPath("s"))
			f.setKeepFailed(true)
			f.fail(fakeFault{method: "StartTransientUnit", unit: unit, result: r.result})
			_, err := d.Create(t.Context(), semantic.MustPath("s"), nil)
			requireKind(t, err, r.want)
			requireNames(t, err, unit, "StartTransientUnit", "job", r.result)
			require.Equal(t, f.rootOnly(d), f.loaded(), "a failed start leaves no unit, failed ones included")
			require.Contains(t, f.saw("StopUnit"), "StopUnit "+unit, "the create stopped what it started")
		})
		t.Run("stop/"+r.result, func(t *testing.T) {
			d, f, g := newFakeGroup(t)
			unit := mustSlice(d, g.Path())
			f.setKeepFailed(true)
			f.fail(fakeFault{method: "StopUnit", unit: unit, result: r.result})
			err := g.Delete(t.Context(), nil)
			requireKind(t, err, r.want)
			requireNames(t, err, unit, "StopUnit", "job", r.result)
			require.Contains(t, f.saw("ResetFailedUnit"), "ResetFailedUnit "+unit, "a failed stop resets the unit")
			require.Equal(t, f.rootOnly(d), f.loaded(), "no failed unit keeps the name")
		})
	}
}

// A Create of several levels that fails at any level stops every level it
// started, deepest first, and leaves nothing loaded.
func TestFakePeerCreateUndo(t *testing.T) {
	p := semantic.MustPath("a/b/c")
	for level := 1; level <= p.Len(); level++ {
		for _, how := range []string{"error", "failed-job"} {
			t.Run(fmt.Sprintf("level%d/%s", level, how), func(t *testing.T) {
				d, f := openOnFake(t)
				f.setKeepFailed(true)
				units := make([]string, p.Len())
				for i := range units {
					units[i] = mustSlice(d, p.Prefix(i+1))
				}
				ft := fakeFault{method: "StartTransientUnit", unit: units[level-1]}
				if how == "error" {
					ft.err = dbusErr(errInvalidArgs, "planted refusal")
				} else {
					ft.result = "failed"
				}
				f.fail(ft)
				_, err := d.Create(t.Context(), p, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(7))}})
				require.Error(t, err)
				requireNames(t, err, units[level-1])
				require.Equal(t, f.rootOnly(d), f.loaded(), "nothing left of the create")
				var stops []string
				for i := level - 1; i >= 0; i-- {
					if i == level-1 && how == "error" {
						// Refused, so never started: its stop finds no
						// unit, which is fine either way.
						continue
					}
					stops = append(stops, "StopUnit "+units[i])
				}
				got := f.saw("StopUnit")
				require.Subset(t, got, stops)
				for i := 1; i < len(stops); i++ {
					require.Less(t, slices.Index(got, stops[i-1]), slices.Index(got, stops[i]), "deepest first")
				}
			})
		}
	}
}

// fakeRequests are two requests over every feature the driver sets
// exactly here, every value different between them.
func fakeRequests(caps semantic.Capabilities) (base, full *semantic.Resources) {
	base, full = &semantic.Resources{}, &semantic.Resources{}
	exact := func(f semantic.Feature) bool { return caps.Get(f).Support == semantic.Exact }
	if exact(semantic.MemoryMax) {
		base.Memory, full.Memory = &semantic.Memory{Max: ptr(256 * semantic.MiB)}, &semantic.Memory{Max: ptr(512 * semantic.MiB)}
	}
	if exact(semantic.MemoryLow) {
		base.Memory.Low, full.Memory.Low = ptr(16*semantic.MiB), ptr(32*semantic.MiB)
	}
	if exact(semantic.CPUWeight) {
		base.CPU, full.CPU = &semantic.CPU{Weight: ptr[uint64](200)}, &semantic.CPU{Weight: ptr[uint64](300)}
	}
	if exact(semantic.CPUMaxFeature) && base.CPU != nil {
		base.CPU.Max, full.CPU.Max = &semantic.CPUMax{CPUs: 0.5}, &semantic.CPUMax{CPUs: 1.5, Period: 50 * time.Millisecond}
	}
	if exact(semantic.PidsMax) {
		base.Pids, full.Pids = &semantic.Pids{Max: ptr(semantic.Count(100))}, &semantic.Pids{Max: ptr(semantic.Count(200))}
	}
	if exact(semantic.IOWeight) {
		base.IO, full.IO = &semantic.IO{Weight: ptr[uint64](50)}, &semantic.IO{Weight: ptr[uint64](150)}
	}
	if exact(semantic.DevicesFeature) {
		base.Devices = &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 3, r|w)}}
		full.Devices = &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{allow(c, 1, 5, r), allow(c, 1, 8, r|w)}}
	}
	return base, full
}

// An Apply that systemd refuses after setting some of its properties (at
// each position), or whose reply is lost to a cancelled ctx, leaves every
// property as it was: through the driver's read-back and in the peer.
func TestFakePeerApplyAllOrNothing(t *testing.T) {
	d, f := openOnFake(t)
	base, full := fakeRequests(d.Capabilities())
	require.NotEmpty(t, full.Fields())
	p := semantic.MustPath("aon")
	g, err := d.Create(t.Context(), p, base)
	require.NoError(t, err)
	unit := mustSlice(d, p)
	before, err := g.Resources(t.Context())
	require.NoError(t, err)
	raw := f.props(unit)
	plan, err := g.Plan(t.Context(), full)
	require.NoError(t, err)
	same := func(t *testing.T) {
		t.Helper()
		got, err := g.Resources(t.Context())
		require.NoError(t, err)
		require.Equal(t, before.String(), got.String(), "read back")
		require.Equal(t, raw, f.props(unit), "the peer's properties")
	}
	for k, step := range plan.Steps {
		t.Run(fmt.Sprintf("refused-after-%d", k), func(t *testing.T) {
			f.fail(fakeFault{method: "SetUnitProperties", unit: unit, partial: k, err: dbusErr(errInvalidArgs, "planted refusal of property %d", k)})
			err := g.Apply(t.Context(), full)
			requireKind(t, err, semantic.ErrInvalid)
			prop := step.Target[strings.LastIndexByte(step.Target, ' ')+1:]
			requireNames(t, err, unit, "SetUnitProperties", fmt.Sprintf("planted refusal of property %d", k), prop)
			same(t)
		})
	}
	t.Run("reply-lost", func(t *testing.T) {
		quiet := f.hangOn("SetUnitProperties", unit)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- g.Apply(ctx, full) }()
		<-quiet
		require.NotEqual(t, raw, f.props(unit), "the peer set the properties before it went quiet")
		cancel()
		err := <-done
		require.ErrorIs(t, err, context.Canceled)
		requireNames(t, err, unit, "SetUnitProperties")
		same(t)
	})
	t.Run("clean", func(t *testing.T) {
		require.NoError(t, g.Apply(t.Context(), full))
		got, err := g.Resources(t.Context())
		require.NoError(t, err)
		require.Equal(t, semantic.Merge(base, full).Normalize(d.host.pageSize).String(), onlyRequested(got, full).String())
	})
}

// onlyRequested drops from a read-back what req does not set (a
// read-back lists every field the driver supports).
func onlyRequested(got, req *semantic.Resources) *semantic.Resources {
	r := *got
	if req.Memory == nil {
		r.Memory = nil
	} else if r.Memory != nil {
		m := *r.Memory
		if req.Memory.High == nil {
			m.High = nil
		}
		if req.Memory.Low == nil {
			m.Low = nil
		}
		if req.Memory.Min == nil {
			m.Min = nil
		}
		if req.Memory.Swap == nil {
			m.Swap = nil
		}
		r.Memory = &m
	}
	if req.CPU == nil {
		r.CPU = nil
	} else if r.CPU != nil {
		c := *r.CPU
		if req.CPU.Max == nil {
			c.Max = nil
		}
		if req.CPU.Cpus == nil {
			c.Cpus = nil
		}
		if req.CPU.Mems == nil {
			c.Mems = nil
		}
		r.CPU = &c
	}
	if req.IO == nil {
		r.IO = nil
	} else if r.IO != nil && req.IO.Limits == nil {
		// Where IO limits are supported (unified mode) the read-back
		// lists them, empty when none is set.
		io := *r.IO
		io.Limits = nil
		r.IO = &io
	}
	if req.Pids == nil {
		r.Pids = nil
	}
	if req.Devices == nil {
		r.Devices = nil
	}
	return &r
}

// A ctx cancelled while the driver waits for a job that never ends, or a
// reply that never comes, ends the call with context.Canceled, leaves no
// waiter behind in the driver and no goroutine once it is closed.
func TestFakePeerCancel(t *testing.T) {
	ops := fakeOps()
	for _, c := range []struct {
		op   string
		job  bool
		left func(d *Driver) []string
	}{
		{op: "create", job: true},
		{op: "add-process", job: true},
		{op: "delete", job: true},
		{op: "apply"},
		{op: "freeze"},
		{op: "thaw"},
		{op: "kill"},
		{op: "attach"},
	} {
		t.Run(c.op, func(t *testing.T) {
			op := ops[c.op]
			baseline := runtime.NumGoroutine()
			d, f, g := newFakeGroup(t)
			if op.setup != nil {
				op.setup(t, d, g)
			}
			unit := op.unit(d)
			had := f.loaded()
			quiet := f.hangOn(op.method, unit)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- op.run(ctx, d, g) }()
			<-quiet
			if c.job {
				// Cancel once the driver waits for the job, not for the
				// reply that names it.
				waitFor(t, func() bool {
					d.bus.sig.mu.Lock()
					defer d.bus.sig.mu.Unlock()
					return len(d.bus.sig.jobs) > 0
				})
			}
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				// A liveness bound, not a timing assertion: the wait
				// ignored its ctx.
				t.Fatalf("%s did not return after its ctx was cancelled", c.op)
			}
			require.ErrorIs(t, err, context.Canceled)
			requireNames(t, err, unit, op.method)
			if c.job {
				requireNames(t, err, "job")
			}
			d.bus.sig.mu.Lock()
			waiting := len(d.bus.sig.jobs)
			d.bus.sig.mu.Unlock()
			require.Zero(t, waiting, "job waiters left in the driver")
			if c.op == "create" {
				require.Equal(t, had, f.loaded(), "the cancelled create stopped its unit")
			}
			require.NoError(t, d.Close())
			f.stop()
			requireGoroutines(t, baseline)
		})
	}
}

// A Create whose start job fails and whose undo systemd never answers
// still returns, once the undo's grace is over, with the start's failure;
// an Apply's restore likewise.
func TestFakePeerUndoUnanswered(t *testing.T) {
	d, f := openOnFake(t)
	d.undoGrace = 50 * time.Millisecond
	// a/b: a starts, b's start job fails, and the undo's stop of a is
	// never answered.
	p := semantic.MustPath("a/b")
	a, b := mustSlice(d, p.Prefix(1)), mustSlice(d, p)
	f.fail(fakeFault{method: "StartTransientUnit", unit: b, result: "failed"})
	quiet := f.hangOn("StopUnit", a)
	done := make(chan error, 1)
	go func() {
		_, err := d.Create(t.Context(), p, &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(5))}})
		done <- err
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		requireNames(t, err, b, "failed")
	case <-time.After(time.Minute):
		// A liveness bound, not a timing assertion.
		t.Fatal("Create did not return while its undo went unanswered")
	}
	requireClosed(t, quiet, "the undo never reached the stop that goes unanswered")

	g, err := d.Create(t.Context(), semantic.MustPath("kept"), nil)
	require.NoError(t, err)
	kept := mustSlice(d, semantic.MustPath("kept"))
	f.fail(fakeFault{method: "SetUnitProperties", unit: kept, err: dbusErr(errInvalidArgs, "planted refusal")})
	restore := f.hangOn("SetUnitProperties", kept)
	done = make(chan error, 1)
	go func() {
		done <- g.Apply(t.Context(), &semantic.Resources{Pids: &semantic.Pids{Max: ptr(semantic.Count(7))}})
	}()
	select {
	case err := <-done:
		requireKind(t, err, semantic.ErrInvalid)
	case <-time.After(time.Minute):
		t.Fatal("Apply did not return while its restore went unanswered")
	}
	requireClosed(t, restore, "the apply never tried the restore that goes unanswered")
}

// requireClosed fails unless ch is closed within a minute (a liveness
// bound, not a timing assertion).
func requireClosed(t *testing.T, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatal(msg)
	}
}

// waitFor polls cond, for at most a minute (a liveness bound).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}

// requireGoroutines waits until no more goroutines run than before.
func requireGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The driver's waiters are keyed by job: a JobRemoved for a job the
// driver does not wait for (another client's) changes nothing, and one
// that arrives before the reply naming its job is kept for it.
func TestFakePeerSignalsBeforeReply(t *testing.T) {
	d, f := openOnFake(t)
	// The fake sends JobRemoved before its reply: every create here took
	// the early path.
	for i := range 3 {
		_, err := d.Create(t.Context(), semantic.MustPath(fmt.Sprintf("e%d", i)), nil)
		require.NoError(t, err)
	}
	require.NoError(t, f.conn.Emit(managerPath, managerIface+".JobRemoved", uint32(999), dbus.ObjectPath(managerPath+"/job/999"), "other.service", "failed"))
	g, err := d.Open(t.Context(), semantic.MustPath("e0"))
	require.NoError(t, err)
	assert.NoError(t, g.Delete(t.Context(), nil))
	d.bus.sig.mu.Lock()
	defer d.bus.sig.mu.Unlock()
	assert.Empty(t, d.bus.sig.early, "no result kept once no call is in flight")
	assert.Empty(t, d.bus.sig.jobs)
}
