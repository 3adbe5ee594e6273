package reliability_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/statfile"
	"github.com/cgsem/cgsem/semantic"
)

// Fuzz targets for the internal/statfile parsers that had none
// (ParseUints, ParseDevice, ParseDeviceValues, ParseCpuacctUsageAll; the
// others are fuzzed in that package). Each is seeded with the captured
// kernel files of internal/statfile/testdata, and checks that whatever a
// parser accepts renders back, in the kernel's own form, to input it
// reads as the same values.

// statfileSeeds adds the captured files named to f's corpus.
func statfileSeeds(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("..", "..", "internal", "statfile", "testdata", n))
		require.NoError(f, err)
		f.Add(b)
	}
}

func FuzzParseUints(f *testing.F) {
	statfileSeeds(f, "v1-cpuacct.usage_percpu", "v1-cpuacct.usage", "v1-pids.max")
	f.Add([]byte("0 18446744073709551615\n1\t2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vs, err := statfile.ParseUints(data)
		if err != nil {
			require.ErrorIs(t, err, statfile.ErrFormat)
			return
		}
		require.Len(t, vs, len(bytes.Fields(data)), "one value per field of %q", data)
		var out bytes.Buffer
		for _, v := range vs {
			fmt.Fprintf(&out, "%d ", v)
		}
		again, err := statfile.ParseUints(out.Bytes())
		require.NoError(t, err)
		require.Equal(t, vs, again)
	})
}

func FuzzParseDevice(f *testing.F) {
	for _, s := range []string{"8:0", "254:16", "*:*", "1:*", "4095:1048575", "2147483647:0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		major, minor, err := statfile.ParseDevice(data)
		if err != nil {
			require.ErrorIs(t, err, statfile.ErrFormat)
			return
		}
		num := func(v int64) string {
			if v == semantic.Wildcard {
				return "*"
			}
			require.GreaterOrEqual(t, v, int64(0), "a device number from %q", data)
			return fmt.Sprint(v)
		}
		ma, mi, err := statfile.ParseDevice([]byte(num(major) + ":" + num(minor)))
		require.NoError(t, err)
		require.Equal(t, [2]int64{major, minor}, [2]int64{ma, mi})
	})
}

func FuzzParseDeviceValues(f *testing.F) {
	statfileSeeds(f, "v1-blkio.throttle.read_bps_device", "v1-blkio.throttle.write_iops_device")
	f.Add([]byte("8:0 1048576\n254:0 0\n\n  7:3\t18446744073709551615\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vs, err := statfile.ParseDeviceValues(data)
		if err != nil {
			require.ErrorIs(t, err, statfile.ErrFormat)
			return
		}
		var out bytes.Buffer
		for _, v := range vs {
			require.True(t, v.Major >= 0 && v.Minor >= 0, "a wildcard or negative device in %+v from %q", v, data)
			fmt.Fprintf(&out, "%d:%d %d\n", v.Major, v.Minor, v.Value)
		}
		again, err := statfile.ParseDeviceValues(out.Bytes())
		require.NoError(t, err)
		require.Equal(t, vs, again)
	})
}

func FuzzParseCpuacctUsageAll(f *testing.F) {
	statfileSeeds(f, "v1-cpuacct.usage_all")
	f.Add([]byte("cpu user system\n"))
	f.Add([]byte("cpu user system\n0 1 2\n1 18446744073709551615 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := statfile.ParseCpuacctUsageAll(data)
		if err != nil {
			require.ErrorIs(t, err, statfile.ErrFormat)
			return
		}
		out := bytes.NewBufferString("cpu user system\n")
		for _, r := range rows {
			require.GreaterOrEqual(t, r.CPU, 0, "a CPU number from %q", data)
			fmt.Fprintf(out, "%d %d %d\n", r.CPU, r.User, r.System)
		}
		again, err := statfile.ParseCpuacctUsageAll(out.Bytes())
		require.NoError(t, err)
		require.Equal(t, rows, again)
	})
}
