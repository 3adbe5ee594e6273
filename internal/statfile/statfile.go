package statfile

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// ErrFormat is wrapped by every parse error: the file did not have the
// form the kernel writes.
var ErrFormat = errors.New("unexpected cgroup file format")

// Max is what ParseLimit returns for "max": no limit.
const Max = math.MaxUint64

func formatErr(line int, text []byte, why string) error {
	return fmt.Errorf("%w: line %d %q: %s", ErrFormat, line, text, why)
}

// lines calls fn for each non-empty line (without its newline), with its
// 1-based number, stopping at the first error.
func lines(data []byte, fn func(n int, line []byte) error) error {
	n := 0
	for len(data) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if blank(line) {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return nil
}

// blank reports whether line is only white space. A line the kernel
// wrote starts with a printable ASCII byte, which answers at once; any
// other line gets bytes.TrimSpace's full (Unicode) definition.
func blank(line []byte) bool {
	if len(line) == 0 {
		return true
	}
	if c := line[0]; c > ' ' && c < 0x80 {
		return false
	}
	return len(bytes.TrimSpace(line)) == 0
}

// cut splits off the first space- or tab-separated field of b; rest has
// its leading blanks removed. It is one pass over the bytes it skips:
// stats parsing spends most of its time here.
func cut(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	if j == len(b) {
		return b[i:], nil
	}
	k := j + 1
	for k < len(b) && (b[k] == ' ' || b[k] == '\t') {
		k++
	}
	return b[i:j], b[k:]
}

// Uint parses a decimal uint64 from b (no sign, no space).
func Uint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	// 19 digits cannot overflow; only a 20th needs checking.
	var v uint64
	for _, c := range b[:min(len(b), 19)] {
		if c-'0' > 9 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if len(b) == 20 {
		c := b[19] - '0'
		if c > 9 {
			return 0, false
		}
		hi, lo := bits.Mul64(v, 10)
		sum, carry := bits.Add64(lo, uint64(c), 0)
		if hi != 0 || carry != 0 {
			return 0, false
		}
		v = sum
	}
	return v, true
}

// Int parses a decimal int64 with an optional leading '-' ("-0" is not
// a number the kernel writes, and Uint refuses it too).
func Int(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, ok := Uint(b)
	if !ok || u > math.MaxInt64+1 || (!neg && u > math.MaxInt64) || (neg && u == 0) {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// ParseUint parses a file holding one unsigned number ("123\n").
func ParseUint(data []byte) (uint64, error) {
	t := bytes.TrimSpace(data)
	v, ok := Uint(t)
	if !ok {
		return 0, formatErr(1, t, "not an unsigned number")
	}
	return v, nil
}

// ParseInt parses a file holding one signed number ("-1\n" in
// cpu.cfs_quota_us).
func ParseInt(data []byte) (int64, error) {
	t := bytes.TrimSpace(data)
	v, ok := Int(t)
	if !ok {
		return 0, formatErr(1, t, "not a number")
	}
	return v, nil
}

// ParseLimit parses a file holding one limit: a number, or "max" (Max).
func ParseLimit(data []byte) (uint64, error) {
	t := bytes.TrimSpace(data)
	if string(t) == "max" {
		return Max, nil
	}
	v, ok := Uint(t)
	if !ok {
		return 0, formatErr(1, t, `not a number or "max"`)
	}
	return v, nil
}

// ParseUints parses space-separated unsigned numbers on one or more lines
// (cpuacct.usage_percpu: "482024263 370830 \n").
func ParseUints(data []byte) ([]uint64, error) {
	var out []uint64
	for _, f := range bytes.Fields(data) {
		v, ok := Uint(f)
		if !ok {
			return nil, formatErr(1, f, "not an unsigned number")
		}
		out = append(out, v)
	}
	return out, nil
}

// ScanFlat calls fn for each "key value" line of a flat keyed file
// (memory.stat, cpu.stat, memory.events, memory.oom_control, pids.events,
// cpuacct.stat). key aliases data and is valid only during the call;
// compare it with string(key), which does not allocate. A value may be
// "max" (Max).
func ScanFlat(data []byte, fn func(key []byte, value uint64)) error {
	for n := 1; len(data) > 0; n++ {
		if k, v, rest, ok := flatLine(data); ok {
			fn(k, v)
			data = rest
			continue
		}
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if blank(line) {
			continue
		}
		k, rest := cut(line)
		v, rest := cut(rest)
		if len(k) == 0 || len(v) == 0 || len(rest) != 0 {
			return formatErr(n, line, "want KEY VALUE")
		}
		u, ok := Uint(v)
		if !ok {
			if string(v) != "max" {
				return formatErr(n, line, "value is not a number")
			}
			u = Max
		}
		fn(k, u)
	}
	return nil
}

// flatLine reads the first line of data in one pass when it has the form
// the kernel writes, "KEY VALUE\n": a key starting with a printable ASCII
// byte, blanks, and a decimal value of at most 19 digits (which cannot
// overflow) ending the line. ok is false for any other line, which
// ScanFlat then reads field by field; both agree on every line this
// takes (FuzzFlatLine).
func flatLine(data []byte) (key []byte, value uint64, rest []byte, ok bool) {
	if c := data[0]; c <= ' ' || c >= 0x80 {
		return nil, 0, nil, false
	}
	i := 1
	for i < len(data) && data[i] != ' ' && data[i] != '\t' && data[i] != '\n' {
		i++
	}
	if i == len(data) || data[i] == '\n' {
		return nil, 0, nil, false
	}
	key = data[:i]
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	start := i
	for i < len(data) && data[i]-'0' <= 9 {
		value = value*10 + uint64(data[i]-'0')
		i++
	}
	if n := i - start; n == 0 || n > 19 {
		return nil, 0, nil, false
	}
	if i < len(data) {
		if data[i] != '\n' {
			return nil, 0, nil, false
		}
		i++
	}
	return key, value, data[i:], true
}

// ParseFlat returns a flat keyed file as a map.
func ParseFlat(data []byte) (map[string]uint64, error) {
	m := map[string]uint64{}
	err := ScanFlat(data, func(k []byte, v uint64) { m[string(k)] = v })
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ParseDevice parses "MAJOR:MINOR"; "*" is semantic.Wildcard.
func ParseDevice(b []byte) (major, minor int64, err error) {
	maj, min, ok := bytes.Cut(b, []byte(":"))
	if !ok {
		return 0, 0, fmt.Errorf("%w: %q is not MAJOR:MINOR", ErrFormat, b)
	}
	num := func(x []byte) (int64, bool) {
		if string(x) == "*" {
			return semantic.Wildcard, true
		}
		v, ok := Uint(x)
		return int64(v), ok && v <= math.MaxInt32
	}
	var ok1, ok2 bool
	major, ok1 = num(maj)
	minor, ok2 = num(min)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w: %q is not MAJOR:MINOR", ErrFormat, b)
	}
	return major, minor, nil
}

// ScanNested calls fn for each "KEY=VALUE" pair of a nested keyed file
// (io.stat "8:0 rbytes=1 wbytes=2 ...", io.max "8:0 rbps=max ..."), with
// the line's first field as key. A value may be "max" (Max). Slices alias
// data and are valid only during the call.
func ScanNested(data []byte, fn func(key, field []byte, value uint64)) error {
	return lines(data, func(n int, line []byte) error {
		key, rest := cut(line)
		if len(key) == 0 || bytes.IndexByte(key, '=') >= 0 {
			return formatErr(n, line, "want KEY FIELD=VALUE...")
		}
		for len(rest) > 0 {
			var kv []byte
			kv, rest = cut(rest)
			f, v, ok := bytes.Cut(kv, []byte("="))
			if !ok || len(f) == 0 {
				return formatErr(n, line, "want FIELD=VALUE")
			}
			u, isNum := Uint(v)
			if !isNum {
				if string(v) != "max" {
					return formatErr(n, line, "value is not a number")
				}
				u = Max
			}
			fn(key, f, u)
		}
		return nil
	})
}

// BlkioEntry is one line of a v1 blkio statistics file: "8:0 Read 123".
type BlkioEntry struct {
	Major, Minor int64
	Op           string // Read, Write, Sync, Async, Discard, Total
	Value        uint64
}

// ScanBlkio calls fn for each device line of a v1 blkio statistics file
// (blkio.throttle.io_service_bytes, blkio.throttle.io_serviced, their
// _recursive and bfq variants). The closing "Total N" line is checked and
// skipped. op aliases data.
func ScanBlkio(data []byte, fn func(major, minor int64, op []byte, value uint64)) error {
	done := 0
	for len(data) > 0 {
		major, minor, op, v, rest, ok := blkioLine(data)
		if !ok {
			break
		}
		fn(major, minor, op, v)
		data = rest
		done++
	}
	// The first line not in the kernel's device form (the closing Total
	// line, or something malformed) and what follows go field by field.
	return scanBlkioFields(data, done, fn)
}

// blkioLine reads the first line of data in one pass when it is a device
// line as the kernel writes it, "MAJOR:MINOR OP VALUE\n" (numbers of at
// most 9, 9 and 19 digits, which cannot overflow); ok is false for any
// other line. ScanBlkio's field-by-field path agrees on every line this
// takes (FuzzBlkioLine).
func blkioLine(data []byte) (major, minor int64, op []byte, value uint64, rest []byte, ok bool) {
	i := 0
	num := func(maxDigits int) (int64, bool) {
		start := i
		var v int64
		for i < len(data) && data[i]-'0' <= 9 {
			v = v*10 + int64(data[i]-'0')
			i++
		}
		return v, i > start && i-start <= maxDigits
	}
	blanks := func() bool {
		start := i
		for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
			i++
		}
		return i > start
	}
	var ok1, ok2 bool
	if major, ok1 = num(9); !ok1 || i == len(data) || data[i] != ':' {
		return 0, 0, nil, 0, nil, false
	}
	i++
	if minor, ok2 = num(9); !ok2 || !blanks() {
		return 0, 0, nil, 0, nil, false
	}
	start := i
	for i < len(data) && data[i] != ' ' && data[i] != '\t' && data[i] != '\n' {
		i++
	}
	op = data[start:i]
	if len(op) == 0 || !blanks() {
		return 0, 0, nil, 0, nil, false
	}
	start = i
	for i < len(data) && data[i]-'0' <= 9 {
		value = value*10 + uint64(data[i]-'0')
		i++
	}
	if n := i - start; n == 0 || n > 19 {
		return 0, 0, nil, 0, nil, false
	}
	if i < len(data) {
		if data[i] != '\n' {
			return 0, 0, nil, 0, nil, false
		}
		i++
	}
	return major, minor, op, value, data[i:], true
}

// scanBlkioFields is ScanBlkio's general path, one field at a time, for
// data that follows the first done lines.
func scanBlkioFields(data []byte, done int, fn func(major, minor int64, op []byte, value uint64)) error {
	return lines(data, func(n int, line []byte) error {
		n += done
		a, rest := cut(line)
		b, rest := cut(rest)
		if string(a) == "Total" && len(rest) == 0 {
			if _, ok := Uint(b); !ok {
				return formatErr(n, line, "total is not a number")
			}
			return nil
		}
		c, rest := cut(rest)
		if len(rest) != 0 || len(c) == 0 {
			return formatErr(n, line, "want MAJOR:MINOR OP VALUE")
		}
		major, minor, err := ParseDevice(a)
		if err != nil || major < 0 || minor < 0 {
			return formatErr(n, line, "device is not MAJOR:MINOR")
		}
		v, ok := Uint(c)
		if !ok {
			return formatErr(n, line, "value is not a number")
		}
		fn(major, minor, b, v)
		return nil
	})
}

// ParseBlkio returns a v1 blkio statistics file's device lines.
func ParseBlkio(data []byte) ([]BlkioEntry, error) {
	var out []BlkioEntry
	err := ScanBlkio(data, func(major, minor int64, op []byte, v uint64) {
		out = append(out, BlkioEntry{Major: major, Minor: minor, Op: string(op), Value: v})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeviceValue is one line of a per-device setting: "8:0 1048576".
type DeviceValue struct {
	Major, Minor int64
	Value        uint64
}

// ParseDeviceValues parses a per-device settings file
// (blkio.throttle.read_bps_device and friends, blkio.weight_device).
func ParseDeviceValues(data []byte) ([]DeviceValue, error) {
	var out []DeviceValue
	err := lines(data, func(n int, line []byte) error {
		a, rest := cut(line)
		b, rest := cut(rest)
		if len(rest) != 0 || len(b) == 0 {
			return formatErr(n, line, "want MAJOR:MINOR VALUE")
		}
		major, minor, err := ParseDevice(a)
		if err != nil || major < 0 || minor < 0 {
			return formatErr(n, line, "device is not MAJOR:MINOR")
		}
		v, ok := Uint(b)
		if !ok {
			return formatErr(n, line, "value is not a number")
		}
		out = append(out, DeviceValue{Major: major, Minor: minor, Value: v})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ParsePSI parses a pressure file (cpu.pressure, memory.pressure,
// io.pressure): a "some" line and, on most kernels, a "full" line, each
// "avg10=0.00 avg60=0.00 avg300=0.00 total=123" with total in
// microseconds.
func ParsePSI(data []byte) (semantic.Pressure, error) {
	var p semantic.Pressure
	err := lines(data, func(n int, line []byte) error {
		kind, rest := cut(line)
		var pl semantic.PressureLine
		var seen int
		for len(rest) > 0 {
			var kv []byte
			kv, rest = cut(rest)
			f, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				return formatErr(n, line, "want FIELD=VALUE")
			}
			switch string(f) {
			case "avg10", "avg60", "avg300":
				x, ok := parseDecimal(v)
				if !ok {
					return formatErr(n, line, "average is not a decimal")
				}
				switch string(f) {
				case "avg10":
					pl.Avg10 = x
				case "avg60":
					pl.Avg60 = x
				default:
					pl.Avg300 = x
				}
			case "total":
				u, ok := Uint(v)
				if !ok || u > math.MaxInt64/uint64(time.Microsecond) {
					return formatErr(n, line, "total is not a number of microseconds")
				}
				pl.Total = time.Duration(u) * time.Microsecond
			default:
				continue // a field a later kernel may add
			}
			seen++
		}
		if seen != 4 {
			return formatErr(n, line, "want avg10, avg60, avg300 and total")
		}
		switch string(kind) {
		case "some":
			p.Some = &pl
		case "full":
			p.Full = &pl
		default:
			return formatErr(n, line, `want a "some" or "full" line`)
		}
		return nil
	})
	if err == nil && p.Some == nil {
		err = fmt.Errorf("%w: no \"some\" line", ErrFormat)
	}
	return p, err
}

// parseDecimal parses "12.34" (the kernel prints PSI averages with two
// decimals) without allocating.
func parseDecimal(b []byte) (float64, bool) {
	i, f, _ := bytes.Cut(b, []byte("."))
	iv, ok := Uint(i)
	if !ok {
		return 0, false
	}
	x := float64(iv)
	if len(f) > 0 {
		fv, ok := Uint(f)
		if !ok || len(f) > 18 {
			return 0, false
		}
		x += float64(fv) / math.Pow10(len(f))
	}
	return x, true
}

// ParseDevicesList parses a v1 devices.list: one exception per line,
// "c 1:3 rwm". Every entry is an allow rule: v1 lists what the group may
// access when its default is deny (and "a *:* rwm" alone when it allows
// everything).
func ParseDevicesList(data []byte) ([]semantic.DeviceRule, error) {
	var out []semantic.DeviceRule
	err := lines(data, func(n int, line []byte) error {
		typ, rest := cut(line)
		dev, rest := cut(rest)
		acc, rest := cut(rest)
		if len(typ) != 1 || len(rest) != 0 || len(acc) == 0 {
			return formatErr(n, line, "want TYPE MAJOR:MINOR ACCESS")
		}
		r := semantic.DeviceRule{Allow: true, Type: semantic.DeviceType(typ[0])}
		var err error
		if r.Major, r.Minor, err = ParseDevice(dev); err != nil {
			return formatErr(n, line, err.Error())
		}
		for _, c := range acc {
			switch c {
			case 'r':
				r.Access |= semantic.Read
			case 'w':
				r.Access |= semantic.Write
			case 'm':
				r.Access |= semantic.Mknod
			default:
				return formatErr(n, line, "access is not a subset of rwm")
			}
		}
		if err := r.Validate(); err != nil {
			return formatErr(n, line, err.Error())
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CPUTime is one CPU's row of cpuacct.usage_all, in nanoseconds.
type CPUTime struct {
	CPU          int
	User, System uint64
}

// ParseCpuacctUsageAll parses cpuacct.usage_all: a "cpu user system"
// header, then one row per CPU.
func ParseCpuacctUsageAll(data []byte) ([]CPUTime, error) {
	var out []CPUTime
	err := ScanCpuacctUsageAll(data, func(t CPUTime) { out = append(out, t) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScanCpuacctUsageAll calls fn for each CPU's row of cpuacct.usage_all,
// after checking the "cpu user system" header, without allocating.
func ScanCpuacctUsageAll(data []byte, fn func(CPUTime)) error {
	first := true
	return lines(data, func(n int, line []byte) error {
		var f [3][]byte
		rest := line
		for i := range f {
			f[i], rest = cut(rest)
		}
		if len(f[2]) == 0 || len(rest) != 0 {
			if first {
				return formatErr(n, line, `want the header "cpu user system"`)
			}
			return formatErr(n, line, "want CPU USER SYSTEM")
		}
		if first {
			first = false
			if string(f[0]) != "cpu" {
				return formatErr(n, line, `want the header "cpu user system"`)
			}
			return nil
		}
		cpu, ok1 := Uint(f[0])
		user, ok2 := Uint(f[1])
		sys, ok3 := Uint(f[2])
		if !ok1 || !ok2 || !ok3 || cpu > math.MaxInt32 {
			return formatErr(n, line, "want three numbers")
		}
		fn(CPUTime{CPU: int(cpu), User: user, System: sys})
		return nil
	})
}
