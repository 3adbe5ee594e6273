package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
	ocgroups "github.com/opencontainers/cgroups"
	ocdevices "github.com/opencontainers/cgroups/devices/config"
	ocsystemd "github.com/opencontainers/cgroups/systemd"
	"github.com/sirupsen/logrus"

	"github.com/cgsem/cgsem/internal/sdns"
	"github.com/cgsem/cgsem/semantic"
)

// systemdWorkloads measures a scope's create + configure + delete against
// a real systemd: the host's own, run as PID 1 of new namespaces below
// this run's root (internal/sdns), since this host's PID 1 is not systemd.
func systemdWorkloads(ctx context.Context, b *bench) []section {
	s := section{
		Title: "systemd scope lifecycle",
		Desc: "Create a transient scope holding one process with memory 256 MiB, tasks 100, CPU weight 50 and devices deny all + /dev/null, " +
			"wait for the job, then stop it and wait again; against systemd as PID 1 of a namespace container (hybrid mode).",
		Ref: "raw D-Bus",
	}
	if err := sdns.Check(sdns.Options{Mode: sdns.ModeHybrid}); err != nil {
		s.Notes = append(s.Notes, "skipped: "+err.Error())
		return []section{s}
	}
	in, err := sdns.Start(ctx, sdns.Options{Mode: sdns.ModeHybrid})
	if err != nil {
		s.Notes = append(s.Notes, "error: start systemd: "+err.Error())
		return []section{s}
	}
	defer func() {
		if err := in.Stop(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(b.out, "bench: stop the systemd container:", err)
		}
	}()
	if err := in.WaitReady(ctx); err != nil {
		s.Notes = append(s.Notes, "error: systemd not ready: "+err.Error())
		return []section{s}
	}
	pl := plan{warm: 5, rounds: 20, per: 12}.scaled(b.factor)
	pool := &sleeperPool{in: in}
	defer pool.stop()
	impls := systemdImpls(b, in, pool)
	s = timedSection(s.Title, s.Desc, s.Ref, run(ctx, pl, impls))
	if left, err := benchUnits(ctx, in); err != nil {
		s.Notes = append(s.Notes, "error: list units left behind: "+err.Error())
	} else if len(left) > 0 {
		s.Notes = append(s.Notes, "LEAK: units left behind: "+strings.Join(left, " "))
	}
	s.fasterBudget("cgsem systemd", 1, "opencontainers")
	s.Notes = append(s.Notes,
		"every iteration gets a fresh sleep process, started in the container before the timing (systemd refuses a scope without one); the stop kills it",
		"raw D-Bus (one scope): the shortest sequence for the job, a scope carrying the limits itself: StartTransientUnit with PIDs, MemoryMax, TasksMax, CPUWeight, DevicePolicy=strict and DeviceAllow=/dev/null rwm, wait for JobRemoved; StopUnit (SIGTERM), wait for JobRemoved; one connection, subscribed once",
		"raw D-Bus: the state-changing calls cgsem's driver makes, made by hand (the floor issue 5 names): StartTransientUnit of a slice with the limits and accounting, StartTransientUnit of a scope in it with the PID (Delegate, TasksMax=infinity), KillUnit SIGKILL, StopUnit of the slice; each job waited for",
		"cgsem systemd: Create, AddProcess (the host pid, as every cgsem call takes), Delete (Kill) through the driver opened with setting bus=ADDRESS",
		"opencontainers: systemd.NewLegacyManager (this host and the container are hybrid) with no cgroupfs paths, so it only talks D-Bus: Apply(pid), Set, Destroy; "+
			"its D-Bus connection is process-wide and found through DBUS_SYSTEM_BUS_ADDRESS, set to the container's bus; CPU as CPUShares 512, memory as MemoryLimit, the legacy names it uses on v1",
	)
	b.progress(s)
	return []section{s}
}

// sleeperPool starts sleep processes inside the container, outside the
// timing (one per iteration, in prep), and hands out their pids.
type sleeperPool struct {
	in    *sdns.Instance
	mu    sync.Mutex
	procs []*sdns.Process
	pids  [][2]int // in systemd's pid namespace, and on the host
}

// add starts one sleeper. Exec joins the groups of the container's
// PID 1, which systemd may remove and make again meanwhile (it does so in
// the cpu hierarchy as units with CPU settings come and go): the write
// then fails with ENODEV, and a second try finds the new group.
func (p *sleeperPool) add(ctx context.Context) error {
	var pr *sdns.Process
	var err error
	for range 5 {
		if pr, err = p.in.Exec(ctx, sdns.Command{Args: []string{"sleep", "100000"}}); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	pid, err := pr.PID(ctx)
	if err != nil {
		return err
	}
	host, err := pr.HostPID(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.pids = append(p.pids, [2]int{pid, host})
	p.mu.Unlock()
	return nil
}

// take hands out a sleeper: its pid as systemd sees it (what D-Bus calls
// take), and as this process sees it (what cgsem's AddProcess takes, as
// every cgsem call does).
func (p *sleeperPool) take() (ns, host int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pids) == 0 {
		return 0, 0, errors.New("sleeper pool is empty")
	}
	pid := p.pids[0]
	p.pids = p.pids[1:]
	return pid[0], pid[1], nil
}

// reap waits for the sleepers that have exited (a scope's stop kills
// its), so that they do not pile up as zombies.
func (p *sleeperPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.procs[:0]
	for _, pr := range p.procs {
		select {
		case <-pr.Done():
			pr.Wait()
		default:
			live = append(live, pr)
		}
	}
	p.procs = live
}

// stop kills what is left and reaps everything.
func (p *sleeperPool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.procs {
		pr.Kill()
		pr.Wait()
	}
	p.procs, p.pids = nil, nil
}

// benchUnits lists the units systemd still has loaded whose names come
// from this program ("bench" in any spelling of the run's name).
func benchUnits(ctx context.Context, in *sdns.Instance) ([]string, error) {
	conn, err := in.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var units []struct {
		Name, Desc, Load, Active, Sub, Follow string
		Path                                  dbus.ObjectPath
		JobID                                 uint32
		JobType                               string
		JobPath                               dbus.ObjectPath
	}
	obj := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	if err := obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.ListUnits", 0).Store(&units); err != nil {
		return nil, err
	}
	var out []string
	for _, u := range units {
		if strings.Contains(u.Name, "bench") {
			out = append(out, u.Name+" ("+u.Active+")")
		}
	}
	return out, nil
}

// unitProp is one (sv) of a D-Bus property array.
type unitProp struct {
	Name  string
	Value dbus.Variant
}

// rawSystemd makes the calls by hand on one connection.
type rawSystemd struct {
	conn    *dbus.Conn
	obj     dbus.BusObject
	signals chan *dbus.Signal
}

func openRawSystemd(ctx context.Context, in *sdns.Instance) (*rawSystemd, error) {
	conn, err := in.Connect(ctx)
	if err != nil {
		return nil, err
	}
	r := &rawSystemd{conn: conn, obj: conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1"), signals: make(chan *dbus.Signal, 256)}
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchInterface("org.freedesktop.systemd1.Manager"), dbus.WithMatchMember("JobRemoved")); err != nil {
		conn.Close()
		return nil, err
	}
	conn.Signal(r.signals)
	if err := r.obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

// wait reads JobRemoved signals until the one for job, and returns its
// result unless it is "done".
func (r *rawSystemd) wait(ctx context.Context, job dbus.ObjectPath) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sig, ok := <-r.signals:
			if !ok {
				return errors.New("D-Bus connection closed")
			}
			if sig.Name != "org.freedesktop.systemd1.Manager.JobRemoved" || len(sig.Body) < 4 {
				continue
			}
			if p, _ := sig.Body[1].(dbus.ObjectPath); p != job {
				continue
			}
			if res, _ := sig.Body[3].(string); res != "done" {
				return fmt.Errorf("job %s: %s", job, res)
			}
			return nil
		}
	}
}

func (r *rawSystemd) lifecycle(ctx context.Context, unit string, pid int) error {
	props := []unitProp{
		{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
		{"MemoryMax", dbus.MakeVariant(uint64(256 << 20))},
		{"TasksMax", dbus.MakeVariant(uint64(100))},
		{"CPUWeight", dbus.MakeVariant(uint64(v1Weight))},
		{"DevicePolicy", dbus.MakeVariant("strict")},
		{"DeviceAllow", dbus.MakeVariant([]struct{ Path, Perm string }{{"/dev/null", "rwm"}})},
	}
	if err := r.start(ctx, unit, props); err != nil {
		r.stop(ctx, unit)
		return err
	}
	return r.stop(ctx, unit)
}

// sliceAndScope makes the calls cgsem's driver makes for the same job, by
// hand: a slice carrying the limits, a scope in it holding the process,
// SIGKILL to the scope, the slice stopped (which stops the scope).
func (r *rawSystemd) sliceAndScope(ctx context.Context, slice, scope string, pid int) error {
	acct := []unitProp{
		{"MemoryAccounting", dbus.MakeVariant(true)},
		{"CPUAccounting", dbus.MakeVariant(true)},
		{"TasksAccounting", dbus.MakeVariant(true)},
		{"IOAccounting", dbus.MakeVariant(true)},
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}
	sliceProps := append([]unitProp{
		{"MemoryMax", dbus.MakeVariant(uint64(256 << 20))},
		{"TasksMax", dbus.MakeVariant(uint64(100))},
		{"CPUWeight", dbus.MakeVariant(uint64(v1Weight))},
		{"DevicePolicy", dbus.MakeVariant("strict")},
		{"DeviceAllow", dbus.MakeVariant([]struct{ Path, Perm string }{{"/dev/null", "rwm"}})},
	}, acct...)
	scopeProps := append([]unitProp{
		{"Slice", dbus.MakeVariant(slice)},
		{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
		{"Delegate", dbus.MakeVariant(true)},
		{"TasksMax", dbus.MakeVariant(^uint64(0))},
	}, acct...)
	if err := r.start(ctx, slice, sliceProps); err != nil {
		return err
	}
	if err := r.start(ctx, scope, scopeProps); err != nil {
		r.stop(ctx, slice)
		return err
	}
	if err := r.obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.KillUnit", 0, scope, "all", int32(9)).Err; err != nil {
		r.stop(ctx, slice)
		return fmt.Errorf("kill %s: %w", scope, err)
	}
	return r.stop(ctx, slice)
}

func (r *rawSystemd) start(ctx context.Context, unit string, props []unitProp) error {
	aux := []struct {
		Name  string
		Props []unitProp
	}{}
	var job dbus.ObjectPath
	if err := r.obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.StartTransientUnit", 0, unit, "fail", props, aux).Store(&job); err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	return r.wait(ctx, job)
}

func (r *rawSystemd) stop(ctx context.Context, unit string) error {
	var job dbus.ObjectPath
	if err := r.obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.StopUnit", 0, unit, "fail").Store(&job); err != nil {
		return fmt.Errorf("stop %s: %w", unit, err)
	}
	return r.wait(ctx, job)
}

func systemdImpls(b *bench, in *sdns.Instance, pool *sleeperPool) []impl {
	unit := func(who string, i int) string { return fmt.Sprintf("%s-%s-%d.scope", b.root.name, who, i) }
	prep := func(ctx context.Context, _ int) error {
		pool.reap()
		return pool.add(ctx)
	}
	var raw *rawSystemd
	// Slice names may not hold "-" but as a level separator.
	flat := strings.ReplaceAll(b.root.name, "-", "")
	var same *rawSystemd
	impls := []impl{{
		name: "raw D-Bus",
		setup: func(ctx context.Context) (err error) {
			same, err = openRawSystemd(ctx, in)
			return err
		},
		prep: prep,
		op: func(ctx context.Context, i int) error {
			pid, _, err := pool.take()
			if err != nil {
				return err
			}
			return same.sliceAndScope(ctx, fmt.Sprintf("%ssame%d.slice", flat, i), fmt.Sprintf("%s-same-%d.scope", b.root.name, i), pid)
		},
		teardown: func() error {
			if same != nil {
				return same.conn.Close()
			}
			return nil
		},
	}}
	impls = append(impls, impl{
		name: "raw D-Bus (one scope)",
		setup: func(ctx context.Context) (err error) {
			raw, err = openRawSystemd(ctx, in)
			return err
		},
		prep: prep,
		op: func(ctx context.Context, i int) error {
			pid, _, err := pool.take()
			if err != nil {
				return err
			}
			return raw.lifecycle(ctx, unit("raw", i), pid)
		},
		teardown: func() error {
			if raw != nil {
				return raw.conn.Close()
			}
			return nil
		},
	})

	cg := impl{name: "cgsem systemd"}
	d, skip := openDriver("systemd", semantic.Options{Settings: map[string]string{"bus": in.BusAddress()}})
	cg.skip = skip
	if d != nil {
		res := v1Resources()
		cg.prep = prep
		cg.op = func(ctx context.Context, i int) error {
			_, pid, err := pool.take()
			if err != nil {
				return err
			}
			p, err := semantic.NewPath(fmt.Sprintf("%s-cgsem-%d", b.root.name, i))
			if err != nil {
				return err
			}
			g, err := d.Create(ctx, p, res)
			if err != nil {
				return err
			}
			if err := g.AddProcess(ctx, pid); err != nil {
				g.Delete(ctx, &semantic.DeleteOptions{Kill: true})
				return err
			}
			return g.Delete(ctx, &semantic.DeleteOptions{Kill: true})
		}
		cg.teardown = d.Close
	}
	impls = append(impls, cg)

	oc := impl{name: "opencontainers"}
	if _, err := os.Stat("/run/systemd/private"); err == nil {
		// opencontainers tries systemd's private socket before the bus
		// address: here that would be the host's own systemd.
		oc.skip = "n/a: this host runs systemd, which opencontainers would reach instead of the container's"
	}
	ocRes := &ocgroups.Resources{
		Memory:    256 << 20,
		PidsLimit: ptr(int64(100)),
		CpuShares: 512,
		Devices: []*ocdevices.Rule{
			{Type: ocdevices.WildcardDevice, Major: ocdevices.Wildcard, Minor: ocdevices.Wildcard, Permissions: "rwm", Allow: false},
			{Type: ocdevices.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true},
		},
	}
	oc.setup = func(ctx context.Context) error {
		// Process-wide: opencontainers keeps one D-Bus connection in a
		// package variable and finds the bus only through the environment.
		if err := os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", in.BusAddress()); err != nil {
			return err
		}
		// It logs every freeze it skips through the global logrus logger.
		logrus.SetOutput(io.Discard)
		return nil
	}
	oc.prep = prep
	oc.op = func(ctx context.Context, i int) error {
		pid, _, err := pool.take()
		if err != nil {
			return err
		}
		cg := &ocgroups.Cgroup{Name: fmt.Sprintf("oc-%d", i), ScopePrefix: b.root.name, Parent: "system.slice", Systemd: true, Resources: ocRes}
		// An empty (not nil) path map: no cgroupfs writes, which would
		// name host paths and a pid from the container's namespace.
		m, err := ocsystemd.NewLegacyManager(cg, map[string]string{})
		if err != nil {
			return err
		}
		if err := m.Apply(pid); err != nil {
			m.Destroy()
			return err
		}
		if err := m.Set(ocRes); err != nil {
			m.Destroy()
			return err
		}
		return m.Destroy()
	}
	impls = append(impls, oc)
	return impls
}
