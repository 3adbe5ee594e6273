package systemd

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// A test-only systemd manager: org.freedesktop.systemd1 exported with
// godbus on a private dbus-daemon, answering the calls the driver makes
// (bus.go) from an in-memory unit table, and failing the ones a test
// chooses: a D-Bus error, a job that ends otherwise than "done", a job
// whose JobRemoved never comes, a call that is never answered. Real
// systemd cannot be made to fail on cue; this peer can, so the driver's
// error paths run. Its units have no cgroups: their ControlGroup lies
// below a path that does not exist, so every cgroup read the driver makes
// for them finds nothing.

// fakeSystemd is the manager's state.
type fakeSystemd struct {
	addr string
	conn *dbus.Conn
	// cgBase prefixes every unit's ControlGroup; no such cgroup exists.
	cgBase string

	mu    sync.Mutex
	units map[string]*fakeUnit
	jobs  uint32
	// hung are start jobs accepted and never finished: unit -> job.
	hung   map[string]fakeJob
	calls  []fakeCall
	faults []*fakeFault
	// keepFailed leaves a failed unit loaded until ResetFailedUnit, as
	// systemd does until its garbage collection runs; without it a failed
	// unit with CollectMode=inactive-or-failed goes at once.
	keepFailed bool
	// release is closed when the fake stops: calls it holds unanswered
	// return then.
	release  chan struct{}
	stopOnce sync.Once
}

type fakeUnit struct {
	name  string
	state string
	path  dbus.ObjectPath
	props map[string]dbus.Variant
}

type fakeJob struct {
	id   uint32
	path dbus.ObjectPath
}

// fakeCall is a manager method call the fake took, with its unit.
type fakeCall struct{ Method, Unit string }

func (c fakeCall) String() string { return c.Method + " " + c.Unit }

// fakeFault is how the next matching call fails. One of err, result and
// hang is set.
type fakeFault struct {
	method string
	// unit limits the fault to one unit; "" is any.
	unit string
	// times the fault fires before it is spent; 0 is once.
	times int
	// err is the D-Bus error the call returns.
	err *dbus.Error
	// partial is, for SetUnitProperties with err, how many of the given
	// properties are set before the error: systemd sets them one by one,
	// and one it refuses half way leaves the earlier ones set.
	partial int
	// result ends the call's job with this result instead of "done".
	result string
	// hang: a job call is answered but its job never ends; any other call
	// is never answered.
	hang bool
	// hit, if set, is closed when a hanging call has done what it does
	// and goes quiet.
	hit chan struct{}
}

// hung arms a hang on the next call of method on unit and returns the
// channel closed once the call went quiet.
func (f *fakeSystemd) hangOn(method, unit string) <-chan struct{} {
	hit := make(chan struct{})
	f.fail(fakeFault{method: method, unit: unit, hang: true, hit: hit})
	return hit
}

// quiet reports a hanging call as gone quiet.
func (ft *fakeFault) quiet() {
	if ft.hit != nil {
		close(ft.hit)
	}
}

func dbusErr(name, format string, args ...any) *dbus.Error {
	return dbus.NewError(name, []any{fmt.Sprintf(format, args...)})
}

// startFakeSystemd starts a private dbus-daemon and the fake manager on
// it, with the root slice root active. Both stop when the test ends.
func startFakeSystemd(t *testing.T, root string) *fakeSystemd {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skipf("no dbus-daemon for the fake systemd peer: %v", err)
	}
	// A short directory of its own: a socket path has 108 bytes at most.
	dir, err := os.MkdirTemp("", "cgsem-test-fakebus-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	config := filepath.Join(dir, "bus.conf")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(busConfig, filepath.Join(dir, "bus"))), 0o600))
	cmd := exec.Command("dbus-daemon", "--config-file="+config, "--nofork", "--nopidfile", "--nosyslog", "--print-address")
	// The daemon dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	// A file, not a writer: no copying goroutine outlives a leak check.
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "dbus-daemon printed no address")

	f := &fakeSystemd{
		addr:    strings.TrimSpace(line),
		cgBase:  "/" + testenv.UniqueName(t) + "-no-such-cgroup",
		units:   map[string]*fakeUnit{},
		hung:    map[string]fakeJob{},
		release: make(chan struct{}),
	}
	f.conn, err = dbus.Connect(f.addr)
	require.NoError(t, err)
	t.Cleanup(f.stop)
	reply, err := f.conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	require.NoError(t, err)
	require.Equal(t, dbus.RequestNameReplyPrimaryOwner, reply)
	require.NoError(t, f.conn.ExportMethodTable(f.managerMethods(), managerPath, managerIface))
	require.NoError(t, f.conn.ExportSubtreeMethodTable(map[string]any{"Get": f.get, "GetAll": f.getAll}, managerPath, propsIface))
	f.mu.Lock()
	f.addUnit(root, "active", nil)
	f.mu.Unlock()
	return f
}

// setKeepFailed sets keepFailed.
func (f *fakeSystemd) setKeepFailed(keep bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepFailed = keep
}

// busConfig is the private bus: one socket, anyone may own and call
// anything (the peers are this test's).
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`

// stop releases the calls held unanswered and closes the connection.
func (f *fakeSystemd) stop() {
	f.stopOnce.Do(func() {
		close(f.release)
		f.conn.Close()
	})
}

// fail arms a fault.
func (f *fakeSystemd) fail(ft fakeFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &ft)
}

// take returns the fault for a call, spending one firing; f.mu is held.
func (f *fakeSystemd) take(method, unit string) *fakeFault {
	for i, ft := range f.faults {
		if ft.method == method && (ft.unit == "" || ft.unit == unit) {
			if ft.times <= 1 {
				f.faults = slices.Delete(f.faults, i, i+1)
			} else {
				ft.times--
			}
			return ft
		}
	}
	return &fakeFault{}
}

// record notes a call; f.mu is held.
func (f *fakeSystemd) record(method, unit string) {
	c := fakeCall{method, unit}
	f.calls = append(f.calls, c)
}

// saw returns the calls taken so far of the given methods.
func (f *fakeSystemd) saw(methods ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if slices.Contains(methods, c.Method) {
			out = append(out, c.String())
		}
	}
	return out
}

// loaded lists the units loaded, with their states.
func (f *fakeSystemd) loaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range f.units {
		out = append(out, u.name+" "+u.state)
	}
	slices.Sort(out)
	return out
}

// props returns a copy of a unit's set properties (nil when not loaded).
func (f *fakeSystemd) props(unit string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.units[unit]
	if u == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range u.props {
		out[k] = v.String()
	}
	return out
}

// unitPath is systemd's object path of a unit (bus_label_escape).
func unitPath(name string) dbus.ObjectPath {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return managerPath + "/unit/" + dbus.ObjectPath(b.String())
}

// addUnit loads a unit; f.mu is held.
func (f *fakeSystemd) addUnit(name, state string, props []property) *fakeUnit {
	u := &fakeUnit{name: name, state: state, path: unitPath(name), props: map[string]dbus.Variant{}}
	setProps(u, props)
	f.units[name] = u
	return u
}

// listProps add to their list, and an empty value clears it.
var listProps = map[string]bool{
	"DeviceAllow": true, "IOReadBandwidthMax": true, "IOWriteBandwidthMax": true,
	"IOReadIOPSMax": true, "IOWriteIOPSMax": true,
}

// setProps sets properties as systemd does, one by one. List values are
// kept typed, so that they go back out with their D-Bus signature.
func setProps(u *fakeUnit, props []property) {
	for _, p := range props {
		if !listProps[p.Name] {
			u.props[p.Name] = dbus.MakeVariant(p.Value.Value())
			continue
		}
		if p.Name == "DeviceAllow" {
			var add []deviceAllow
			_ = dbus.Store([]any{p.Value.Value()}, &add)
			var cur []deviceAllow
			if v, ok := u.props[p.Name]; ok && len(add) > 0 {
				cur = v.Value().([]deviceAllow)
			}
			u.props[p.Name] = dbus.MakeVariant(append(slices.Clone(cur), add...))
			continue
		}
		var add []ioLimit
		_ = dbus.Store([]any{p.Value.Value()}, &add)
		var cur []ioLimit
		if v, ok := u.props[p.Name]; ok && len(add) > 0 {
			cur = v.Value().([]ioLimit)
		}
		u.props[p.Name] = dbus.MakeVariant(append(slices.Clone(cur), add...))
	}
}

// signal is one to emit once f.mu is released.
type signal struct {
	member string
	body   []any
}

func (f *fakeSystemd) emit(sigs []signal) {
	for _, s := range sigs {
		_ = f.conn.Emit(managerPath, managerIface+"."+s.member, s.body...)
	}
}

// newJob numbers a job; f.mu is held.
func (f *fakeSystemd) newJob() fakeJob {
	f.jobs++
	return fakeJob{f.jobs, dbus.ObjectPath(fmt.Sprintf("%s/job/%d", managerPath, f.jobs))}
}

// remove unloads a unit; f.mu is held.
func (f *fakeSystemd) remove(u *fakeUnit, sigs *[]signal) {
	delete(f.units, u.name)
	*sigs = append(*sigs, signal{"UnitRemoved", []any{u.name, u.path}})
}

// failed puts a unit in the failed state, and collects it unless the
// fake keeps failed units; f.mu is held.
func (f *fakeSystemd) failed(u *fakeUnit, sigs *[]signal) {
	u.state = "failed"
	if !f.keepFailed && u.props["CollectMode"].Value() == "inactive-or-failed" {
		f.remove(u, sigs)
	}
}

// below lists the loaded units inside a slice: its child slices by name,
// and units whose Slice= is it; f.mu is held.
func (f *fakeSystemd) below(slice string) []*fakeUnit {
	prefix := strings.TrimSuffix(slice, sliceSuffix) + "-"
	var out []*fakeUnit
	for _, u := range f.units {
		if (strings.HasPrefix(u.name, prefix) && strings.HasSuffix(u.name, sliceSuffix)) || u.props["Slice"].Value() == slice {
			out = append(out, u)
		}
	}
	return out
}

// hold keeps a call unanswered until the fake stops.
func (f *fakeSystemd) hold(ft *fakeFault) *dbus.Error {
	ft.quiet()
	<-f.release
	return dbusErr("org.freedesktop.DBus.Error.NoReply", "the fake stopped")
}

func (f *fakeSystemd) managerMethods() map[string]any {
	return map[string]any{
		"Subscribe":   func() *dbus.Error { return nil },
		"Unsubscribe": func() *dbus.Error { return nil },
		"GetUnit": func(name string) (dbus.ObjectPath, *dbus.Error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if u := f.units[name]; u != nil {
				return u.path, nil
			}
			return "", dbusErr(errNoSuchUnit, "Unit %s not loaded.", name)
		},
		"ListUnitsByPatterns":   f.listUnits,
		"StartTransientUnit":    f.startTransient,
		"StopUnit":              f.stopUnit,
		"ResetFailedUnit":       f.resetFailed,
		"SetUnitProperties":     f.setProperties,
		"KillUnit":              func(name, who string, sig int32) *dbus.Error { return f.simple("KillUnit", name) },
		"FreezeUnit":            func(name string) *dbus.Error { return f.simple("FreezeUnit", name) },
		"ThawUnit":              func(name string) *dbus.Error { return f.simple("ThawUnit", name) },
		"AttachProcessesToUnit": func(name, sub string, pids []uint32) *dbus.Error { return f.simple("AttachProcessesToUnit", name) },
	}
}

// fnmatch matches a unit name against a pattern of "*" and "?" with no
// escapes (systemd's FNM_NOESCAPE: unit names hold backslashes).
func fnmatch(pattern, name string) bool {
	if pattern == "" {
		return name == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(name); i++ {
			if fnmatch(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	case '?':
		return name != "" && fnmatch(pattern[1:], name[1:])
	}
	return name != "" && name[0] == pattern[0] && fnmatch(pattern[1:], name[1:])
}

func (f *fakeSystemd) listUnits(states, patterns []string) ([]unitStatus, *dbus.Error) {
	f.mu.Lock()
	ft := f.take("ListUnitsByPatterns", strings.Join(patterns, " "))
	f.mu.Unlock()
	if ft.err != nil {
		return nil, ft.err
	}
	if ft.hang {
		return nil, f.hold(ft)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []unitStatus{}
	for _, name := range slices.Sorted(maps.Keys(f.units)) {
		u := f.units[name]
		if !slices.ContainsFunc(patterns, func(p string) bool { return fnmatch(p, name) }) {
			continue
		}
		desc, _ := u.props["Description"].Value().(string)
		out = append(out, unitStatus{Name: name, Description: desc, LoadState: "loaded", ActiveState: u.state,
			SubState: u.state, Path: u.path, JobPath: "/"})
	}
	return out, nil
}

func (f *fakeSystemd) startTransient(name, mode string, props []property, aux []struct {
	Name  string
	Props []property
}) (dbus.ObjectPath, *dbus.Error) {
	var sigs []signal
	defer func() { f.emit(sigs) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartTransientUnit", name)
	ft := f.take("StartTransientUnit", name)
	if ft.err != nil {
		return "", ft.err
	}
	if f.units[name] != nil {
		return "", dbusErr(errUnitExists, "Unit %s was already loaded or has a fragment file.", name)
	}
	u := f.addUnit(name, "active", props)
	job := f.newJob()
	switch {
	case ft.hang:
		u.state = "activating"
		f.hung[name] = job
		ft.quiet()
		return job.path, nil
	case ft.result != "":
		f.failed(u, &sigs)
		sigs = append([]signal{{"JobRemoved", []any{job.id, job.path, name, ft.result}}}, sigs...)
	default:
		sigs = append(sigs, signal{"JobRemoved", []any{job.id, job.path, name, "done"}})
	}
	return job.path, nil
}

func (f *fakeSystemd) stopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	var sigs []signal
	defer func() { f.emit(sigs) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StopUnit", name)
	ft := f.take("StopUnit", name)
	if ft.err != nil {
		return "", ft.err
	}
	u := f.units[name]
	if u == nil {
		return "", dbusErr(errNoSuchUnit, "Unit %s not loaded.", name)
	}
	// A stop replaces a start still running.
	if j, ok := f.hung[name]; ok {
		delete(f.hung, name)
		sigs = append(sigs, signal{"JobRemoved", []any{j.id, j.path, name, "canceled"}})
	}
	job := f.newJob()
	if ft.hang {
		u.state = "deactivating"
		ft.quiet()
		return job.path, nil
	}
	for _, in := range f.below(name) {
		if in.state != "failed" {
			f.remove(in, &sigs)
		}
	}
	switch {
	case ft.result != "":
		f.failed(u, &sigs)
		sigs = append(sigs, signal{"JobRemoved", []any{job.id, job.path, name, ft.result}})
	case u.state == "failed":
		// Stopping a failed unit leaves it failed.
		sigs = append(sigs, signal{"JobRemoved", []any{job.id, job.path, name, "done"}})
	default:
		f.remove(u, &sigs)
		sigs = append(sigs, signal{"JobRemoved", []any{job.id, job.path, name, "done"}})
	}
	return job.path, nil
}

func (f *fakeSystemd) resetFailed(name string) *dbus.Error {
	var sigs []signal
	defer func() { f.emit(sigs) }()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ResetFailedUnit", name)
	if ft := f.take("ResetFailedUnit", name); ft.err != nil {
		return ft.err
	}
	u := f.units[name]
	if u == nil {
		return dbusErr(errNoSuchUnit, "Unit %s not loaded.", name)
	}
	if u.state == "failed" {
		f.remove(u, &sigs)
	}
	return nil
}

func (f *fakeSystemd) setProperties(name string, runtime bool, props []property) *dbus.Error {
	f.mu.Lock()
	f.record("SetUnitProperties", name)
	ft := f.take("SetUnitProperties", name)
	u := f.units[name]
	switch {
	case u == nil:
		f.mu.Unlock()
		return dbusErr(errNoSuchUnit, "Unit %s not loaded.", name)
	case ft.err != nil:
		setProps(u, props[:min(ft.partial, len(props))])
		f.mu.Unlock()
		return ft.err
	}
	setProps(u, props)
	f.mu.Unlock()
	if ft.hang {
		// Set, but the reply is lost.
		return f.hold(ft)
	}
	return nil
}

// simple is a call on a loaded unit that changes nothing the fake shows.
func (f *fakeSystemd) simple(method, name string) *dbus.Error {
	f.mu.Lock()
	f.record(method, name)
	ft := f.take(method, name)
	u := f.units[name]
	f.mu.Unlock()
	switch {
	case ft.err != nil:
		return ft.err
	case ft.hang:
		return f.hold(ft)
	case u == nil:
		return dbusErr(errNoSuchUnit, "Unit %s not loaded.", name)
	case u.state != "active" && method != "KillUnit":
		return dbusErr(errUnitInactive, "Unit %s is not active.", name)
	}
	return nil
}

// unitDefaults are the Slice and Scope properties a unit shows before
// anything sets them (systemd lists every property in GetAll).
var unitDefaults = map[string]dbus.Variant{
	"MemoryMax": dbus.MakeVariant(uint64(infinity)), "MemoryHigh": dbus.MakeVariant(uint64(infinity)),
	"MemorySwapMax": dbus.MakeVariant(uint64(infinity)), "MemoryLow": dbus.MakeVariant(uint64(0)),
	"MemoryMin": dbus.MakeVariant(uint64(0)), "CPUWeight": dbus.MakeVariant(uint64(infinity)),
	"CPUQuotaPerSecUSec": dbus.MakeVariant(uint64(infinity)), "CPUQuotaPeriodUSec": dbus.MakeVariant(uint64(infinity)),
	"AllowedCPUs": dbus.MakeVariant([]byte{}), "AllowedMemoryNodes": dbus.MakeVariant([]byte{}),
	"IOWeight": dbus.MakeVariant(uint64(infinity)), "TasksMax": dbus.MakeVariant(uint64(infinity)),
	"DevicePolicy": dbus.MakeVariant("auto"), "DeviceAllow": dbus.MakeVariant([]deviceAllow{}),
	"IOReadBandwidthMax": dbus.MakeVariant([]ioLimit{}), "IOWriteBandwidthMax": dbus.MakeVariant([]ioLimit{}),
	"IOReadIOPSMax": dbus.MakeVariant([]ioLimit{}), "IOWriteIOPSMax": dbus.MakeVariant([]ioLimit{}),
	"Delegate": dbus.MakeVariant(false),
}

// properties are one interface's properties of the object at path.
func (f *fakeSystemd) properties(path dbus.ObjectPath, iface string) (map[string]dbus.Variant, *dbus.Error) {
	if path == managerPath {
		return map[string]dbus.Variant{"Version": dbus.MakeVariant("252.fake")}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var u *fakeUnit
	for _, x := range f.units {
		if x.path == path {
			u = x
		}
	}
	if u == nil {
		return nil, dbusErr("org.freedesktop.DBus.Error.UnknownObject", "Unknown object '%s'.", path)
	}
	switch iface {
	case unitIface:
		desc, _ := u.props["Description"].Value().(string)
		return map[string]dbus.Variant{
			"Id": dbus.MakeVariant(u.name), "Description": dbus.MakeVariant(desc),
			"LoadState": dbus.MakeVariant("loaded"), "ActiveState": dbus.MakeVariant(u.state),
		}, nil
	case sliceIface, "org.freedesktop.systemd1.Scope":
		out := maps.Clone(unitDefaults)
		maps.Copy(out, u.props)
		cg := ""
		if s, _ := u.props["Slice"].Value().(string); s != "" {
			own, _ := sliceCgroup(s)
			cg = f.cgBase + own + "/" + cgroupName(u.name)
		} else {
			own, _ := sliceCgroup(u.name)
			cg = f.cgBase + own
		}
		out["ControlGroup"] = dbus.MakeVariant(cg)
		return out, nil
	}
	return map[string]dbus.Variant{}, nil
}

func (f *fakeSystemd) getAll(msg dbus.Message, iface string) (map[string]dbus.Variant, *dbus.Error) {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	f.mu.Lock()
	ft := f.take("GetAll", string(path))
	f.mu.Unlock()
	if ft.err != nil {
		return nil, ft.err
	}
	return f.properties(path, iface)
}

func (f *fakeSystemd) get(msg dbus.Message, iface, name string) (dbus.Variant, *dbus.Error) {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	props, err := f.properties(path, iface)
	if err != nil {
		return dbus.Variant{}, err
	}
	v, ok := props[name]
	if !ok {
		return dbus.Variant{}, dbusErr(errUnknownProperty, "Unknown property %s.", name)
	}
	return v, nil
}

// openOnFake opens the driver on the fake's bus, on a root slice named
// after the test.
func openOnFake(t *testing.T) (*Driver, *fakeSystemd) {
	t.Helper()
	root := escapeSegment(testenv.UniqueName(t)) + sliceSuffix
	f := startFakeSystemd(t, root)
	d, err := Open(semantic.Options{Root: root, Settings: map[string]string{"bus": f.addr},
		Logger: hclog.New(&hclog.LoggerOptions{Name: "cgsem", Level: hclog.Warn, Output: t.Output()})})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d, f
}
