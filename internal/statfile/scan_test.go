package statfile

import (
	"bytes"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hand-rolled scanning (blank, cut) must mean exactly what the
// bytes-package forms it replaced meant; these are those forms.
func refCut(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \t")
	i := bytes.IndexAny(b, " \t")
	if i < 0 {
		return b, nil
	}
	return b[:i], bytes.TrimLeft(b[i+1:], " \t")
}

func refBlank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

func TestCutAndBlank(t *testing.T) {
	for _, tt := range []struct {
		name, in    string
		field, rest string
		blank       bool
	}{
		{"empty", "", "", "", true},
		{"one field", "total_rss", "total_rss", "", false},
		{"two fields", "total_rss 123", "total_rss", "123", false},
		{"leading and repeated blanks", " \t a \t b c", "a", "b c", false},
		{"trailing blank", "a ", "a", "", false},
		{"only blanks", " \t ", "", "", true},
		{"carriage return is content", "\r", "\r", "", true},
		{"unicode space", "\u00a0", "\u00a0", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, r := cut([]byte(tt.in))
			assert.Equal(t, tt.field, string(f))
			assert.Equal(t, tt.rest, string(r))
			assert.Equal(t, tt.blank, blank([]byte(tt.in)))
		})
	}
}

func FuzzCutAndBlank(f *testing.F) {
	for _, s := range []string{"", "a b", " \ta\t\tb ", "\u00a0x", "\x85", "cpu user system"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		f1, r1 := cut(b)
		f2, r2 := refCut(b)
		require.Equal(t, string(f2), string(f1), "field")
		require.Equal(t, string(r2), string(r1), "rest")
		require.Equal(t, refBlank(b), blank(b))
	})
}

// refUsageAll is the bytes.Fields parser ScanCpuacctUsageAll replaced;
// on lines separated by spaces and tabs only, the two agree.
func refUsageAll(data []byte) ([]CPUTime, bool) {
	var out []CPUTime
	first := true
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 3 {
			return nil, false
		}
		if first {
			first = false
			if string(f[0]) != "cpu" {
				return nil, false
			}
			continue
		}
		cpu, ok1 := Uint(f[0])
		user, ok2 := Uint(f[1])
		sys, ok3 := Uint(f[2])
		if !ok1 || !ok2 || !ok3 || cpu > math.MaxInt32 {
			return nil, false
		}
		out = append(out, CPUTime{CPU: int(cpu), User: user, System: sys})
	}
	return out, true
}

func FuzzScanCpuacctUsageAll(f *testing.F) {
	f.Add(read(f, "v1-cpuacct.usage_all"))
	f.Add([]byte("cpu user system\n0 1 2\n1 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.ContainsFunc(data, func(r rune) bool { return r != ' ' && r != '\t' && r != '\n' && isSpace(r) }) {
			return // the old parser also split on other white space
		}
		got, err := ParseCpuacctUsageAll(data)
		want, ok := refUsageAll(data)
		require.Equal(t, ok, err == nil, "error: %v", err)
		if ok {
			assert.Equal(t, want, got)
		} else {
			assert.ErrorIs(t, err, ErrFormat)
		}
	})
}

func isSpace(r rune) bool {
	return bytes.ContainsRune([]byte("\v\f\r\u0085\u00a0"), r) || r == '\u1680' || r >= '\u2000' && r <= '\u200a' ||
		r == '\u2028' || r == '\u2029' || r == '\u202f' || r == '\u205f' || r == '\u3000'
}

// Stats are read in loops: none of the scanners a driver's Stats uses may
// allocate.
func TestScannersDoNotAllocate(t *testing.T) {
	for _, tt := range []struct {
		name string
		file string
		scan func([]byte) error
	}{
		{"flat", "v1-memory.stat", func(b []byte) error { return ScanFlat(b, func([]byte, uint64) {}) }},
		{"blkio", "v1-blkio.throttle.io_service_bytes_recursive", func(b []byte) error {
			return ScanBlkio(b, func(int64, int64, []byte, uint64) {})
		}},
		{"cpuacct.usage_all", "v1-cpuacct.usage_all", func(b []byte) error { return ScanCpuacctUsageAll(b, func(CPUTime) {}) }},
		{"uint", "v1-cpu.cfs_quota_us", func(b []byte) error { _, err := ParseInt(b); return err }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := read(t, tt.file)
			require.NoError(t, tt.scan(data))
			assert.Zero(t, testing.AllocsPerRun(100, func() { _ = tt.scan(data) }))
		})
	}
}

// refScanFlat is ScanFlat as it was before its one-pass path: every line
// split by lines and cut.
func refScanFlat(data []byte, fn func(key []byte, value uint64)) error {
	return lines(data, func(n int, line []byte) error {
		k, rest := refCut(line)
		v, rest := refCut(rest)
		if len(k) == 0 || len(v) == 0 || len(rest) != 0 {
			return formatErr(n, line, "want KEY VALUE")
		}
		u, ok := refUint(v)
		if !ok {
			if string(v) != "max" {
				return formatErr(n, line, "value is not a number")
			}
			u = Max
		}
		fn(k, u)
		return nil
	})
}

func refUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 || b[0] == '+' || b[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

type kv struct {
	k string
	v uint64
}

func collect(scan func([]byte, func([]byte, uint64)) error, data []byte) ([]kv, error) {
	var out []kv
	err := scan(data, func(k []byte, v uint64) { out = append(out, kv{string(k), v}) })
	return out, err
}

func TestScanFlatPaths(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []kv
		err      bool
	}{
		{"kernel form", "a 1\nb 22\n", []kv{{"a", 1}, {"b", 22}}, false},
		{"no final newline", "a 1", []kv{{"a", 1}}, false},
		{"tabs and runs of blanks", "a\t\t1\nb  2\n", []kv{{"a", 1}, {"b", 2}}, false},
		{"trailing blank", "a 1 \n", []kv{{"a", 1}}, false},
		{"max", "a max\n", []kv{{"a", Max}}, false},
		{"20 digits", "a 18446744073709551615\n", []kv{{"a", math.MaxUint64}}, false},
		{"20 digits overflow", "a 18446744073709551616\n", nil, true},
		{"leading blank", " a 1\n", []kv{{"a", 1}}, false},
		{"blank lines", "\n \n\u00a0\na 1\n", []kv{{"a", 1}}, false},
		{"no value", "a\n", nil, true},
		{"three fields", "a 1 2\n", nil, true},
		{"sign", "a -1\n", nil, true},
		{"carriage return", "a 1\r\n", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(ScanFlat, []byte(tt.in))
			if tt.err {
				assert.ErrorIs(t, err, ErrFormat)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzFlatLine: the one-pass path and the field-by-field path read every
// input alike, values, keys and errors.
func FuzzFlatLine(f *testing.F) {
	for _, n := range []string{"v1-memory.stat", "v1-cpu.stat", "v1-memory.oom_control", "v2-memory.events"} {
		f.Add(read(f, n))
	}
	f.Add([]byte("a 18446744073709551615\nb 99999999999999999999\n c\t7 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := collect(ScanFlat, data)
		want, werr := collect(refScanFlat, data)
		require.Equal(t, werr == nil, err == nil, "errors: %v / %v", err, werr)
		if werr != nil {
			require.Equal(t, werr.Error(), err.Error())
			return
		}
		require.Equal(t, want, got)
	})
}

func FuzzUint(f *testing.F) {
	for _, s := range []string{"0", "007", "18446744073709551615", "18446744073709551616", "99999999999999999999", "1a", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := Uint(b)
		w, wok := refUint(b)
		require.Equal(t, wok, ok)
		require.Equal(t, w, v)
	})
}

// refScanBlkio is ScanBlkio as it was before its one-pass path.
func refScanBlkio(data []byte, fn func(major, minor int64, op []byte, value uint64)) error {
	return scanBlkioFields(data, 0, fn)
}

type blkioLineOut struct {
	major, minor int64
	op           string
	v            uint64
}

func collectBlkio(scan func([]byte, func(int64, int64, []byte, uint64)) error, data []byte) ([]blkioLineOut, error) {
	var out []blkioLineOut
	err := scan(data, func(major, minor int64, op []byte, v uint64) {
		out = append(out, blkioLineOut{major, minor, string(op), v})
	})
	return out, err
}

func TestScanBlkioPaths(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []blkioLineOut
		errLine  string // the line an error names, "" for none
	}{
		{"kernel form", "8:0 Read 1\n8:0 Write 2\nTotal 3\n", []blkioLineOut{{8, 0, "Read", 1}, {8, 0, "Write", 2}}, ""},
		{"no total", "8:0 Read 1", []blkioLineOut{{8, 0, "Read", 1}}, ""},
		{"ten-digit major", "2147483647:0 Read 1\n", []blkioLineOut{{2147483647, 0, "Read", 1}}, ""},
		{"major too large", "2147483648:0 Read 1\n", nil, "line 1"},
		{"malformed after good lines", "8:0 Read 1\n8:0 Write 2\n8:0 Read\n", nil, "line 3"},
		{"wildcard", "*:0 Read 1\n", nil, "line 1"},
		{"bad total", "8:0 Read 1\nTotal x\n", nil, "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collectBlkio(ScanBlkio, []byte(tt.in))
			if tt.errLine != "" {
				require.ErrorIs(t, err, ErrFormat)
				assert.Contains(t, err.Error(), tt.errLine)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzBlkioLine: the one-pass path and the field-by-field path read every
// input alike.
func FuzzBlkioLine(f *testing.F) {
	for _, n := range []string{"v1-blkio.throttle.io_service_bytes", "v1-blkio.throttle.io_serviced", "v1-blkio.bfq.io_service_bytes"} {
		f.Add(read(f, n))
	}
	f.Add([]byte("8:0 Read 1\n999999999:999999999 X 9999999999999999999\n1:2  Write\t3 \nTotal 4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := collectBlkio(ScanBlkio, data)
		want, werr := collectBlkio(refScanBlkio, data)
		require.Equal(t, werr == nil, err == nil, "errors: %v / %v", err, werr)
		if werr != nil {
			require.Equal(t, werr.Error(), err.Error(), "the same line is named")
			return
		}
		require.Equal(t, want, got)
	})
}
