package reliability_test

import (
	"testing"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
	"github.com/cgsem/cgsem/test/reliability"
)

// The checks that make sense without a kernel run on the fake: it is the
// specification, so they must hold there first.

func fakeTarget() reliability.Target {
	cpus, mems := semantic.CPUSet{0, 1, 2, 3}, semantic.CPUSet{0, 1}
	return reliability.Target{
		Harness: conformance.Harness{
			NewDriver: func(t *testing.T) semantic.Driver {
				d := fake.New(fake.Options{PageSize: 4096, HostCPUs: cpus, HostMems: mems})
				t.Cleanup(func() { d.Close() })
				return d
			},
			InjectFault: func(d semantic.Driver, nth int, err error) bool {
				d.(*fake.Driver).InjectFault(nth, err)
				return true
			},
			PageSize:      4096,
			CPUs:          cpus,
			Mems:          mems,
			IODevice:      &[2]int64{8, 0},
			HugePageSizes: []semantic.Bytes{2 * semantic.MiB},
		},
	}
}

func TestFakeFaultMatrix(t *testing.T) { reliability.FaultMatrix(t, fakeTarget()) }

func TestFakeConcurrency(t *testing.T) { reliability.Concurrency(t, fakeTarget()) }
