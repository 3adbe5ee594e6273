package v2_test

import (
	"context"
	"fmt"
	"log"
	"os/exec"

	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/semantic"
)

// A delegated daemon manages groups below its own cgroup: it caps a job's
// memory, lets it open /dev/null and nothing else, and starts it inside.
// (It needs root and a cgroup2 hierarchy, so it is not run as a test.)
func Example() {
	ctx := context.Background()
	d, err := v2.New(semantic.Options{Root: semantic.RootSelf})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	fmt.Print(d.Capabilities())

	null, err := semantic.ParseDeviceRule("/dev/null", true)
	if err != nil {
		log.Fatal(err)
	}
	res := &semantic.Resources{Devices: &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{null}}}
	if d.Capabilities().Supports(semantic.MemoryMax) {
		limit := 512 * semantic.MiB
		res.Memory = &semantic.Memory{Max: &limit}
	}
	g, err := d.Create(ctx, semantic.MustPath("jobs/job1"), res)
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("/bin/true")
	if err := g.Start(ctx, cmd); err != nil {
		log.Fatal(err)
	}
	cmd.Wait()
	if err := g.Delete(ctx, &semantic.DeleteOptions{Kill: true}); err != nil {
		log.Fatal(err)
	}
}
