package semantic_test

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

func ExampleParsePath() {
	p, err := semantic.ParsePath("libvirt/lxc/web1")
	fmt.Println(p.Segments(), p.Parent(), err)

	_, err = semantic.ParsePath("libvirt/memory.max")
	fmt.Println(errors.Is(err, semantic.ErrInvalid))
	fmt.Println(err)
	// Output:
	// [libvirt lxc web1] libvirt/lxc <nil>
	// true
	// cgsem: parse path on "libvirt/memory.max": segment 2: "memory.max" begins with "memory.", which names kernel attribute files
}

func ExampleParseBytes() {
	for _, s := range []string{"512MiB", "512M", "1.5G", "4096", "max", "512MB"} {
		b, err := semantic.ParseBytes(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s = %d bytes = %s\n", s, b, b)
	}
	// Output:
	// 512MiB = 536870912 bytes = 512MiB
	// 512M = 536870912 bytes = 512MiB
	// 1.5G = 1610612736 bytes = 1536MiB
	// 4096 = 4096 bytes = 4KiB
	// max = 18446744073709551615 bytes = max
	// cgsem: validate: size "512MB": suffix "MB" is ambiguous (decimal or binary?); use M or MiB, both 1024-based
}

func ExampleDevices_Allowed() {
	null, _ := semantic.ParseDeviceRule("c 1:3 rwm", true)
	noWrite, _ := semantic.ParseDeviceRule("c 1:3 w", false)
	d := &semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{null, noWrite}}

	// The later rule decides the write bit only; read and mknod stay allowed.
	fmt.Printf("/dev/null: %q\n", d.Allowed(semantic.CharDevice, 1, 3))
	fmt.Printf("/dev/zero: %q\n", d.Allowed(semantic.CharDevice, 1, 5))
	fmt.Println(d.Allows(semantic.CharDevice, 1, 3, semantic.Read|semantic.Write))
	// Output:
	// /dev/null: "rm"
	// /dev/zero: ""
	// false
}

func ExampleResources_Normalize() {
	max := 100*semantic.MiB + 123
	r := &semantic.Resources{
		Memory: &semantic.Memory{Max: &max},
		CPU:    &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.0 / 3}},
	}
	fmt.Println(r.Normalize(4096))
	// Output:
	// {memory.max=100MiB cpu.max=0.33333/100ms}
}

func ExampleWrap() {
	err := semantic.Wrap("v2", "set memory.max", "libvirt/lxc/web1", unix.EBUSY)
	fmt.Println(err)
	fmt.Println(errors.Is(err, semantic.ErrBusy), errors.Is(err, unix.EBUSY))

	err = semantic.Wrap("v1", "open", "web1", unix.ENOENT)
	fmt.Println(errors.Is(err, semantic.ErrNotExist), errors.Is(err, fs.ErrNotExist))
	// Output:
	// cgsem/v2: set memory.max on libvirt/lxc/web1: device or resource busy
	// true true
	// true true
}

func ExampleWeightToShares() {
	for _, w := range []uint64{1, 100, 10000} {
		s := semantic.WeightToShares(w)
		fmt.Println(w, "->", s, "->", semantic.SharesToWeight(s))
	}
	// Output:
	// 1 -> 10 -> 1
	// 100 -> 1024 -> 100
	// 10000 -> 102400 -> 10000
}
