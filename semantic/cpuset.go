package semantic

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxCPUSetID bounds CPU and memory-node numbers accepted in a set.
const MaxCPUSetID = 8191

// CPUSet is a set of CPU or memory-node numbers, kept sorted and unique.
// It renders and parses as the kernel's list format: "0-3,7".
type CPUSet []int

// ParseCPUSet parses a list such as "0-3,7". Whitespace around the list
// (as the kernel writes it) is ignored; the empty string is the empty set.
func ParseCPUSet(s string) (CPUSet, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return CPUSet{}, nil
	}
	var set CPUSet
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseCPUID(lo)
		if err != nil {
			return nil, invalidf("CPU list %q: %v", s, err)
		}
		b := a
		if isRange {
			if b, err = parseCPUID(hi); err != nil {
				return nil, invalidf("CPU list %q: %v", s, err)
			}
			if b < a {
				return nil, invalidf("CPU list %q: range %q runs backwards", s, part)
			}
		}
		for i := a; i <= b; i++ {
			set = append(set, i)
		}
	}
	slices.Sort(set)
	return slices.Compact(set), nil
}

func parseCPUID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !isDecimal(s) || n > MaxCPUSetID {
		return 0, fmt.Errorf("%q is not a number 0..%d", s, MaxCPUSetID)
	}
	return n, nil
}

// isDecimal reports whether s is a plain decimal number as the kernel
// writes one: digits only (no sign), and no leading zero.
func isDecimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String renders the set in the kernel's list format.
func (c CPUSet) String() string {
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(c[j]))
		}
		i = j + 1
	}
	return b.String()
}

// Validate checks that the set is sorted, unique and in range.
func (c CPUSet) Validate() error {
	for i, v := range c {
		if v < 0 || v > MaxCPUSetID || (i > 0 && v <= c[i-1]) {
			return invalidf("CPU set %v: not sorted, unique and within 0..%d", []int(c), MaxCPUSetID)
		}
	}
	return nil
}

// MarshalJSON writes the list format as a string.
func (c CPUSet) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads the list format.
func (c *CPUSet) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseCPUSet(s)
	*c = v
	return err
}
