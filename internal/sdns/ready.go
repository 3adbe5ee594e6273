package sdns

import (
	"context"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	sdDest    = "org.freedesktop.systemd1"
	sdPath    = dbus.ObjectPath("/org/freedesktop/systemd1")
	sdManager = "org.freedesktop.systemd1.Manager"
)

// Connect opens a connection to the container's system bus, authenticated
// (EXTERNAL) and with Hello said. It closes when ctx ends, or on Close.
func (in *Instance) Connect(ctx context.Context) (*dbus.Conn, error) {
	return dbus.Connect(in.BusAddress(), dbus.WithContext(ctx))
}

// WaitReady waits until systemd answers on the system bus and has finished
// booting (SystemState running or degraded; the failed units of a
// degraded boot are logged). It fails at once if the container's PID 1
// exits, with the tail of the console log.
func (in *Instance) WaitReady(ctx context.Context) error {
	var conn *dbus.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	answered := false
	for {
		select {
		case <-in.exited:
			return fmt.Errorf("sdns: systemd exited (%s); console:\n%s", in.exitState, in.ConsoleTail(4096))
		default:
		}
		if conn == nil {
			// Fails until dbus.socket exists; the first connection
			// starts the bus daemon.
			if c, err := in.Connect(ctx); err == nil {
				conn = c
			}
		}
		if conn != nil {
			st, err := systemState(ctx, conn)
			switch {
			case err != nil && !answered:
				// systemd joins the bus shortly after the daemon runs.
			case err != nil:
				conn.Close()
				conn = nil
			default:
				if !answered {
					answered = true
					in.mu.Lock()
					in.timings.Bus = time.Since(in.t0)
					in.mu.Unlock()
					in.log.Debug("systemd answers on the bus", "state", st)
				}
				if st == "running" || st == "degraded" {
					in.mu.Lock()
					in.timings.Booted = time.Since(in.t0)
					t := in.timings
					in.mu.Unlock()
					if st == "degraded" {
						in.log.Warn("booted degraded", "failed", failedUnits(ctx, conn))
					}
					in.log.Info("systemd ready", "state", st, "exec", t.Exec, "bus", t.Bus, "booted", t.Booted)
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sdns: wait for systemd: %w; console:\n%s", ctx.Err(), in.ConsoleTail(2048))
		case <-in.exited:
		case <-tick.C:
		}
	}
}

func systemState(ctx context.Context, conn *dbus.Conn) (string, error) {
	var v dbus.Variant
	// NoAutoStart: before systemd is on the bus, the daemon must not try
	// to activate it.
	err := conn.Object(sdDest, sdPath).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", dbus.FlagNoAutoStart, sdManager, "SystemState").Store(&v)
	if err != nil {
		return "", err
	}
	s, _ := v.Value().(string)
	return s, nil
}

func failedUnits(ctx context.Context, conn *dbus.Conn) []string {
	var units []struct {
		Name, Description, Load, Active, Sub, Follower string
		Path                                           dbus.ObjectPath
		JobID                                          uint32
		JobType                                        string
		JobPath                                        dbus.ObjectPath
	}
	if err := conn.Object(sdDest, sdPath).CallWithContext(ctx, sdManager+".ListUnitsFiltered", 0, []string{"failed"}).Store(&units); err != nil {
		return []string{err.Error()}
	}
	var names []string
	for _, u := range units {
		names = append(names, u.Name)
	}
	return names
}
