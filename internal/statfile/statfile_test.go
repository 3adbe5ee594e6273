package statfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseFlatCaptured(t *testing.T) {
	tests := []struct {
		file string
		want map[string]uint64 // a subset of the keys
		keys int
	}{
		{"v1-memory.stat", map[string]uint64{"rss": 598016, "cache": 0, "total_inactive_anon": 577536,
			"hierarchical_memory_limit": 67108864, "hierarchical_memsw_limit": 9223372036854771712}, 42},
		{"v1-memory.oom_control", map[string]uint64{"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 0}, 3},
		{"v1-memory.oom_control-killed", map[string]uint64{"oom_kill": 1}, 3},
		{"v1-cpu.stat", map[string]uint64{"nr_periods": 13, "nr_throttled": 1, "throttled_time": 8959153}, 5},
		{"v1-cpuacct.stat", map[string]uint64{"user": 38, "system": 9}, 2},
		{"v1-pids.events", map[string]uint64{"max": 0}, 1},
		{"v2-cpu.stat", map[string]uint64{"usage_usec": 482395, "user_usec": 383457, "system_usec": 98937}, 4},
		{"v2-memory.events", map[string]uint64{"max": 17, "oom": 2, "oom_kill": 1}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseFlat(read(t, tt.file))
			require.NoError(t, err)
			assert.Len(t, got, tt.keys)
			for k, v := range tt.want {
				assert.Equal(t, v, got[k], k)
			}
		})
	}
}

func TestScanFlat(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]uint64
		err      bool
	}{
		{name: "max value", in: "a 1\nb max\n", want: map[string]uint64{"a": 1, "b": Max}},
		{name: "no trailing newline", in: "a 1", want: map[string]uint64{"a": 1}},
		{name: "blank lines", in: "\na 1\n\n", want: map[string]uint64{"a": 1}},
		{name: "empty", in: "", want: map[string]uint64{}},
		{name: "missing value", in: "a\n", err: true},
		{name: "extra field", in: "a 1 2\n", err: true},
		{name: "negative", in: "a -1\n", err: true},
		{name: "overflow", in: "a 18446744073709551616\n", err: true},
		{name: "largest", in: "a 18446744073709551615\n", want: map[string]uint64{"a": 18446744073709551615}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFlat([]byte(tt.in))
			if tt.err {
				assert.ErrorIs(t, err, ErrFormat)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSingleValues(t *testing.T) {
	tests := []struct {
		file  string
		parse func([]byte) (uint64, error)
		want  uint64
	}{
		{"v1-cpuacct.usage", ParseUint, 482395093},
		{"v1-cpuacct.usage_user", ParseUint, 371982864},
		{"v1-memory.usage_in_bytes", ParseUint, 1654784},
		{"v1-memory.max_usage_in_bytes", ParseUint, 56176640},
		{"v1-memory.limit_in_bytes", ParseUint, 9223372036854771712},
		{"v1-pids.current", ParseUint, 0},
		{"v1-pids.max", ParseLimit, Max},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.parse(read(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	q, err := ParseInt(read(t, "v1-cpu.cfs_quota_us"))
	require.NoError(t, err)
	assert.Equal(t, int64(50000), q)
	q, err = ParseInt([]byte("-1\n"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), q)

	for _, bad := range []string{"", "max", "1 2", "0x10", "-"} {
		_, err := ParseUint([]byte(bad))
		assert.ErrorIs(t, err, ErrFormat, "ParseUint(%q)", bad)
	}
	_, err = ParseLimit([]byte("maximum"))
	assert.ErrorIs(t, err, ErrFormat)
	_, err = ParseInt([]byte("9223372036854775808"))
	assert.ErrorIs(t, err, ErrFormat)
	v, err := ParseInt([]byte("-9223372036854775808"))
	require.NoError(t, err)
	assert.Equal(t, int64(-9223372036854775808), v)
}

func TestParseUints(t *testing.T) {
	got, err := ParseUints(read(t, "v1-cpuacct.usage_percpu"))
	require.NoError(t, err)
	assert.Equal(t, []uint64{482024263, 370830}, got)
	_, err = ParseUints([]byte("1 x"))
	assert.ErrorIs(t, err, ErrFormat)
}

func TestParseCpuacctUsageAll(t *testing.T) {
	got, err := ParseCpuacctUsageAll(read(t, "v1-cpuacct.usage_all"))
	require.NoError(t, err)
	assert.Equal(t, []CPUTime{{0, 371982864, 95976570}, {1, 0, 0}}, got)
	_, err = ParseCpuacctUsageAll([]byte("0 1 2\n"))
	assert.ErrorIs(t, err, ErrFormat, "no header")
}

func TestParseBlkio(t *testing.T) {
	tests := []struct {
		file string
		want []BlkioEntry
	}{
		{"v1-blkio.throttle.io_service_bytes", []BlkioEntry{
			{254, 0, "Read", 5640192}, {254, 0, "Write", 3997696}, {254, 0, "Sync", 9637888},
			{254, 0, "Async", 0}, {254, 0, "Discard", 0}, {254, 0, "Total", 9637888},
		}},
		{"v1-blkio.throttle.io_serviced", []BlkioEntry{
			{254, 0, "Read", 349}, {254, 0, "Write", 61}, {254, 0, "Sync", 410},
			{254, 0, "Async", 0}, {254, 0, "Discard", 0}, {254, 0, "Total", 410},
		}},
		{"v1-blkio.bfq.io_service_bytes", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseBlkio(read(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{"8:0 Read\n", "Total x\n", "8-0 Read 1\n", "8:0 Read 1 2\n", "*:0 Read 1\n"} {
		_, err := ParseBlkio([]byte(bad))
		assert.ErrorIs(t, err, ErrFormat, "%q", bad)
	}
}

func TestParseDeviceValues(t *testing.T) {
	got, err := ParseDeviceValues(read(t, "v1-blkio.throttle.read_bps_device"))
	require.NoError(t, err)
	assert.Equal(t, []DeviceValue{{253, 0, 1048576}}, got)
	got, err = ParseDeviceValues(read(t, "v1-blkio.throttle.write_iops_device"))
	require.NoError(t, err)
	assert.Equal(t, []DeviceValue{{253, 0, 200}}, got)
	got, err = ParseDeviceValues(nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	_, err = ParseDeviceValues([]byte("8:0\n"))
	assert.ErrorIs(t, err, ErrFormat)
}

func TestScanNested(t *testing.T) {
	type kv struct {
		key, field string
		value      uint64
	}
	collect := func(in []byte) ([]kv, error) {
		var out []kv
		err := ScanNested(in, func(k, f []byte, v uint64) { out = append(out, kv{string(k), string(f), v}) })
		return out, err
	}
	got, err := collect(read(t, "v2-io.stat"))
	require.NoError(t, err)
	assert.Len(t, got, 12)
	assert.Equal(t, kv{"8:16", "rbytes", 1459200}, got[0])
	assert.Equal(t, kv{"8:0", "dios", 3021}, got[11])

	got, err = collect(read(t, "v2-io.max"))
	require.NoError(t, err)
	assert.Equal(t, []kv{{"8:16", "rbps", 2097152}, {"8:16", "wbps", Max}, {"8:16", "riops", Max}, {"8:16", "wiops", 120}}, got)

	for _, bad := range []string{"8:0 rbytes\n", "8:0 rbytes=x\n", "rbytes=1\n", "8:0 =1\n"} {
		_, err := collect([]byte(bad))
		assert.ErrorIs(t, err, ErrFormat, "%q", bad)
	}
}

func TestParsePSI(t *testing.T) {
	tests := []struct {
		file       string
		some, full *semantic.PressureLine
	}{
		{"v2-cpu.pressure", &semantic.PressureLine{Total: 691662 * time.Microsecond}, &semantic.PressureLine{Total: 686851 * time.Microsecond}},
		{"v2-io.pressure", &semantic.PressureLine{Total: 6558 * time.Microsecond}, &semantic.PressureLine{Total: 6558 * time.Microsecond}},
		{"v2-cpu.pressure-nofull", &semantic.PressureLine{Avg10: 1.53, Avg60: 0.87, Avg300: 0.31, Total: 1829341 * time.Microsecond}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParsePSI(read(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.some, got.Some)
			assert.Equal(t, tt.full, got.Full)
		})
	}
	for _, bad := range []string{
		"", "full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
		"some avg10=0.00 avg60=0.00 total=1\n", "some avg10=x avg60=0.00 avg300=0.00 total=1\n",
		"other avg10=0.00 avg60=0.00 avg300=0.00 total=1\n", "some avg10 avg60=0.00 avg300=0.00 total=1\n",
	} {
		_, err := ParsePSI([]byte(bad))
		assert.ErrorIs(t, err, ErrFormat, "%q", bad)
	}
}

func TestParseDevicesList(t *testing.T) {
	rule := func(s string) semantic.DeviceRule {
		r, err := semantic.ParseDeviceRule(s, true)
		require.NoError(t, err)
		return r
	}
	got, err := ParseDevicesList(read(t, "v1-devices.list"))
	require.NoError(t, err)
	assert.Equal(t, []semantic.DeviceRule{rule("c 1:3 rwm"), rule("c 1:5 r"), rule("b *:* m"), rule("c 136:* rw")}, got)
	got, err = ParseDevicesList(read(t, "v1-devices.list-root"))
	require.NoError(t, err)
	assert.Equal(t, []semantic.DeviceRule{rule("a *:* rwm")}, got)
	got, err = ParseDevicesList(nil)
	require.NoError(t, err)
	assert.Empty(t, got, "a deny-all group lists nothing")

	for _, bad := range []string{"x 1:3 rwm\n", "c 1:3 rwx\n", "c 1:3\n", "c 1 rwm\n", "a 1:3 rwm\n"} {
		_, err := ParseDevicesList([]byte(bad))
		assert.ErrorIs(t, err, ErrFormat, "%q", bad)
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in           string
		major, minor int64
		ok           bool
	}{
		{"8:0", 8, 0, true},
		{"*:*", semantic.Wildcard, semantic.Wildcard, true},
		{"136:*", 136, semantic.Wildcard, true},
		{"8", 0, 0, false},
		{"8:", 0, 0, false},
		{"8:-1", 0, 0, false},
		{"99999999999:0", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			major, minor, err := ParseDevice([]byte(tt.in))
			if !tt.ok {
				assert.ErrorIs(t, err, ErrFormat)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, [2]int64{tt.major, tt.minor}, [2]int64{major, minor})
		})
	}
}

func TestScanFlatDoesNotAllocate(t *testing.T) {
	data := read(t, "v1-memory.stat")
	var rss uint64
	allocs := testing.AllocsPerRun(100, func() {
		_ = ScanFlat(data, func(k []byte, v uint64) {
			if string(k) == "total_rss" {
				rss = v
			}
		})
	})
	assert.Equal(t, uint64(598016), rss)
	assert.Zero(t, allocs, "stats are read often; scanning must not allocate")
}

func FuzzScanFlat(f *testing.F) {
	for _, n := range []string{"v1-memory.stat", "v1-cpu.stat", "v2-memory.events"} {
		f.Add(read(f, n))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseFlat(data)
		if err != nil {
			return
		}
		// A parsed file renders back to one that parses to the same map.
		var out []byte
		for k, v := range m {
			val := "max"
			if v != Max {
				val = formatUint(v)
			}
			out = append(out, k+" "+val+"\n"...)
		}
		again, err := ParseFlat(out)
		require.NoError(t, err)
		assert.Equal(t, m, again)
	})
}

func formatUint(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

func FuzzScanNested(f *testing.F) {
	f.Add(read(f, "v2-io.stat"))
	f.Add(read(f, "v2-io.max"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ScanNested(data, func(k, fl []byte, v uint64) {
			if len(k) == 0 || len(fl) == 0 {
				t.Fatalf("empty key or field from %q", data)
			}
		})
	})
}

func FuzzParseBlkio(f *testing.F) {
	f.Add(read(f, "v1-blkio.throttle.io_service_bytes"))
	f.Add(read(f, "v1-blkio.throttle.io_serviced"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseBlkio(data)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Major < 0 || e.Minor < 0 {
				t.Fatalf("negative device in %+v", e)
			}
		}
	})
}

func FuzzParsePSI(f *testing.F) {
	f.Add(read(f, "v2-cpu.pressure"))
	f.Add(read(f, "v2-cpu.pressure-nofull"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePSI(data)
		if err != nil {
			return
		}
		if p.Some == nil || p.Some.Total < 0 || p.Some.Avg10 < 0 {
			t.Fatalf("accepted %q as %+v", data, p.Some)
		}
	})
}

func FuzzParseDevicesList(f *testing.F) {
	f.Add(read(f, "v1-devices.list"))
	f.Add(read(f, "v1-devices.list-root"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := ParseDevicesList(data)
		if err != nil {
			return
		}
		for _, r := range rules {
			require.NoError(t, r.Validate())
			// The kernel's own syntax round-trips.
			again, err := ParseDevicesList([]byte(r.Spec() + "\n"))
			require.NoError(t, err)
			assert.Equal(t, []semantic.DeviceRule{r}, again)
		}
	})
}

func FuzzSingleValues(f *testing.F) {
	for _, s := range []string{"0\n", "max\n", "-1\n", "18446744073709551615"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := ParseUint(data); err == nil {
			if l, err := ParseLimit(data); err != nil || l != v {
				t.Fatalf("ParseUint and ParseLimit disagree on %q", data)
			}
		}
		if v, err := ParseInt(data); err == nil && v >= 0 {
			if u, err := ParseUint(data); err != nil || uint64(v) != u {
				t.Fatalf("ParseInt and ParseUint disagree on %q", data)
			}
		}
	})
}
