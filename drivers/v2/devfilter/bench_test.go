package devfilter

import (
	"context"
	"strconv"
	"testing"

	"github.com/cgsem/cgsem/semantic"
)

// benchDevices builds a deny-by-default list of n distinct rules shaped
// like real ones: mostly single char devices, some whole majors, some
// block devices, an occasional deny inside an allowed range.
func benchDevices(n int) *semantic.Devices {
	d := &semantic.Devices{Default: semantic.DenyByDefault, Rules: make([]semantic.DeviceRule, 0, n)}
	for i := range n {
		r := semantic.DeviceRule{Allow: true, Type: semantic.CharDevice, Major: int64(1 + (i/64)%4000), Minor: int64(i % 64), Access: semantic.AllAccess}
		switch i % 10 {
		case 3:
			r.Minor = semantic.Wildcard
			r.Major = int64(100 + i%3900)
			r.Access = semantic.Read | semantic.Write
		case 6:
			r.Type = semantic.BlockDevice
			r.Access = semantic.Read
		case 9:
			r.Allow = false
			r.Access = semantic.Write
		}
		d.Rules = append(d.Rules, r)
	}
	return d
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1, 10, 50, 500} {
		d := benchDevices(n)
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var p *Program
			for b.Loop() {
				var err error
				if p, err = Compile(d); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Len()), "insns")
		})
	}
}

// BenchmarkLoadAttachDetach measures the kernel side on this host: a fresh
// load (the verifier's work) with attach and detach, and the attach and
// detach of a program the cache already holds.
func BenchmarkLoadAttachDetach(b *testing.B) {
	_, fd := testGroup(b)
	ctx := context.Background()
	p, err := Compile(benchDevices(10))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			l, err := Load(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			if err := Attach(fd, l); err != nil {
				b.Fatal(err)
			}
			if err := Detach(fd, l); err != nil {
				b.Fatal(err)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := NewCache(nil)
		defer cache.Close()
		hold, err := cache.Acquire(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Release(hold)
		for b.Loop() {
			l, err := cache.Acquire(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			if err := Attach(fd, l); err != nil {
				b.Fatal(err)
			}
			if err := Detach(fd, l); err != nil {
				b.Fatal(err)
			}
			if err := cache.Release(l); err != nil {
				b.Fatal(err)
			}
		}
	})
	if ids, err := Query(fd); err != nil || len(ids) != 0 {
		b.Fatalf("after the benchmark: attached %v, %v", ids, err)
	}
}
