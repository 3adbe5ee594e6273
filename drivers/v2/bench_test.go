package v2_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// BenchmarkCreateDevicesDelete is the driver's create + device filter +
// delete of one group, against the raw floor of the same work (mkdir,
// load, attach, detach, rmdir as bare system calls). With one list for
// every group the driver loads the program once; with a new list each
// time it loads every time, as the floor does.
func BenchmarkCreateDevicesDelete(b *testing.B) {
	testenv.RequireCgroup2(b)
	list := func(i int) *semantic.Devices {
		return &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: int64(i % (1 << 20)), Access: semantic.AllAccess},
		}}
	}
	for _, c := range []struct {
		name     string
		distinct bool
	}{{"SameRules", false}, {"DistinctRules", true}} {
		b.Run("Driver/"+c.name, func(b *testing.B) {
			d, _ := newHarness(b, nil).newDriver(b)
			ctx := context.Background()
			p := semantic.MustPath("bench")
			i := 0
			for b.Loop() {
				l := list(0)
				if c.distinct {
					l = list(i)
				}
				i++
				g, err := d.Create(ctx, p, &semantic.Resources{Devices: l})
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Delete(ctx, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("RawFloor", func(b *testing.B) {
		s := testenv.NewScratch(b, "")
		dir := filepath.Join(s.Dirs[""], "bench")
		ctx := context.Background()
		i := 0
		for b.Loop() {
			prog, err := devfilter.Compile(list(i))
			i++
			if err != nil {
				b.Fatal(err)
			}
			if err := unix.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			l, err := devfilter.Load(ctx, prog)
			if err != nil {
				b.Fatal(err)
			}
			if err := devfilter.Attach(fd, l); err != nil {
				b.Fatal(err)
			}
			if err := devfilter.Detach(fd, l); err != nil {
				b.Fatal(err)
			}
			l.Close()
			unix.Close(fd)
			if err := unix.Rmdir(dir); err != nil {
				b.Fatal(fmt.Errorf("rmdir: %w", err))
			}
		}
	})
}
