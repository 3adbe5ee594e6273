package systemd_test

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/cgsem/cgsem/drivers/systemd"
	"github.com/cgsem/cgsem/semantic"
)

// A libvirt-style group below machine.slice, with a memory limit and a
// device list, and a command started inside it. It needs a running
// systemd, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	d, err := systemd.Open(semantic.Options{Root: "machine.slice"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	limit := 512 * semantic.MiB
	g, err := d.Create(ctx, semantic.MustPath("libvirt/lxc/web1"), &semantic.Resources{
		Memory: &semantic.Memory{Max: &limit},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// machine-libvirt-lxc-web1.slice, MemoryMax=536870912,
	// DevicePolicy=strict, DeviceAllow=/dev/char/1:3 rwm.
	cmd := exec.Command("/bin/sleep", "60")
	if err := g.Start(ctx, cmd); err != nil {
		fmt.Println(err)
		return
	}
	// The sleep runs in machine-libvirt-lxc-web1.scope from its first
	// instruction on.
	_ = g.Delete(ctx, &semantic.DeleteOptions{Kill: true})
	_ = cmd.Wait()
}

// Capabilities say, feature by feature, what this systemd does here.
func ExampleDriver_Capabilities() {
	d, err := systemd.Open(semantic.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	fmt.Print(d.Capabilities())
}
