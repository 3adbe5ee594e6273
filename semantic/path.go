package semantic

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on paths, checked by every driver through ValidateSegment.
const (
	// MaxSegmentLen is the longest segment in bytes (a Linux file name).
	MaxSegmentLen = 255
	// MaxDepth is the deepest path in segments.
	MaxDepth = 32
)

// reservedPrefixes are the attribute-file prefixes a group name must not
// start with: such a directory could shadow, or be confused with, a kernel
// attribute file of its parent.
var reservedPrefixes = []string{
	"cgroup.", "memory.", "cpu.", "cpuset.", "cpuacct.", "io.", "blkio.", "pids.",
	"devices.", "freezer.", "hugetlb.", "rdma.", "misc.", "net_cls.", "net_prio.",
	"perf_event.",
}

// reservedNames are v1 attribute files without a controller prefix.
var reservedNames = []string{"tasks", "notify_on_release", "release_agent"}

// Path names a group by its segments below the driver's root, e.g.
// libvirt/lxc/web1. The zero Path is the root itself. A Path is immutable
// and every Path built by ParsePath, NewPath or Join is valid.
type Path struct {
	segs []string
}

// Root is the driver's root: the zero Path.
var Root = Path{}

// ParsePath parses a slash-separated path such as "libvirt/lxc/web1".
// Leading or trailing slashes, empty segments and every segment
// ValidateSegment refuses are errors wrapping ErrInvalid.
func ParsePath(s string) (Path, error) {
	if s == "" {
		return Path{}, pathErr(s, "empty path")
	}
	if strings.HasPrefix(s, "/") {
		return Path{}, pathErr(s, "absolute; give the path below the driver's root without a leading /")
	}
	return newPath(s, strings.Split(s, "/"))
}

// NewPath builds a path from segments, validating each.
func NewPath(segments ...string) (Path, error) {
	if len(segments) == 0 {
		return Path{}, nil
	}
	return newPath(strings.Join(segments, "/"), segments)
}

// MustPath is ParsePath for constants; it panics on an invalid path.
func MustPath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

func newPath(input string, segs []string) (Path, error) {
	if len(segs) > MaxDepth {
		return Path{}, pathErr(input, fmt.Sprintf("%d levels deep; at most %d", len(segs), MaxDepth))
	}
	for i, s := range segs {
		if why := segmentProblem(s); why != "" {
			return Path{}, pathErr(input, fmt.Sprintf("segment %d: %s", i+1, why))
		}
	}
	return Path{segs: append([]string(nil), segs...)}, nil
}

func pathErr(input, why string) error {
	return &Error{Op: "parse path", Group: fmt.Sprintf("%q", input), Kind: ErrInvalid, Err: errors.New(why)}
}

// ValidateSegment checks one path segment. The error wraps ErrInvalid and
// names the segment and why it is refused; drivers call it on names they
// read back from the kernel before turning them into a Path.
func ValidateSegment(s string) error {
	if why := segmentProblem(s); why != "" {
		return &Error{Op: "validate path segment", Kind: ErrInvalid, Err: errors.New(why)}
	}
	return nil
}

// segmentProblem says why s is not a valid segment, or "" if it is. The
// reason quotes the segment (its first 20 characters when it is too long).
func segmentProblem(s string) string {
	switch {
	case s == "":
		return "empty segment"
	case s == "." || s == "..":
		return fmt.Sprintf("%q is not allowed", s)
	case len(s) > MaxSegmentLen:
		return fmt.Sprintf("%.20q... is %d bytes; at most %d", s, len(s), MaxSegmentLen)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		switch {
		case r == '/':
			return fmt.Sprintf("%q contains /", s)
		case r == 0:
			return fmt.Sprintf("%q contains NUL", s)
		case unicode.IsControl(r):
			return fmt.Sprintf("%q contains control character %U", s, r)
		}
	}
	if strings.TrimSpace(s) != s {
		return fmt.Sprintf("%q has leading or trailing space", s)
	}
	if slices.Contains(reservedNames, s) {
		return fmt.Sprintf("%q is the name of a kernel attribute file", s)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(s, p) {
			return fmt.Sprintf("%q begins with %q, which names kernel attribute files", s, p)
		}
	}
	return ""
}

// Segments returns a copy of the path's segments.
func (p Path) Segments() []string { return append([]string(nil), p.segs...) }

// Len is the number of segments; 0 for the root.
func (p Path) Len() int { return len(p.segs) }

// IsRoot reports whether p is the driver's root.
func (p Path) IsRoot() bool { return len(p.segs) == 0 }

// String joins the segments with "/"; the root is "".
func (p Path) String() string { return strings.Join(p.segs, "/") }

// Display is String, but "/" for the root, for messages.
func (p Path) Display() string {
	if p.IsRoot() {
		return "/"
	}
	return p.String()
}

// Base is the last segment, "" for the root.
func (p Path) Base() string {
	if p.IsRoot() {
		return ""
	}
	return p.segs[len(p.segs)-1]
}

// Parent is the path without its last segment; the root's parent is the root.
func (p Path) Parent() Path {
	if p.IsRoot() {
		return p
	}
	return Path{segs: p.segs[: len(p.segs)-1 : len(p.segs)-1]}
}

// Prefix returns the first n segments; it panics unless 0 <= n <= Len().
func (p Path) Prefix(n int) Path { return Path{segs: p.segs[:n:n]} }

// Join appends validated segments.
func (p Path) Join(segments ...string) (Path, error) {
	all := append(p.Segments(), segments...)
	return newPath(strings.Join(all, "/"), all)
}

// Child appends one segment the caller already validated (for example a
// name read back from the kernel); it panics if the segment is invalid.
func (p Path) Child(segment string) Path {
	c, err := p.Join(segment)
	if err != nil {
		panic(err)
	}
	return c
}

// Equal reports whether p and q name the same group.
func (p Path) Equal(q Path) bool {
	if len(p.segs) != len(q.segs) {
		return false
	}
	for i := range p.segs {
		if p.segs[i] != q.segs[i] {
			return false
		}
	}
	return true
}

// HasPrefix reports whether q is p or an ancestor of p.
func (p Path) HasPrefix(q Path) bool {
	return len(q.segs) <= len(p.segs) && q.Equal(p.Prefix(len(q.segs)))
}

// MarshalText renders the path as String does.
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses a path; "" is the root.
func (p *Path) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*p = Path{}
		return nil
	}
	q, err := ParsePath(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
