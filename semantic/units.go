package semantic

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Unlimited is the "max" value of a Bytes or Count limit.
const Unlimited = math.MaxUint64

// Binary byte multiples.
const (
	KiB Bytes = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
	PiB
	EiB
)

// Bytes is an amount of memory in bytes; Unlimited means "max".
//
// In JSON it is a number, or the string "max".
type Bytes uint64

// IsUnlimited reports whether b is "max".
func (b Bytes) IsUnlimited() bool { return b == Unlimited }

// String renders b the way ParseBytes reads it: "max", an exact binary
// multiple such as "512MiB", or a plain number of bytes.
func (b Bytes) String() string {
	if b.IsUnlimited() {
		return "max"
	}
	units := []struct {
		size Bytes
		name string
	}{{EiB, "EiB"}, {PiB, "PiB"}, {TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}}
	for _, u := range units {
		if b >= u.size && b%u.size == 0 {
			return strconv.FormatUint(uint64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatUint(uint64(b), 10)
}

// KernelString renders b as cgroup files take it: "max" or decimal bytes.
func (b Bytes) KernelString() string {
	if b.IsUnlimited() {
		return "max"
	}
	return strconv.FormatUint(uint64(b), 10)
}

// MarshalJSON writes a number, or "max".
func (b Bytes) MarshalJSON() ([]byte, error) { return marshalLimit(uint64(b)) }

// UnmarshalJSON reads a number, or any string ParseBytes accepts. JSON
// null leaves b unchanged, as encoding/json does for plain values.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	return unmarshalLimit(data, b, ParseBytes)
}

func marshalLimit(v uint64) ([]byte, error) {
	if v == Unlimited {
		return []byte(`"max"`), nil
	}
	return strconv.AppendUint(nil, v, 10), nil
}

// unmarshalLimit stores into dst only on success, so a failed decode
// leaves the previous value.
func unmarshalLimit[T ~uint64](data []byte, dst *T, parse func(string) (T, error)) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(data, &s) == nil {
		v, err := parse(s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
	var n uint64
	if err := json.Unmarshal(data, &n); err != nil {
		return invalidf("limit %s: want a non-negative whole number or a string such as \"max\"", data)
	}
	*dst = T(n)
	return nil
}

var byteSuffixes = map[string]Bytes{
	"": 1, "B": 1,
	"K": KiB, "KiB": KiB, "k": KiB,
	"M": MiB, "MiB": MiB, "m": MiB,
	"G": GiB, "GiB": GiB, "g": GiB,
	"T": TiB, "TiB": TiB, "t": TiB,
	"P": PiB, "PiB": PiB, "p": PiB,
	"E": EiB, "EiB": EiB, "e": EiB,
}

// ParseBytes parses a memory size as users type it: "max" (or "infinity",
// systemd's word), "4096", "512MiB", "512M", "1.5G". Every suffix is
// binary (K = k = KiB = 1024, up to E = EiB), as in systemd and docker;
// "B" alone means bytes. "MB" style suffixes are refused as ambiguous
// (decimal or binary?). A fraction is allowed with any suffix and the
// result is truncated to a whole byte ("1.5K" is 1536, "0.5" is 0). No
// sign, spaces, exponent or hex. A value that does not fit in 64 bits, or
// equals Unlimited without being spelled "max", is an error. Every error
// wraps ErrInvalid.
func ParseBytes(s string) (Bytes, error) {
	if s == "max" || s == "infinity" {
		return Unlimited, nil
	}
	num, suffix := splitNumber(s)
	if num == "" {
		return 0, invalidf("size %q: want a number with an optional K/M/G/T/P/E or KiB/MiB/... suffix, or \"max\"", s)
	}
	mult, ok := byteSuffixes[suffix]
	if !ok {
		if len(suffix) == 2 && strings.ContainsRune("KMGTPEkmgtpe", rune(suffix[0])) && (suffix[1] == 'B' || suffix[1] == 'b') {
			return 0, invalidf("size %q: suffix %q is ambiguous (decimal or binary?); use %s or %siB, both 1024-based",
				s, suffix, strings.ToUpper(suffix[:1]), strings.ToUpper(suffix[:1]))
		}
		return 0, invalidf("size %q: unknown suffix %q", s, suffix)
	}
	v, err := scaleDecimal(num, uint64(mult))
	if err != nil {
		return 0, invalidf("size %q: %v", s, err)
	}
	if v == Unlimited {
		return 0, invalidf("size %q: too large (use \"max\" for no limit)", s)
	}
	return Bytes(v), nil
}

// splitNumber splits "1.5GiB" into "1.5" and "GiB".
func splitNumber(s string) (num, suffix string) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	return s[:i], s[i:]
}

// scaleDecimal computes digits × mult exactly for a decimal with an
// optional fraction, truncating any fraction of a unit left over.
func scaleDecimal(num string, mult uint64) (uint64, error) {
	intPart, frac, hasDot := strings.Cut(num, ".")
	if intPart == "" || (hasDot && frac == "") || strings.Contains(frac, ".") {
		return 0, fmt.Errorf("%q is not a decimal number", num)
	}
	whole, err := strconv.ParseUint(intPart, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", num)
	}
	hi, v := bits.Mul64(whole, mult)
	if hi != 0 {
		return 0, fmt.Errorf("%q is out of range", num)
	}
	if frac == "" {
		return v, nil
	}
	if len(frac) > 18 {
		frac = frac[:18]
	}
	f, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal number", num)
	}
	den := uint64(1)
	for range len(frac) {
		den *= 10
	}
	// f/den × mult, exact: f < den ≤ 1e18 and mult ≤ 2^60.
	hi, lo := bits.Mul64(f, mult)
	q, _ := bits.Div64(hi, lo, den)
	sum, carry := bits.Add64(v, q, 0)
	if carry != 0 {
		return 0, fmt.Errorf("%q is out of range", num)
	}
	return sum, nil
}

// Count is a number of things (tasks); Unlimited means "max".
//
// In JSON it is a number, or the string "max".
type Count uint64

// IsUnlimited reports whether c is "max".
func (c Count) IsUnlimited() bool { return c == Unlimited }

// String renders c as ParseCount reads it: "max" or a decimal number.
func (c Count) String() string {
	if c.IsUnlimited() {
		return "max"
	}
	return strconv.FormatUint(uint64(c), 10)
}

// MarshalJSON writes a number, or "max".
func (c Count) MarshalJSON() ([]byte, error) { return marshalLimit(uint64(c)) }

// UnmarshalJSON reads a number or a string ParseCount accepts. JSON null
// leaves c unchanged.
func (c *Count) UnmarshalJSON(data []byte) error {
	return unmarshalLimit(data, c, ParseCount)
}

// ParseCount parses "max" or a non-negative decimal integer.
func ParseCount(s string) (Count, error) {
	if s == "max" {
		return Unlimited, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == Unlimited {
		return 0, invalidf("count %q: want a non-negative whole number or \"max\"", s)
	}
	return Count(n), nil
}

// ParseCPUs parses a CPU bandwidth limit in CPUs: "1.5", "0.2", "4", or
// "max" (returned as 0, which means unlimited). At most 6 decimals, and at
// least 0.001 CPUs.
func ParseCPUs(s string) (float64, error) {
	if s == "max" {
		return 0, nil
	}
	num, suffix := splitNumber(s)
	if num == "" || suffix != "" {
		return 0, invalidf("CPUs %q: want a number of CPUs such as 1.5, or \"max\"", s)
	}
	if _, frac, _ := strings.Cut(num, "."); len(frac) > 6 {
		return 0, invalidf("CPUs %q: more than 6 decimals", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, invalidf("CPUs %q: not a number", s)
	}
	if v < MinCPUs || v > MaxCPUs {
		return 0, invalidf("CPUs %q: out of range %g..%g", s, MinCPUs, float64(MaxCPUs))
	}
	return v, nil
}
