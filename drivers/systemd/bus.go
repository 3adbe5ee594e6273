package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"

	"github.com/cgsem/cgsem/semantic"
)

const (
	busName      = "org.freedesktop.systemd1"
	managerPath  = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface = "org.freedesktop.systemd1.Manager"
	unitIface    = "org.freedesktop.systemd1.Unit"
	sliceIface   = "org.freedesktop.systemd1.Slice"
	propsIface   = "org.freedesktop.DBus.Properties"
)

// bus is one connection to a systemd manager: calls, and the signals that
// say a job finished or a unit went away. Every call takes the caller's
// ctx; waits end with it, never on a timer.
type bus struct {
	conn *dbus.Conn
	mgr  dbus.BusObject
	log  hclog.Logger

	sig signals
}

// signals routes the manager's JobRemoved and UnitRemoved signals to the
// calls waiting for them. It is the connection's signal handler, called
// on the connection's reader goroutine, and never blocks it.
//
// A job's JobRemoved can only follow the reply that named the job, but the
// caller registers only after it has read that reply. So while any
// job-starting call is in flight, results nobody waits for yet are kept,
// and dropped once no call is in flight: nothing accumulates from the
// other jobs of the machine.
type signals struct {
	mu       sync.Mutex
	inflight int
	jobs     map[dbus.ObjectPath]chan string
	early    map[dbus.ObjectPath]string
	removed  map[string][]chan struct{}
}

func (s *signals) DeliverSignal(iface, member string, sig *dbus.Signal) {
	if iface != managerIface {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch member {
	case "JobRemoved":
		// JobRemoved(u id, o job, s unit, s result)
		if len(sig.Body) < 4 {
			return
		}
		job, _ := sig.Body[1].(dbus.ObjectPath)
		result, _ := sig.Body[3].(string)
		if ch, ok := s.jobs[job]; ok {
			ch <- result
			delete(s.jobs, job)
		} else if s.inflight > 0 {
			s.early[job] = result
		}
	case "UnitRemoved":
		// UnitRemoved(s id, o unit)
		if len(sig.Body) < 1 {
			return
		}
		name, _ := sig.Body[0].(string)
		for _, ch := range s.removed[name] {
			close(ch)
		}
		delete(s.removed, name)
	}
}

func (s *signals) begin() {
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
}

// end closes a call begun with begin; for a call that queued job, it
// returns the channel its result arrives on.
func (s *signals) end(job dbus.ObjectPath) <-chan string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	var ch chan string
	if job != "" {
		ch = make(chan string, 1)
		if r, ok := s.early[job]; ok {
			ch <- r
			delete(s.early, job)
		} else {
			s.jobs[job] = ch
		}
	}
	if s.inflight == 0 {
		clear(s.early)
	}
	return ch
}

// forget drops a job's waiter (its caller gave up).
func (s *signals) forget(job dbus.ObjectPath) {
	s.mu.Lock()
	delete(s.jobs, job)
	s.mu.Unlock()
}

// watchRemoved returns a channel closed when unit is removed (unloaded).
func (s *signals) watchRemoved(unit string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.removed[unit] = append(s.removed[unit], ch)
	return ch
}

func (s *signals) unwatchRemoved(unit string, ch <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.removed[unit]
	for i, c := range l {
		if c == ch {
			s.removed[unit] = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(s.removed[unit]) == 0 {
		delete(s.removed, unit)
	}
}

// busAddress resolves the "bus" setting: "" or "system" is the system bus,
// "user" the calling user's session bus (where the user manager is), and
// anything else a D-Bus address.
func busAddress(setting string) (string, error) {
	switch setting {
	case "", "system":
		if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
			return a, nil
		}
		return "unix:path=/run/dbus/system_bus_socket", nil
	case "user":
		if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
			return a, nil
		}
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			return "unix:path=" + d + "/bus", nil
		}
		return "", errors.New(`no user bus: neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set`)
	}
	if !strings.Contains(setting, ":") {
		return "", fmt.Errorf(`bus %q: want "system", "user" or a D-Bus address such as unix:path=/run/dbus/system_bus_socket`, setting)
	}
	return setting, nil
}

// dialBus connects, authenticates, says Hello and subscribes to the
// manager's signals.
func dialBus(address string, log hclog.Logger) (*bus, error) {
	b := &bus{log: log}
	b.sig.jobs = map[dbus.ObjectPath]chan string{}
	b.sig.early = map[dbus.ObjectPath]string{}
	b.sig.removed = map[string][]chan struct{}{}
	conn, err := dbus.Connect(address, dbus.WithSignalHandler(&b.sig))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", address, err)
	}
	b.conn = conn
	b.mgr = conn.Object(busName, managerPath)
	for _, member := range []string{"JobRemoved", "UnitRemoved"} {
		if err := conn.AddMatchSignal(dbus.WithMatchSender(busName), dbus.WithMatchInterface(managerIface),
			dbus.WithMatchMember(member), dbus.WithMatchObjectPath(managerPath)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("match %s signals: %w", member, err)
		}
	}
	// systemd sends its signals only while some client is subscribed.
	if err := b.mgr.Call(managerIface+".Subscribe", 0).Err; err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to systemd's signals: %w", err)
	}
	return b, nil
}

func (b *bus) close() error { return b.conn.Close() }

// call makes a method call on the manager and stores the reply. A
// failure names the method and the unit it was about.
func (b *bus) call(ctx context.Context, method string, out []any, args ...any) error {
	b.log.Trace("dbus call", "method", method, "args", fmt.Sprint(args...))
	c := b.mgr.CallWithContext(ctx, managerIface+"."+method, 0, args...)
	if c.Err != nil {
		if ctx.Err() != nil {
			return &callError{method: method, unit: unitArg(method, args), err: ctx.Err()}
		}
		return &callError{method: method, unit: unitArg(method, args), err: c.Err}
	}
	if len(out) > 0 {
		return c.Store(out...)
	}
	return nil
}

// unitArg is the unit a manager method is about: its first argument, but
// for the listing, whose arguments are patterns.
func unitArg(method string, args []any) string {
	if len(args) == 0 {
		return ""
	}
	if method == "ListUnitsByPatterns" {
		return fmt.Sprint(args[len(args)-1])
	}
	return fmt.Sprint(args[0])
}

// callError is a manager method call that failed: the D-Bus error (or
// the caller's ctx) with the method and unit it came from.
type callError struct {
	method, unit string
	err          error
}

func (e *callError) Error() string {
	if n := dbusErrorName(e.err); n != "" && !strings.Contains(e.err.Error(), n) {
		return fmt.Sprintf("%s %s: %v (%s)", e.method, e.unit, e.err, n)
	}
	return fmt.Sprintf("%s %s: %v", e.method, e.unit, e.err)
}

func (e *callError) Unwrap() error { return e.err }

// job makes a call that queues a job and waits for the job to finish.
// A job that ends otherwise than "done" is an error naming its result.
func (b *bus) job(ctx context.Context, method string, args ...any) error {
	b.sig.begin()
	var path dbus.ObjectPath
	err := b.call(ctx, method, []any{&path}, args...)
	ch := b.sig.end(path)
	if err != nil {
		return err
	}
	select {
	case result := <-ch:
		b.log.Trace("dbus job done", "method", method, "job", path, "result", result)
		if result != "done" {
			return &jobError{method: method, unit: fmt.Sprint(args[0]), job: path, result: result}
		}
		return nil
	case <-ctx.Done():
		b.sig.forget(path)
		return fmt.Errorf("%s %s: wait for job %s: %w", method, args[0], path, ctx.Err())
	}
}

// jobError is a job that did not end "done".
type jobError struct {
	method, unit string
	job          dbus.ObjectPath
	result       string
}

func (e *jobError) Error() string {
	return fmt.Sprintf("%s %s: job %s ended %q", e.method, e.unit, e.job, e.result)
}

// kind classifies a job's result (systemd's job_result_to_string): one
// replaced by a conflicting job, or that ran out of time, met a busy
// unit; "failed" and "dependency" (a unit it needs failed) have no class
// of their own, and the message says which it was.
func (e *jobError) kind() error {
	switch e.result {
	case "canceled", "timeout":
		return semantic.ErrBusy
	case "invalid":
		return semantic.ErrInvalid
	case "unsupported":
		return semantic.ErrNotSupported
	}
	return nil
}

func (b *bus) startTransient(ctx context.Context, unit string, props []property) error {
	return b.job(ctx, "StartTransientUnit", unit, "fail", props, []struct {
		Name  string
		Props []property
	}{})
}

func (b *bus) setProperties(ctx context.Context, unit string, props []property) error {
	// runtime=false: for a transient unit systemd writes the drop-in to
	// its transient directory either way, where daemon-reload reads it
	// again and from where it goes with the unit.
	return b.call(ctx, "SetUnitProperties", nil, unit, false, props)
}

func (b *bus) stop(ctx context.Context, unit string) error {
	return b.job(ctx, "StopUnit", unit, "fail")
}

func (b *bus) resetFailed(ctx context.Context, unit string) error {
	return b.call(ctx, "ResetFailedUnit", nil, unit)
}

func (b *bus) kill(ctx context.Context, unit string, signal int32) error {
	return b.call(ctx, "KillUnit", nil, unit, "all", signal)
}

func (b *bus) freeze(ctx context.Context, unit string) error {
	return b.call(ctx, "FreezeUnit", nil, unit)
}

func (b *bus) thaw(ctx context.Context, unit string) error {
	return b.call(ctx, "ThawUnit", nil, unit)
}

func (b *bus) attach(ctx context.Context, unit string, pids []uint32) error {
	return b.call(ctx, "AttachProcessesToUnit", nil, unit, "", pids)
}

// unitStatus is one row of ListUnitsByPatterns.
type unitStatus struct {
	Name, Description, LoadState, ActiveState, SubState, Following string
	Path                                                           dbus.ObjectPath
	JobID                                                          uint32
	JobType                                                        string
	JobPath                                                        dbus.ObjectPath
}

// listUnits lists the loaded units whose names match one of patterns
// (fnmatch, as systemd matches them).
func (b *bus) listUnits(ctx context.Context, patterns ...string) ([]unitStatus, error) {
	var out []unitStatus
	err := b.call(ctx, "ListUnitsByPatterns", []any{&out}, []string{}, patterns)
	return out, err
}

// unitState returns a loaded unit's ActiveState, or "" when no unit of
// that name is loaded. It loads nothing.
func (b *bus) unitState(ctx context.Context, unit string) (unitStatus, error) {
	us, err := b.listUnits(ctx, globEscape(unit))
	if err != nil {
		return unitStatus{}, err
	}
	for _, u := range us {
		if u.Name == unit {
			return u, nil
		}
	}
	return unitStatus{}, nil
}

// globEscape quotes a unit name for a pattern of ListUnitsByPatterns.
// systemd matches unit names with FNM_NOESCAPE (they hold backslashes,
// \x2d), and a valid unit name has no "*", "?" or "[": the name is its own
// pattern.
func globEscape(s string) string { return s }

// getAll reads every property of one interface of a unit object.
func (b *bus) getAll(ctx context.Context, path dbus.ObjectPath, iface string) (map[string]dbus.Variant, error) {
	b.log.Trace("dbus get properties", "path", path, "interface", iface)
	var out map[string]dbus.Variant
	c := b.conn.Object(busName, path).CallWithContext(ctx, propsIface+".GetAll", 0, iface)
	if c.Err != nil {
		err := c.Err
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &callError{method: "GetAll " + iface, unit: string(path), err: err}
	}
	return out, c.Store(&out)
}

// managerProperty reads one property of the manager.
func (b *bus) managerProperty(ctx context.Context, name string) (dbus.Variant, error) {
	b.log.Trace("dbus get manager property", "name", name)
	var v dbus.Variant
	c := b.mgr.CallWithContext(ctx, propsIface+".Get", 0, managerIface, name)
	if c.Err != nil {
		return v, c.Err
	}
	return v, c.Store(&v)
}

// waitGone waits until unit is no longer loaded: systemd unloads an
// inactive transient unit at its next garbage collection, and a unit of
// that name cannot be started as a new transient unit before.
func (b *bus) waitGone(ctx context.Context, unit string) error {
	ch := b.sig.watchRemoved(unit)
	defer b.sig.unwatchRemoved(unit, ch)
	st, err := b.unitState(ctx, unit)
	if err != nil || st.Name == "" {
		return err
	}
	if st.ActiveState == "failed" {
		// A failed unit stays until its failure is reset.
		if err := b.resetFailed(ctx, unit); err != nil && !isDBusError(err, errNoSuchUnit) {
			return err
		}
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// D-Bus error names the driver tells apart.
const (
	errNoSuchUnit      = "org.freedesktop.systemd1.NoSuchUnit"
	errUnitMasked      = "org.freedesktop.systemd1.UnitMasked"
	errUnitExists      = "org.freedesktop.systemd1.UnitExists"
	errUnitInactive    = "org.freedesktop.systemd1.UnitInactive"
	errNoSuchProcess   = "org.freedesktop.systemd1.NoSuchProcess"
	errPIDUnknown      = "org.freedesktop.DBus.Error.UnixProcessIdUnknown"
	errInvalidArgs     = "org.freedesktop.DBus.Error.InvalidArgs"
	errAccessDenied    = "org.freedesktop.DBus.Error.AccessDenied"
	errAuthRequired    = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
	errNotSupported    = "org.freedesktop.DBus.Error.NotSupported"
	errUnknownMethod   = "org.freedesktop.DBus.Error.UnknownMethod"
	errUnknownProperty = "org.freedesktop.DBus.Error.UnknownProperty"
	errPropertyRO      = "org.freedesktop.DBus.Error.PropertyReadOnly"
)

// dbusErrorName returns the name of a D-Bus error in err's chain, or "".
func dbusErrorName(err error) string {
	var e dbus.Error
	if errors.As(err, &e) {
		return e.Name
	}
	var pe *dbus.Error
	if errors.As(err, &pe) {
		return pe.Name
	}
	return ""
}

func isDBusError(err error, names ...string) bool {
	n := dbusErrorName(err)
	for _, want := range names {
		if n == want {
			return true
		}
	}
	return false
}

// classifyBus gives a D-Bus failure its semantic kind.
func classifyBus(err error) error {
	if k := semantic.Classify(err); k != nil {
		return k
	}
	var je *jobError
	if errors.As(err, &je) {
		return je.kind()
	}
	switch dbusErrorName(err) {
	case errNoSuchUnit, errNoSuchProcess, errPIDUnknown:
		return semantic.ErrNotExist
	case errUnitExists:
		return semantic.ErrExist
	case errInvalidArgs:
		return semantic.ErrInvalid
	case errAccessDenied, errAuthRequired, errUnitMasked:
		// A masked name is the administrator's refusal to let the unit
		// run: the caller lacks the permission, the message says whose.
		return semantic.ErrPermission
	case errNotSupported, errUnknownMethod, errUnknownProperty, errPropertyRO:
		return semantic.ErrNotSupported
	}
	return nil
}
