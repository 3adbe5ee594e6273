package mountinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file, with every escaped field decoded.
type Mount struct {
	ID       int
	ParentID int
	// Major and Minor are the st_dev of the filesystem; two mounts of one
	// cgroup hierarchy share them.
	Major, Minor int
	// Root is the directory of the filesystem that is mounted: "/" for a
	// whole hierarchy, "/docker/abc" for a container's view of one.
	Root       string
	MountPoint string
	// Options are the per-mount options ("rw", "nosuid", ...).
	Options []string
	// Optional are the optional fields ("shared:5", "master:1", ...).
	Optional []string
	FSType   string
	Source   string
	// SuperOptions are the per-superblock options; for cgroup v1 they name
	// the hierarchy's controllers and its name ("name=systemd").
	SuperOptions []string
}

// Parse reads a mountinfo file. A malformed line is an error naming its
// line number; the kernel never writes one, so it means the input is not
// a mountinfo file.
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := ParseLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// ParseFile reads and parses a mountinfo file such as
// /proc/self/mountinfo.
func ParseFile(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// ParseLine parses one mountinfo line (without its newline).
func ParseLine(line string) (Mount, error) {
	// Fields are separated by single spaces; escaped fields never contain
	// a raw space, so a plain split is exact.
	fields := strings.Split(line, " ")
	sep := slices.Index(fields, "-")
	if sep < 6 || len(fields) < sep+4 {
		return Mount{}, fmt.Errorf("%q: want at least 6 fields, \"-\", then 3 fields", line)
	}
	var (
		m   Mount
		err error
	)
	if m.ID, err = strconv.Atoi(fields[0]); err != nil {
		return Mount{}, fmt.Errorf("%q: mount ID %q is not a number", line, fields[0])
	}
	if m.ParentID, err = strconv.Atoi(fields[1]); err != nil {
		return Mount{}, fmt.Errorf("%q: parent ID %q is not a number", line, fields[1])
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	if m.Major, err = strconv.Atoi(maj); !ok || err != nil {
		return Mount{}, fmt.Errorf("%q: device %q is not MAJOR:MINOR", line, fields[2])
	}
	if m.Minor, err = strconv.Atoi(min); err != nil {
		return Mount{}, fmt.Errorf("%q: device %q is not MAJOR:MINOR", line, fields[2])
	}
	if m.Root, err = Unescape(fields[3]); err != nil {
		return Mount{}, fmt.Errorf("%q: root: %w", line, err)
	}
	if m.MountPoint, err = Unescape(fields[4]); err != nil {
		return Mount{}, fmt.Errorf("%q: mount point: %w", line, err)
	}
	if m.Options, err = splitOptions(fields[5]); err != nil {
		return Mount{}, fmt.Errorf("%q: options: %w", line, err)
	}
	if sep > 6 {
		m.Optional = slices.Clone(fields[6:sep])
	}
	if m.FSType, err = Unescape(fields[sep+1]); err != nil {
		return Mount{}, fmt.Errorf("%q: type: %w", line, err)
	}
	if m.Source, err = Unescape(fields[sep+2]); err != nil {
		return Mount{}, fmt.Errorf("%q: source: %w", line, err)
	}
	// Super options are the rest of the line: a cgroup release_agent
	// value is escaped, but be lenient with anything after a stray space.
	if m.SuperOptions, err = splitOptions(strings.Join(fields[sep+3:], " ")); err != nil {
		return Mount{}, fmt.Errorf("%q: super options: %w", line, err)
	}
	return m, nil
}

func splitOptions(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := Unescape(p)
		if err != nil {
			return nil, err
		}
		parts[i] = u
	}
	return parts, nil
}

// Unescape decodes the kernel's octal escapes (\040 for a space, \011 tab,
// \012 newline, \134 backslash, and any other \ooo). A backslash not
// followed by three octal digits is an error.
func Unescape(s string) (string, error) {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		if i+4 > len(s) {
			return "", fmt.Errorf("%q: truncated escape at byte %d", s, i)
		}
		v := 0
		for _, c := range []byte(s[i+1 : i+4]) {
			if c < '0' || c > '7' {
				return "", fmt.Errorf("%q: bad escape %q at byte %d", s, s[i:i+4], i)
			}
			v = v*8 + int(c-'0')
		}
		if v > 0xff {
			return "", fmt.Errorf("%q: escape %q out of range", s, s[i:i+4])
		}
		b.WriteByte(byte(v))
		s = s[i+4:]
		i = strings.IndexByte(s, '\\')
	}
	b.WriteString(s)
	return b.String(), nil
}

// Escape encodes s as the kernel writes a path in mountinfo: space, tab,
// newline and backslash become octal escapes. Unescape(Escape(s)) == s.
func Escape(s string) string {
	if !strings.ContainsAny(s, " \t\n\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// HasOption reports whether opts holds o exactly.
func HasOption(opts []string, o string) bool { return slices.Contains(opts, o) }

// ReadOnly reports whether the mount is read-only (per mount or per
// superblock).
func (m Mount) ReadOnly() bool {
	return HasOption(m.Options, "ro") || HasOption(m.SuperOptions, "ro")
}
