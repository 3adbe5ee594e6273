package devfilter

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// fuzzMaxRules keeps one input fast enough that the fuzzer explores widely.
const fuzzMaxRules = 48

// fuzzDevices decodes a device list: byte 0 picks the default, then each
// 4 bytes are a rule (effect and type, major, minor, access).
func fuzzDevices(data []byte) *semantic.Devices { return fuzzDevicesN(data, fuzzMaxRules) }

// fuzzDevicesN is fuzzDevices with at most limit rules.
func fuzzDevicesN(data []byte, limit int) *semantic.Devices {
	// Numbers a rule picks from: few enough that rules collide often,
	// with wildcards, neighbours and the extremes among them.
	majors := [8]int64{semantic.Wildcard, 0, 1, 2, 5, 136, semantic.MaxMajor, semantic.Wildcard}
	minors := [8]int64{semantic.Wildcard, 0, 1, 3, 5, 200, semantic.MaxMinor, semantic.Wildcard}
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	if len(data) == 0 {
		return d
	}
	if data[0]&1 == 1 {
		d.Default = semantic.AllowByDefault
	}
	data = data[1:]
	for len(data) >= 4 && len(d.Rules) < limit {
		r := semantic.DeviceRule{
			Allow:  data[0]&1 == 1,
			Type:   [3]semantic.DeviceType{semantic.AnyDevice, semantic.CharDevice, semantic.BlockDevice}[(data[0]>>1)%3],
			Major:  majors[data[1]%8],
			Minor:  minors[data[2]%8],
			Access: semantic.Access(data[3]%7 + 1),
		}
		if r.Type == semantic.AnyDevice {
			r.Major, r.Minor = semantic.Wildcard, semantic.Wildcard
		}
		d.Rules = append(d.Rules, r)
		data = data[4:]
	}
	return d
}

// FuzzCompile compares compiler+interpreter with semantic.Devices.Allows
// on the probe grid of random rule lists, optimized and not.
func FuzzCompile(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d := fuzzDevices(data)
		if err := d.Validate(); err != nil {
			t.Fatalf("fuzzDevices built an invalid list: %v", err)
		}
		if err := agreeBoth(d); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCompileLongRandomLists checks long lists, where the optimizer's
// index of earlier and later rules does real work, on deterministic random
// inputs drawn like the fuzz target's.
func TestCompileLongRandomLists(t *testing.T) {
	for seed := range uint64(10) {
		t.Run("seed "+strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			data := make([]byte, 1+4*300)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			d := fuzzDevicesN(data, 300)
			require.Len(t, d.Rules, 300)
			require.NoError(t, agreeBoth(d))
		})
	}
}
