package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/cgsem/cgsem/semantic"
)

// Device lists. systemd says devices with DevicePolicy= and an allow list,
// DeviceAllow=, whose entries are a node path with the access ("rwm") or a
// group "char-NAME" / "block-NAME" of the majors /proc/devices lists under
// NAME; "char-*" is every character device. It has no deny entries. The
// semantic list (a default and ordered allow and deny rules, last match wins
// per access bit) is compiled into such an allow list when it can be said
// exactly, and refused otherwise:
//
//   - c 1:3 rw           "/dev/char/1:3" rw (systemd parses the numbers out
//     of /dev/char and /dev/block paths without a node there)
//   - c *:* r, b *:* r   "char-*" r, "block-*" r; a *:* is both
//   - c 136:* rw         "char-pts" rw, only when /proc/devices names major
//     136 once and gives no other character major that name (the pts
//     majors 136-143 all read "pts" where more are registered, and "char-pts"
//     would allow them all)
//   - c *:3              refused: no entry names a minor of every major
//   - a deny rule        taken out of the allow entries it covers whole
//     (allow c 1:3 rwm, deny c 1:3 m is "/dev/char/1:3" rw); one that would
//     carve an exception out of a wider entry is refused
//   - default allow      an allow of everything first, so a list that
//     allows everything compiles to DevicePolicy=auto with no entries, and
//     one with deny rules is refused unless they cover that whole entry
//
// A list that denies by default is DevicePolicy=strict: nothing but the
// entries, not even the /dev/null and friends that "closed" adds.

// devEntry is one allow entry of a compiled list.
type devEntry struct {
	typ semantic.DeviceType // 'c' or 'b'

	major, minor int64
	access       semantic.Access
}

func (e devEntry) String() string {
	return semantic.DeviceRule{Allow: true, Type: e.typ, Major: e.major, Minor: e.minor, Access: e.access}.Spec()
}

// typesOverlap and covers relate device selectors. A selector is a type, a
// major and a minor, each possibly a wildcard.
func typesOverlap(rule, entry semantic.DeviceType) bool {
	return rule == semantic.AnyDevice || rule == entry
}

func numOverlap(a, b int64) bool { return a == semantic.Wildcard || b == semantic.Wildcard || a == b }

// covers reports whether selector r includes every device of selector e.
func covers(r semantic.DeviceRule, e devEntry) bool {
	return (r.Type == semantic.AnyDevice || r.Type == e.typ) &&
		(r.Major == semantic.Wildcard || r.Major == e.major) &&
		(r.Minor == semantic.Wildcard || r.Minor == e.minor)
}

// compileDevices turns a semantic list into an allow list: ok false with
// a reason when systemd cannot say it exactly.
func compileDevices(d *semantic.Devices) ([]devEntry, error) {
	var entries []devEntry
	// "a" (always both numbers wild) is split into its two types, so a deny
	// of one type can take its bits out of the other's entry whole.
	add := func(t semantic.DeviceType, major, minor int64, acc semantic.Access) {
		if t == semantic.AnyDevice {
			entries = append(entries, devEntry{semantic.CharDevice, major, minor, acc}, devEntry{semantic.BlockDevice, major, minor, acc})
			return
		}
		entries = append(entries, devEntry{t, major, minor, acc})
	}
	if d.Default == semantic.AllowByDefault {
		add(semantic.AnyDevice, semantic.Wildcard, semantic.Wildcard, semantic.AllAccess)
	}
	for _, r := range d.Rules {
		if r.Allow {
			add(r.Type, r.Major, r.Minor, r.Access)
			continue
		}
		for i := range entries {
			e := &entries[i]
			if e.access&r.Access == 0 || !typesOverlap(r.Type, e.typ) || !numOverlap(r.Major, e.major) || !numOverlap(r.Minor, e.minor) {
				continue
			}
			if !covers(r, *e) {
				return nil, fmt.Errorf("%s takes an exception out of the allowed %s, and systemd's DeviceAllow= has no deny entries", r, e)
			}
			e.access &^= r.Access
		}
	}
	entries = slices.DeleteFunc(entries, func(e devEntry) bool { return e.access == 0 })
	return entries, nil
}

// allowsAll reports whether entries grant every access on every device.
func allowsAll(entries []devEntry) bool {
	var c, b semantic.Access
	for _, e := range entries {
		if e.major != semantic.Wildcard || e.minor != semantic.Wildcard {
			continue
		}
		if e.typ == semantic.CharDevice {
			c |= e.access
		} else {
			b |= e.access
		}
	}
	return c == semantic.AllAccess && b == semantic.AllAccess
}

// deviceAllow is one DeviceAllow= entry as D-Bus carries it: a(ss).
type deviceAllow struct {
	Path   string
	Access string
}

// majorNames is /proc/devices: the names of the registered majors of each
// type, as systemd's char-NAME and block-NAME groups match them.
type majorNames map[semantic.DeviceType]map[int64][]string

// parseProcDevices reads /proc/devices.
func parseProcDevices(data []byte) (majorNames, error) {
	out := majorNames{semantic.CharDevice: {}, semantic.BlockDevice: {}}
	var typ semantic.DeviceType
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case line == "Character devices:":
			typ = semantic.CharDevice
			continue
		case line == "Block devices:":
			typ = semantic.BlockDevice
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		major, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || typ == 0 || major < 0 || major > semantic.MaxMajor {
			return nil, fmt.Errorf("/proc/devices line %d: %q is not \"MAJOR NAME\" under a heading", n, line)
		}
		out[typ][major] = append(out[typ][major], strings.TrimSpace(name))
	}
	return out, sc.Err()
}

// groupName returns the NAME whose char-NAME (block-NAME) group is exactly
// major: the major has one name, no other major of the type has it, and it
// holds nothing fnmatch or the unit file syntax would read otherwise.
func (m majorNames) groupName(typ semantic.DeviceType, major int64) (string, error) {
	names := m[typ][major]
	if len(names) != 1 {
		if len(names) == 0 {
			return "", fmt.Errorf("/proc/devices names no %s major %d, and DeviceAllow= says a whole major only by its name", typeWord(typ), major)
		}
		return "", fmt.Errorf("/proc/devices gives %s major %d several names %q", typeWord(typ), major, names)
	}
	name := names[0]
	if strings.ContainsAny(name, "*?[]\\ \t/") {
		return "", fmt.Errorf("%s major %d is named %q, which a char-/block- group cannot match alone", typeWord(typ), major, name)
	}
	for other, ns := range m[typ] {
		if other != major && slices.Contains(ns, name) {
			return "", fmt.Errorf("%s majors %d and %d are both named %q in /proc/devices, so %s-%s would allow both", typeWord(typ), major, other, name, typeWord(typ), name)
		}
	}
	return name, nil
}

// majorsNamed lists the majors a char-PATTERN (block-PATTERN) group allows,
// matching as systemd does (fnmatch).
func (m majorNames) majorsNamed(typ semantic.DeviceType, pattern string) []int64 {
	var out []int64
	for major, names := range m[typ] {
		for _, n := range names {
			if ok, _ := path.Match(pattern, n); ok {
				out = append(out, major)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func typeWord(t semantic.DeviceType) string {
	if t == semantic.BlockDevice {
		return "block"
	}
	return "char"
}

// errDevices is wrapped by every refusal of a list systemd cannot say.
var errDevices = errors.New("systemd cannot express this device list")

// deviceProperties compiles a list into DevicePolicy= and DeviceAllow=.
func deviceProperties(d *semantic.Devices, names majorNames) (policy string, allow []deviceAllow, err error) {
	entries, err := compileDevices(d)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", errDevices, err)
	}
	if allowsAll(entries) {
		return "auto", nil, nil
	}
	for _, e := range entries {
		acc := e.access.String()
		switch {
		case e.major == semantic.Wildcard && e.minor == semantic.Wildcard:
			allow = append(allow, deviceAllow{typeWord(e.typ) + "-*", acc})
		case e.major == semantic.Wildcard:
			return "", nil, fmt.Errorf("%w: %s names a minor of every major, which DeviceAllow= has no entry for", errDevices, e)
		case e.minor == semantic.Wildcard:
			name, err := names.groupName(e.typ, e.major)
			if err != nil {
				return "", nil, fmt.Errorf("%w: %s: %w", errDevices, e, err)
			}
			allow = append(allow, deviceAllow{typeWord(e.typ) + "-" + name, acc})
		default:
			allow = append(allow, deviceAllow{fmt.Sprintf("/dev/%s/%d:%d", typeWord(e.typ), e.major, e.minor), acc})
		}
	}
	return "strict", allow, nil
}

// closedDefaults are the devices DevicePolicy=closed (and auto with a
// DeviceAllow=) adds to the list: /dev/null, zero, full, random, urandom,
// tty and ptmx, systemd's inaccessible nodes (c 0:0 and b 0:0), and the pts
// majors read and write.
var closedDefaults = []semantic.DeviceRule{
	{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 5, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 7, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 8, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 9, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 5, Minor: 0, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 5, Minor: 2, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.CharDevice, Major: 0, Minor: 0, Access: semantic.AllAccess},
	{Allow: true, Type: semantic.BlockDevice, Major: 0, Minor: 0, Access: semantic.AllAccess},
}

// nodeResolver finds the device a node path names, as systemd would see it.
type nodeResolver func(path string) (typ semantic.DeviceType, major, minor int64, ok bool)

// devicesFromProperties reads DevicePolicy= and DeviceAllow= back into a
// semantic list. Entries systemd cannot resolve either (a node path that
// does not exist) grant nothing and are left out.
func devicesFromProperties(policy string, allow []deviceAllow, names majorNames, resolve nodeResolver) *semantic.Devices {
	if policy == "auto" && len(allow) == 0 {
		return &semantic.Devices{Default: semantic.AllowByDefault}
	}
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	if policy != "strict" {
		d.Rules = append(d.Rules, closedDefaults...)
		for _, m := range names.majorsNamed(semantic.CharDevice, "pts") {
			d.Rules = append(d.Rules, semantic.DeviceRule{Allow: true, Type: semantic.CharDevice, Major: m, Minor: semantic.Wildcard, Access: semantic.Read | semantic.Write})
		}
	}
	for _, a := range allow {
		acc, err := semantic.ParseAccess(a.Access)
		if err != nil {
			continue
		}
		add := func(t semantic.DeviceType, major, minor int64) {
			d.Rules = append(d.Rules, semantic.DeviceRule{Allow: true, Type: t, Major: major, Minor: minor, Access: acc})
		}
		switch {
		case strings.HasPrefix(a.Path, "char-") || strings.HasPrefix(a.Path, "block-"):
			t, pattern := semantic.CharDevice, strings.TrimPrefix(a.Path, "char-")
			if strings.HasPrefix(a.Path, "block-") {
				t, pattern = semantic.BlockDevice, strings.TrimPrefix(a.Path, "block-")
			}
			if pattern == "*" {
				add(t, semantic.Wildcard, semantic.Wildcard)
				continue
			}
			for _, m := range names.majorsNamed(t, pattern) {
				add(t, m, semantic.Wildcard)
			}
		default:
			if t, major, minor, ok := parseDevPath(a.Path); ok {
				add(t, major, minor)
			} else if t, major, minor, ok := resolve(a.Path); ok {
				add(t, major, minor)
			}
		}
	}
	return d
}

// parseDevPath reads the numbers out of "/dev/char/M:m" and "/dev/block/M:m",
// as systemd does without looking for a node.
func parseDevPath(p string) (semantic.DeviceType, int64, int64, bool) {
	var t semantic.DeviceType
	rest, ok := strings.CutPrefix(p, "/dev/char/")
	if ok {
		t = semantic.CharDevice
	} else if rest, ok = strings.CutPrefix(p, "/dev/block/"); ok {
		t = semantic.BlockDevice
	} else {
		return 0, 0, 0, false
	}
	ma, mi, ok := strings.Cut(rest, ":")
	major, err1 := strconv.ParseInt(ma, 10, 64)
	minor, err2 := strconv.ParseInt(mi, 10, 64)
	if !ok || err1 != nil || err2 != nil || major < 0 || major > semantic.MaxMajor || minor < 0 || minor > semantic.MaxMinor {
		return 0, 0, 0, false
	}
	return t, major, minor, true
}
