package systemd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cgsem/cgsem/internal/digest"
	"github.com/cgsem/cgsem/semantic"
)

// Unit names. A group is a slice; the slice of a path is its parent's slice
// name with one more dash-separated component, as systemd derives the
// cgroup tree from slice names: libvirt/lxc/web1 below the root slice "-.slice"
// is libvirt.slice, libvirt-lxc.slice and libvirt-lxc-web1.slice. Each
// component is a segment escaped as systemd-escape does, so a "-" inside a
// segment (\x2d) is never taken for a level separator.

const (
	sliceSuffix = ".slice"
	scopeSuffix = ".scope"
	rootSlice   = "-.slice"
	// maxUnitName is the longest unit name systemd takes (UNIT_NAME_MAX is
	// 256 with the NUL). One byte is kept spare for the "_" that systemd
	// puts before a cgroup directory name that could pass for an
	// attribute file (cg_escape), so the directory fits NAME_MAX too.
	maxUnitName = 254
	// hashMark starts a component that stands for a segment too long to
	// escape into the name: "\x5f" is an escaped "_", which escape never
	// writes ("_" is kept as it is), so no escaped segment starts so.
	hashMark = `\x5f` + "h"
	// hashHex is how many hex digits of the segment's SHA-256 a hashed
	// component keeps: 128 bits.
	hashHex = 32
)

// unitChar reports whether systemd keeps c as it is in an escaped name.
func unitChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.'
}

const hexDigits = "0123456789abcdef"

// escapeSegment escapes one path segment as a unit name component, as
// systemd's unit_name_escape does: every byte outside [a-zA-Z0-9:_.] becomes
// \xNN (lower-case hex), "-" and "\" included, and so does a leading ".".
func escapeSegment(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unitChar(c) && (c != '.' || i > 0) {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\x`)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// unescapeSegment inverts escapeSegment. It accepts only the canonical form
// escapeSegment writes, so a name that did not come from it (an upper-case
// \X, an escaped letter, a raw "-") is refused rather than read as a segment
// it would not give back: unescapeSegment(x) == s exactly when
// escapeSegment(s) == x.
func unescapeSegment(e string) (string, error) {
	if e == "" {
		return "", errors.New("empty name component")
	}
	var b strings.Builder
	b.Grow(len(e))
	for i := 0; i < len(e); i++ {
		c := e[i]
		if c != '\\' {
			if !unitChar(c) {
				return "", fmt.Errorf("byte %q at %d is not kept as is by systemd's escaping", c, i)
			}
			if c == '.' && i == 0 {
				return "", errors.New("a leading '.' is escaped by systemd")
			}
			b.WriteByte(c)
			continue
		}
		if i+3 >= len(e) || e[i+1] != 'x' {
			return "", fmt.Errorf("incomplete escape at %d", i)
		}
		hi, lo := strings.IndexByte(hexDigits, e[i+2]), strings.IndexByte(hexDigits, e[i+3])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("escape at %d is not lower-case hex", i)
		}
		v := byte(hi<<4 | lo)
		if unitChar(v) && (v != '.' || i > 0) {
			return "", fmt.Errorf("escape at %d stands for %q, which systemd keeps as is", i, v)
		}
		b.WriteByte(v)
		i += 3
	}
	return b.String(), nil
}

// hashComponent is the component that stands for a segment whose escaped
// form does not fit in a unit name.
func hashComponent(seg string) string {
	sum := digest.SHA256([]byte(seg))
	return hashMark + hex.EncodeToString(sum[:])[:hashHex]
}

// isHashComponent reports whether a component is a hashComponent.
func isHashComponent(c string) bool {
	if len(c) != len(hashMark)+hashHex || !strings.HasPrefix(c, hashMark) {
		return false
	}
	for _, d := range c[len(hashMark):] {
		if !strings.ContainsRune(hexDigits, d) {
			return false
		}
	}
	return true
}

// namer maps paths below a root slice to unit names. Its zero value is not
// valid; use newNamer.
type namer struct {
	root string // the root slice, "-.slice" or "a-b.slice"
	// base is the root slice's name without ".slice" ("" for "-.slice"):
	// a child's name is base + "-" + component + ".slice".
	base string
}

func newNamer(root string) (namer, error) {
	if root == rootSlice {
		return namer{root: root}, nil
	}
	prefix, ok := strings.CutSuffix(root, sliceSuffix)
	if !ok || !validSlicePrefix(prefix) {
		return namer{}, fmt.Errorf("%q is not a slice unit name", root)
	}
	return namer{root: root, base: prefix}, nil
}

// validSlicePrefix checks a slice name without its suffix: dash-separated
// components, none empty, of the characters unit names allow.
func validSlicePrefix(p string) bool {
	if p == "" || len(p)+len(sliceSuffix) > maxUnitName+1 {
		return false
	}
	for comp := range strings.SplitSeq(p, "-") {
		if comp == "" {
			return false
		}
		for i := 0; i < len(comp); i++ {
			if c := comp[i]; !unitChar(c) && c != '\\' {
				return false
			}
		}
	}
	return true
}

// errNameTooLong is wrapped when a path has no unit name.
var errNameTooLong = errors.New("too long for a systemd unit name")

// component returns the name component of one segment below parentPrefix:
// the escaped segment, or its hash when the escaped form would make the
// unit name too long.
func component(parentPrefix, seg string) string {
	esc := escapeSegment(seg)
	if len(joinPrefix(parentPrefix, esc))+len(sliceSuffix) <= maxUnitName {
		return esc
	}
	return hashComponent(seg)
}

func joinPrefix(parent, comp string) string {
	if parent == "" {
		return comp
	}
	return parent + "-" + comp
}

// prefix returns the slice name of p without ".slice"; "" for the root
// slice "-.slice" itself.
func (n namer) prefix(p semantic.Path) (string, error) {
	pre := n.base
	for _, seg := range p.Segments() {
		pre = joinPrefix(pre, component(pre, seg))
		if len(pre)+len(sliceSuffix) > maxUnitName {
			return "", fmt.Errorf("path %q: %w (systemd's limit is %d bytes)", p, errNameTooLong, maxUnitName)
		}
	}
	return pre, nil
}

// slice returns the slice unit of p (the root slice for the root).
func (n namer) slice(p semantic.Path) (string, error) {
	if p.IsRoot() {
		return n.root, nil
	}
	pre, err := n.prefix(p)
	if err != nil {
		return "", err
	}
	return pre + sliceSuffix, nil
}

// scope returns the scope unit that holds p's processes: the slice's name
// with ".scope" for ".slice", placed in that slice. Unit names are global,
// so a fixed name such as "cgsem.scope" could not be used in every slice;
// the slice's own prefix is unique, and a scope never collides with a child
// slice, whose name has one more component. The root group has no scope.
func (n namer) scope(p semantic.Path) (string, error) {
	if p.IsRoot() {
		return "", errors.New("the root slice holds no processes of cgsem's")
	}
	pre, err := n.prefix(p)
	if err != nil {
		return "", err
	}
	return pre + scopeSuffix, nil
}

// childComponent returns the component of a unit that is a direct child
// slice of the slice with prefix parentPrefix, or ok false when name is
// not one.
func childComponent(parentPrefix, name string) (string, bool) {
	rest, ok := strings.CutSuffix(name, sliceSuffix)
	if !ok || name == rootSlice {
		return "", false
	}
	if parentPrefix != "" {
		if rest, ok = strings.CutPrefix(rest, parentPrefix+"-"); !ok {
			return "", false
		}
	}
	if rest == "" || strings.Contains(rest, "-") {
		return "", false
	}
	return rest, true
}

// segmentOf turns a child slice's component back into its segment. A
// hashed component is resolved through desc, the unit's Description, which
// names the path (descriptionOf); the hash must match. ok is false for a
// unit that does not follow cgsem's naming.
func segmentOf(parentPrefix, comp, desc string) (string, bool) {
	if isHashComponent(comp) {
		seg := lastSegment(desc)
		if seg == "" || hashComponent(seg) != comp || component(parentPrefix, seg) != comp {
			return "", false
		}
		return seg, semantic.ValidateSegment(seg) == nil
	}
	seg, err := unescapeSegment(comp)
	if err != nil || semantic.ValidateSegment(seg) != nil || component(parentPrefix, seg) != comp {
		return "", false
	}
	return seg, true
}

// descriptionOf is the Description of a group's slice: it names the path,
// which is how a hashed name is read back.
func descriptionOf(p semantic.Path) string { return "cgsem group " + p.String() }

// lastSegment reads the last segment from a descriptionOf text.
func lastSegment(desc string) string {
	rest, ok := strings.CutPrefix(desc, "cgsem group ")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest
}

// cgroupControllers are the names systemd's cg_escape guards against: a
// cgroup directory "cpu.slice" could pass for an attribute file of a
// controller "cpu", so systemd names it "_cpu.slice".
var cgroupControllers = []string{
	"cpu", "cpuacct", "cpuset", "io", "blkio", "memory", "devices", "pids",
	"bpf-firewall", "bpf-devices", "bpf-foreign", "bpf-socket-bind", "bpf-restrict-network-interfaces",
}

// cgroupName is the cgroup directory name systemd gives a unit (cg_escape).
func cgroupName(unit string) string {
	if unit == "" || unit[0] == '_' || unit[0] == '.' || unit == "notify_on_release" || unit == "release_agent" ||
		unit == "tasks" || strings.HasPrefix(unit, "cgroup.") {
		return "_" + unit
	}
	if dot := strings.LastIndexByte(unit, '.'); dot >= 0 {
		for _, c := range cgroupControllers {
			if unit[:dot] == c {
				return "_" + unit
			}
		}
	}
	return unit
}

// sliceCgroup is the cgroup path systemd gives a slice: one directory per
// level from the root slice down ("/a.slice/a-b.slice"); "/" for "-.slice".
func sliceCgroup(slice string) (string, error) {
	if slice == rootSlice {
		return "/", nil
	}
	prefix, ok := strings.CutSuffix(slice, sliceSuffix)
	if !ok || !validSlicePrefix(prefix) {
		return "", fmt.Errorf("%q is not a slice unit name", slice)
	}
	var b strings.Builder
	for i := 0; i <= len(prefix); i++ {
		if i == len(prefix) || prefix[i] == '-' {
			b.WriteByte('/')
			b.WriteString(cgroupName(prefix[:i] + sliceSuffix))
		}
	}
	return b.String(), nil
}

// parseRoot reads Options.Root: "" for the root slice, a slice unit name
// ("machine.slice"), or a slice's cgroup path as /proc/self/cgroup shows it
// ("/machine.slice", "/a.slice/a-b.slice"), which must be the one systemd
// derives from the slice's name.
func parseRoot(root string) (string, error) {
	switch {
	case root == "" || root == "/" || root == rootSlice:
		return rootSlice, nil
	case root == semantic.RootSelf:
		return "", errors.New(`systemd places units only in slices and this process's own cgroup is a scope or service: give the slice to manage ("machine.slice")`)
	case strings.HasPrefix(root, "/"):
		last := root[strings.LastIndexByte(root, '/')+1:]
		name := strings.TrimPrefix(last, "_")
		if cg, err := sliceCgroup(name); err != nil || cg != strings.TrimSuffix(root, "/") {
			return "", fmt.Errorf("%q is not the cgroup of a slice (a slice %q would be at %q)", root, name, cg)
		}
		return name, nil
	default:
		if _, err := sliceCgroup(root); err != nil {
			return "", err
		}
		return root, nil
	}
}
