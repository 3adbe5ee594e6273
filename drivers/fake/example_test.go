package fake_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// The first user story: a container manager puts a web server under
// libvirt/lxc/web1, denies every device but /dev/null, caps memory at
// 512 MiB, starts the server inside and reads the settings back.
func Example() {
	ctx := context.Background()
	d := fake.New(fake.Options{})
	defer d.Close()

	null, err := semantic.ParseDeviceRule("/dev/null", true)
	if err != nil {
		fmt.Println(err)
		return
	}
	memMax, err := semantic.ParseBytes("512MiB")
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := d.Create(ctx, semantic.MustPath("libvirt/lxc/web1"), &semantic.Resources{
		Memory:  &semantic.Memory{Max: &memMax},
		Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{null}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	server := exec.Command("sleep", "1000")
	if err := g.Start(ctx, server); err != nil {
		fmt.Println(err)
		return
	}
	pids, _ := g.Processes(ctx)
	fmt.Println("server inside:", len(pids) == 1 && pids[0] == server.Process.Pid)

	res, _ := g.Resources(ctx)
	fmt.Println("memory max:", res.Memory.Max)
	fmt.Println("devices:", res.Devices.Default, res.Devices.Rules)
	fmt.Println("pids max:", res.Pids.Max, "(never set: the kernel's default)")

	// Delete refuses a group with processes unless asked to kill them.
	err = g.Delete(ctx, nil)
	fmt.Println("delete:", errors.Is(err, semantic.ErrBusy))
	err = g.Delete(ctx, &semantic.DeleteOptions{Kill: true})
	fmt.Println("delete with kill:", err, server.Wait())
	// Output:
	// server inside: true
	// memory max: 512MiB
	// devices: deny [allow c 1:3 rwm]
	// pids max: max (never set: the kernel's default)
	// delete: true
	// delete with kill: <nil> signal: killed
}

// Fault injection lets a test see Apply's all-or-nothing rule at work:
// the second write fails, and the first is undone.
func ExampleDriver_InjectFault() {
	ctx := context.Background()
	d := fake.New(fake.Options{})
	defer d.Close()
	g, _ := d.Create(ctx, semantic.MustPath("app"), nil)

	d.InjectFault(2, syscall.EBUSY)
	err := g.Apply(ctx, &semantic.Resources{
		Memory: &semantic.Memory{Max: new(semantic.GiB)},
		Pids:   &semantic.Pids{Max: new(semantic.Count(100))},
	})
	fmt.Println(err)
	fmt.Println("busy:", errors.Is(err, semantic.ErrBusy))

	res, _ := g.Resources(ctx)
	fmt.Println("memory max:", res.Memory.Max, "pids max:", res.Pids.Max)
	// Output:
	// cgsem/fake: set pids.max on app: device or resource busy
	// busy: true
	// memory max: max pids max: max
}

// InjectOOM stands in for the kernel's OOM killer so event handling can
// be tested anywhere.
func ExampleDriver_InjectOOM() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := fake.New(fake.Options{})
	defer d.Close()
	g, _ := d.Create(ctx, semantic.MustPath("batch/job7"), nil)
	events, _ := g.Events(ctx)

	_ = d.InjectOOM(g.Path())
	for range 2 {
		ev := <-events
		fmt.Println(ev.Group, ev.Kind, ev.Count)
	}
	st, _ := g.Stats(ctx)
	fmt.Println("oom kills:", *st.Memory.OOMKill)
	// Output:
	// batch/job7 oom 1
	// batch/job7 oom_kill 1
	// oom kills: 1
}

// A plan shows what Apply would write, with nothing changed; a feature the
// driver does not support is refused before anything happens.
func ExampleOptions_unsupported() {
	ctx := context.Background()
	d := fake.New(fake.Options{Unsupported: []semantic.Feature{semantic.MemorySwap}, PageSize: 4096})
	defer d.Close()
	g, _ := d.Create(ctx, semantic.MustPath("web"), nil)

	plan, _ := g.Plan(ctx, &semantic.Resources{
		Memory: &semantic.Memory{Max: new(semantic.Bytes(1000000))},
		CPU:    &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5}},
	})
	fmt.Print(plan)

	err := g.Apply(ctx, &semantic.Resources{Memory: &semantic.Memory{Swap: new(semantic.GiB)}})
	fmt.Println(errors.Is(err, semantic.ErrNotSupported), errors.Is(err, errors.ErrUnsupported))
	// Output:
	// write memory.max 999424
	// write cpu.max 150000 100000
	// true true
}
