package sdns_test

import (
	"context"
	"fmt"
	"log"

	"github.com/godbus/dbus/v5"

	"github.com/cgsem/cgsem/internal/sdns"
)

// A test starts a container, reaches systemd on its bus from the host and
// asks it for a transient scope holding a process started inside. (Not
// run by go test: it needs root and a systemd package.)
func Example() {
	ctx := context.Background()
	if err := sdns.Check(sdns.Options{Mode: sdns.ModeHybrid}); err != nil {
		log.Fatal(err) // a test skips here
	}
	in, err := sdns.Start(ctx, sdns.Options{Mode: sdns.ModeHybrid})
	if err != nil {
		log.Fatal(err)
	}
	defer in.Stop(ctx)
	if err := in.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	conn, err := dbus.Connect(in.BusAddress())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	p, err := in.Exec(ctx, sdns.Command{Args: []string{"sleep", "600"}})
	if err != nil {
		log.Fatal(err)
	}
	pid, err := p.PID(ctx) // in systemd's pid namespace
	if err != nil {
		log.Fatal(err)
	}
	type property struct {
		Name  string
		Value dbus.Variant
	}
	props := []property{
		{"PIDs", dbus.MakeVariant([]uint32{uint32(pid)})},
		{"MemoryMax", dbus.MakeVariant(uint64(64 << 20))},
	}
	var job dbus.ObjectPath
	err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.StartTransientUnit", 0,
			"example.scope", "fail", props, []struct {
				Name  string
				Props []property
			}{}).Store(&job)
	if err != nil {
		log.Fatal(err)
	}
	// systemd reports the scope's ControlGroup relative to the container;
	// on the host it is here:
	fmt.Println(in.HostPath("memory", "/system.slice/example.scope"))
}
