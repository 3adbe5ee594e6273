package semantic

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DeviceType is the kind of device node a rule matches.
type DeviceType byte

const (
	// AnyDevice matches character and block devices ("a").
	AnyDevice DeviceType = 'a'
	// CharDevice matches character devices ("c").
	CharDevice DeviceType = 'c'
	// BlockDevice matches block devices ("b").
	BlockDevice DeviceType = 'b'
)

// String renders the type as the kernel does: "a", "b" or "c".
func (t DeviceType) String() string { return string(rune(t)) }

func (t DeviceType) valid() bool { return t == AnyDevice || t == CharDevice || t == BlockDevice }

// Matches reports whether a rule of type t covers a device of type dev
// (dev is CharDevice or BlockDevice).
func (t DeviceType) Matches(dev DeviceType) bool { return t == AnyDevice || t == dev }

// Access is a set of device permissions.
type Access uint8

const (
	// Read allows reading the device.
	Read Access = 1 << iota
	// Write allows writing the device.
	Write
	// Mknod allows creating a node for the device.
	Mknod
	// AllAccess is read, write and mknod ("rwm").
	AllAccess = Read | Write | Mknod
)

// String renders the access as the kernel does: a subset of "rwm" in that
// order.
func (a Access) String() string {
	var b strings.Builder
	if a&Read != 0 {
		b.WriteByte('r')
	}
	if a&Write != 0 {
		b.WriteByte('w')
	}
	if a&Mknod != 0 {
		b.WriteByte('m')
	}
	return b.String()
}

// ParseAccess parses a non-empty subset of "rwm" in any order.
func ParseAccess(s string) (Access, error) {
	if s == "" {
		return 0, invalidf("device access %q: empty; want a subset of \"rwm\"", s)
	}
	var a Access
	for _, c := range s {
		var bit Access
		switch c {
		case 'r':
			bit = Read
		case 'w':
			bit = Write
		case 'm':
			bit = Mknod
		default:
			return 0, invalidf("device access %q: %q is not one of r, w, m", s, c)
		}
		if a&bit != 0 {
			return 0, invalidf("device access %q: %q repeated", s, c)
		}
		a |= bit
	}
	return a, nil
}

// Wildcard as a Major or Minor matches every number ("*").
const Wildcard int64 = -1

// MaxDeviceNumber bounds majors and minors: the kernel's dev_t has a 12-bit
// major and a 20-bit minor.
const (
	MaxMajor int64 = 1<<12 - 1
	MaxMinor int64 = 1<<20 - 1
)

// DeviceRule is one entry of a device access list.
//
// A rule allows or denies Access to the devices of Type whose numbers match
// Major and Minor (Wildcard matches any). Rules are evaluated in order, per
// access bit: for each of r, w and m, the last rule that matches the device
// and names that bit decides; a bit that no rule names follows the list's
// default. An access request is granted when every requested bit is
// allowed. See Devices.Allowed, the reference evaluator every driver
// agrees with.
type DeviceRule struct {
	Allow  bool       `json:"allow"`
	Type   DeviceType `json:"-"`
	Major  int64      `json:"-"`
	Minor  int64      `json:"-"`
	Access Access     `json:"-"`
}

// Spec renders the rule's device part as the kernel's v1 syntax: "c 1:3 rwm".
func (r DeviceRule) Spec() string {
	return fmt.Sprintf("%c %s:%s %s", r.Type, devNum(r.Major), devNum(r.Minor), r.Access)
}

// String renders the rule as "allow c 1:3 rwm" or "deny b *:* w".
func (r DeviceRule) String() string {
	verb := "deny"
	if r.Allow {
		verb = "allow"
	}
	return verb + " " + r.Spec()
}

func devNum(n int64) string {
	if n == Wildcard {
		return "*"
	}
	return strconv.FormatInt(n, 10)
}

// MatchesDevice reports whether the rule's type and numbers cover the device
// (typ is CharDevice or BlockDevice), regardless of access.
func (r DeviceRule) MatchesDevice(typ DeviceType, major, minor int64) bool {
	return r.Type.Matches(typ) &&
		(r.Major == Wildcard || r.Major == major) &&
		(r.Minor == Wildcard || r.Minor == minor)
}

// Validate checks the rule's fields.
func (r DeviceRule) Validate() error {
	if !r.Type.valid() {
		return invalidf("device rule %q: type %q is not a, b or c", r.String(), rune(r.Type))
	}
	if r.Major != Wildcard && (r.Major < 0 || r.Major > MaxMajor) {
		return invalidf("device rule %q: major %d out of range 0..%d or *", r.String(), r.Major, MaxMajor)
	}
	if r.Minor != Wildcard && (r.Minor < 0 || r.Minor > MaxMinor) {
		return invalidf("device rule %q: minor %d out of range 0..%d or *", r.String(), r.Minor, MaxMinor)
	}
	if r.Type == AnyDevice && (r.Major != Wildcard || r.Minor != Wildcard) {
		return invalidf("device rule %q: type a (any) needs *:* (the kernel has no numbered \"a\" rule)", r.String())
	}
	if r.Access == 0 || r.Access&^AllAccess != 0 {
		return invalidf("device rule %q: access must be a non-empty subset of rwm", r.String())
	}
	return nil
}

// MarshalJSON renders a rule as {"allow":true,"rule":"c 1:3 rwm"}.
func (r DeviceRule) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Allow bool   `json:"allow"`
		Rule  string `json:"rule"`
	}{r.Allow, r.Spec()})
}

// UnmarshalJSON accepts what MarshalJSON writes. The rule must be in the
// "TYPE MAJOR:MINOR ACCESS" form: a node path is not resolved here, so
// decoding never depends on the decoding host's /dev.
func (r *DeviceRule) UnmarshalJSON(b []byte) error {
	var v struct {
		Allow bool   `json:"allow"`
		Rule  string `json:"rule"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	rule, err := parseDeviceSpec(v.Rule)
	if err != nil {
		return err
	}
	rule.Allow = v.Allow
	*r = rule
	return nil
}

// ParseDeviceRule parses a device rule as a user types it and returns it
// with Allow set to allow. Accepted forms:
//
//	c 1:3 rwm      type, major:minor, access (the kernel's v1 syntax)
//	b *:* r        wildcards
//	a              every device, all access (also "a *:* rwm")
//	/dev/null      a device node: stat'ed for its type and numbers, access rwm
//	/dev/null:rw   a device node with explicit access
//
// Node paths are resolved when parsed, so the rule names the device the
// path held at that moment.
func ParseDeviceRule(s string, allow bool) (DeviceRule, error) {
	var (
		r   DeviceRule
		err error
	)
	if strings.HasPrefix(s, "/") {
		r, err = parseDeviceNode(s)
	} else {
		r, err = parseDeviceSpec(s)
	}
	if err != nil {
		return DeviceRule{}, err
	}
	r.Allow = allow
	return r, nil
}

func parseDeviceSpec(s string) (DeviceRule, error) {
	fields := strings.Fields(s)
	if len(fields) == 1 && fields[0] == "a" {
		return DeviceRule{Type: AnyDevice, Major: Wildcard, Minor: Wildcard, Access: AllAccess}, nil
	}
	if len(fields) < 2 || len(fields) > 3 || len(fields[0]) != 1 {
		return DeviceRule{}, invalidf("device rule %q: want \"TYPE MAJOR:MINOR [ACCESS]\" (e.g. \"c 1:3 rwm\") or a /dev path", s)
	}
	r := DeviceRule{Type: DeviceType(fields[0][0]), Access: AllAccess}
	if !r.Type.valid() {
		return DeviceRule{}, invalidf("device rule %q: type %q is not a, b or c", s, fields[0])
	}
	maj, min, ok := strings.Cut(fields[1], ":")
	if !ok {
		return DeviceRule{}, invalidf("device rule %q: %q is not MAJOR:MINOR", s, fields[1])
	}
	var err error
	if r.Major, err = parseDevNum(maj, MaxMajor); err != nil {
		return DeviceRule{}, invalidf("device rule %q: major %v", s, err)
	}
	if r.Minor, err = parseDevNum(min, MaxMinor); err != nil {
		return DeviceRule{}, invalidf("device rule %q: minor %v", s, err)
	}
	if len(fields) == 3 {
		if r.Access, err = ParseAccess(fields[2]); err != nil {
			return DeviceRule{}, invalidf("device rule %q: %v", s, err)
		}
	}
	if err := r.Validate(); err != nil {
		return DeviceRule{}, err
	}
	return r, nil
}

func parseDevNum(s string, limit int64) (int64, error) {
	if s == "*" {
		return Wildcard, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || !isDecimal(s) || n > limit {
		return 0, fmt.Errorf("%q is not * or a decimal number 0..%d", s, limit)
	}
	return n, nil
}

func parseDeviceNode(s string) (DeviceRule, error) {
	path, access := s, AllAccess
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		a, err := ParseAccess(s[i+1:])
		switch {
		case err == nil:
			path, access = s[:i], a
		case !isDeviceNode(s):
			// Names under /dev/disk/by-path hold colons of their own, so a
			// suffix that is not an access list may be part of the name.
			return DeviceRule{}, invalidf("device rule %q: %v", s, err)
		}
	}
	typ, major, minor, err := StatDevice(path)
	if err != nil {
		return DeviceRule{}, err
	}
	return DeviceRule{Type: typ, Major: major, Minor: minor, Access: access}, nil
}

// StatDevice returns the type and numbers of the device node at path,
// following symlinks (so /dev/stdin style links name their target).
func StatDevice(path string) (DeviceType, int64, int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		// Quoted: the path is the caller's input and may hold any byte.
		return 0, 0, 0, &Error{Op: "stat device", Group: fmt.Sprintf("%q", path), Kind: classify(err), Err: err}
	}
	var typ DeviceType
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = CharDevice
	case unix.S_IFBLK:
		typ = BlockDevice
	default:
		return 0, 0, 0, invalidf("device %q is not a character or block device node", path)
	}
	return typ, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)), nil
}

func isDeviceNode(path string) bool {
	_, _, _, err := StatDevice(path)
	return err == nil
}

// DevicePolicy is the decision for accesses no rule names.
type DevicePolicy string

const (
	// DenyByDefault denies every access no rule allows.
	DenyByDefault DevicePolicy = "deny"
	// AllowByDefault allows every access no rule denies.
	AllowByDefault DevicePolicy = "allow"
)

// Devices is a device access list: a default and ordered rules.
type Devices struct {
	Default DevicePolicy `json:"default"`
	Rules   []DeviceRule `json:"rules,omitempty"`
}

// Validate checks the default and every rule.
func (d *Devices) Validate() error {
	if d.Default != DenyByDefault && d.Default != AllowByDefault {
		return invalidf("device default %q: want %q or %q", d.Default, DenyByDefault, AllowByDefault)
	}
	for _, r := range d.Rules {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Allowed returns the subset of AllAccess that the list grants on the
// device of type typ (CharDevice or BlockDevice) with the given numbers.
// It is the reference evaluator: drivers' enforcement agrees with it.
func (d *Devices) Allowed(typ DeviceType, major, minor int64) Access {
	var granted Access
	if d.Default == AllowByDefault {
		granted = AllAccess
	}
	for _, r := range d.Rules {
		if !r.MatchesDevice(typ, major, minor) {
			continue
		}
		if r.Allow {
			granted |= r.Access
		} else {
			granted &^= r.Access
		}
	}
	return granted
}

// Allows reports whether every bit of want is granted on the device.
func (d *Devices) Allows(typ DeviceType, major, minor int64, want Access) bool {
	return want&^d.Allowed(typ, major, minor) == 0
}
