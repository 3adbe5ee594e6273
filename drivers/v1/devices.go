package v1

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/cgsem/cgsem/semantic"
)

// The v1 devices controller, as the kernel implements it
// (security/device_cgroup.c), is a behaviour and an exception list:
//
//   - default deny: an access is granted when ONE exception matching the
//     device holds every requested bit;
//   - default allow: an access is refused when any exception matching the
//     device holds any requested bit.
//
// Exceptions are keyed by (type c or b, major, minor), each number a value
// or "*"; writing a key again ORs its bits in, writing it to the opposite
// file clears bits of that exact key. Writing "a" to devices.deny empties
// the list in default deny; writing "a" to devices.allow empties it (then
// copies the parent's) in default allow; both fail while the group has
// children. devices.list shows the exceptions in default deny, but only
// "a *:* rwm" in default allow, whatever exceptions it holds.
//
// The kernel asks for r, w or rw (open) and m (mknod).

// devKey is the device pattern of one exception.
type devKey struct {
	typ          semantic.DeviceType // CharDevice or BlockDevice
	major, minor int64               // semantic.Wildcard for "*"
}

func (k devKey) matches(typ semantic.DeviceType, major, minor int64) bool {
	return k.typ == typ && (k.major == semantic.Wildcard || k.major == major) &&
		(k.minor == semantic.Wildcard || k.minor == minor)
}

func (k devKey) spec(a semantic.Access) string {
	return semantic.DeviceRule{Type: k.typ, Major: k.major, Minor: k.minor, Access: a}.Spec()
}

// specificity orders keys most specific first: both numbers, one, none.
func (k devKey) specificity() int {
	n := 0
	if k.major == semantic.Wildcard {
		n++
	}
	if k.minor == semantic.Wildcard {
		n++
	}
	return n
}

func compareKeys(a, b devKey) int {
	return cmp.Or(cmp.Compare(a.typ, b.typ), cmp.Compare(a.major, b.major), cmp.Compare(a.minor, b.minor))
}

// sortKeys sorts keys by compare. (sort.Slice, not slices.SortFunc:
// see semantic.SortIOLimits.)
func sortKeys(keys []devKey, compare func(a, b devKey) int) []devKey {
	sort.Slice(keys, func(i, j int) bool { return compare(keys[i], keys[j]) < 0 })
	return keys
}

// devState is a devices group as the kernel holds it.
type devState struct {
	allow bool // default allow (exceptions deny); false: default deny (exceptions allow)
	ex    map[devKey]semantic.Access
}

// kernelRequests are the access sets the kernel checks at once.
var kernelRequests = []semantic.Access{semantic.Read, semantic.Write, semantic.Read | semantic.Write, semantic.Mknod}

// grants evaluates a request as devcgroup_legacy_check_permission does.
func (s devState) grants(typ semantic.DeviceType, major, minor int64, want semantic.Access) bool {
	if s.allow {
		for k, a := range s.ex {
			if k.matches(typ, major, minor) && a&want != 0 {
				return false
			}
		}
		return true
	}
	for k, a := range s.ex {
		if k.matches(typ, major, minor) && want&^a == 0 {
			return true
		}
	}
	return false
}

func (s devState) clone() devState {
	return devState{allow: s.allow, ex: maps.Clone(s.ex)}
}

// sortedKeys lists the exceptions in a fixed order, so writes are
// deterministic.
func (s devState) sortedKeys() []devKey {
	return sortKeys(slices.Collect(maps.Keys(s.ex)), compareKeys)
}

// devicesFromList reads devices.list: "a *:* rwm" alone is default allow
// (whose deny exceptions the kernel does not show); anything else is
// default deny with those exceptions.
func devicesFromList(rules []semantic.DeviceRule) devState {
	if len(rules) == 1 && rules[0].Type == semantic.AnyDevice {
		return devState{allow: true, ex: map[devKey]semantic.Access{}}
	}
	s := devState{ex: map[devKey]semantic.Access{}}
	for _, r := range rules {
		for _, typ := range []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice} {
			if r.Type.Matches(typ) {
				s.ex[devKey{typ, r.Major, r.Minor}] |= r.Access
			}
		}
	}
	return s
}

// semanticDevices renders a kernel state as the semantic list it means.
// A default-allow state reads as allow with no rules: its exceptions are
// not visible, and cgsem never creates any (see compileDevices).
func (s devState) semanticDevices() *semantic.Devices {
	if s.allow {
		return &semantic.Devices{Default: semantic.AllowByDefault}
	}
	d := &semantic.Devices{Default: semantic.DenyByDefault}
	for _, k := range s.sortedKeys() {
		d.Rules = append(d.Rules, semantic.DeviceRule{Allow: true, Type: k.typ, Major: k.major, Minor: k.minor, Access: s.ex[k]})
	}
	return d
}

// devClasses partitions every device of one type by the numbers the rules
// name: each named major (or any other major) times each named minor (or
// any other minor). Every device of a class is treated alike by the rules.
type devClasses struct {
	typ            semantic.DeviceType
	majors, minors []int64 // named numbers, then one unnamed representative last
}

func classesOf(typ semantic.DeviceType, rules []semantic.DeviceRule) devClasses {
	c := devClasses{typ: typ}
	for _, r := range rules {
		if !r.Type.Matches(typ) {
			continue
		}
		if r.Major != semantic.Wildcard {
			c.majors = append(c.majors, r.Major)
		}
		if r.Minor != semantic.Wildcard {
			c.minors = append(c.minors, r.Minor)
		}
	}
	c.majors = uniq(c.majors)
	c.majors = append(c.majors, unnamed(c.majors))
	c.minors = uniq(c.minors)
	c.minors = append(c.minors, unnamed(c.minors))
	return c
}

func uniq(xs []int64) []int64 {
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	return slices.Compact(xs)
}

// unnamed is the smallest number not in the sorted xs.
func unnamed(xs []int64) int64 {
	n := int64(0)
	for _, x := range xs {
		if x == n {
			n++
		}
	}
	return n
}

// describeClass names a class for messages: "c 1:3", "c 1:(other)".
func (c devClasses) describe(mi, ni int) string {
	num := func(xs []int64, i int) string {
		if i == len(xs)-1 {
			return "(any other)"
		}
		return strconv.FormatInt(xs[i], 10)
	}
	return fmt.Sprintf("%c %s:%s", c.typ, num(c.majors, mi), num(c.minors, ni))
}

// compileDevices finds the v1 state whose kernel evaluation equals the
// reference evaluator (semantic.Devices.Allowed) for every device and
// every request the kernel makes (r, w, rw, m). It returns default allow
// with no exceptions when the list grants everything, otherwise default
// deny with the fewest exceptions it finds. A list is refused
// (ErrNotSupported) when no exception list can express it, in two cases:
//
//   - a wildcard must grant a bit that some device it covers is denied
//     ("allow c *:* rw, deny c 1:5 w"): a default-deny list cannot carve an
//     exception out of a wildcard. Default allow with deny exceptions could,
//     but cgsem never builds that state: devices.list does not show those
//     exceptions, so it could neither be read back nor left without a
//     moment of wider access (reaching it from default deny goes through
//     "allow all");
//
// The kernel also refuses a read-write open of a device that one
// exception grants r and another w, where the reference evaluator allows
// it. compileDevices gives every device the rules name by number its own
// exception, so the list never leaves such a device; the check stays.
func compileDevices(d *semantic.Devices) (devState, error) {
	types := []semantic.DeviceType{semantic.CharDevice, semantic.BlockDevice}
	classes := make([]devClasses, len(types))
	allowed := make([][][]semantic.Access, len(types)) // [type][major index][minor index]
	everything := true
	for ti, typ := range types {
		c := classesOf(typ, d.Rules)
		classes[ti] = c
		allowed[ti] = make([][]semantic.Access, len(c.majors))
		for mi, major := range c.majors {
			allowed[ti][mi] = make([]semantic.Access, len(c.minors))
			for ni, minor := range c.minors {
				a := d.Allowed(typ, major, minor)
				allowed[ti][mi][ni] = a
				everything = everything && a == semantic.AllAccess
			}
		}
	}
	if everything {
		return devState{allow: true, ex: map[devKey]semantic.Access{}}, nil
	}

	s := devState{ex: map[devKey]semantic.Access{}}
	for ti, c := range classes {
		// A key is a named number or the wildcard on each side; its widest
		// grant is what every class it covers allows.
		ex := map[devKey]semantic.Access{}
		for mi := range c.majors {
			for ni := range c.minors {
				for _, k := range keysOf(c, mi, ni) {
					if cur, seen := ex[k]; seen {
						ex[k] = cur & allowed[ti][mi][ni]
					} else {
						ex[k] = allowed[ti][mi][ni]
					}
				}
			}
		}
		maps.DeleteFunc(ex, func(_ devKey, a semantic.Access) bool { return a == 0 })
		for mi := range c.majors {
			for ni := range c.minors {
				if why := classExpressed(ex, c, mi, ni, allowed[ti][mi][ni]); why != "" {
					return devState{}, semantic.NotSupported(Name, semantic.DevicesFeature,
						fmt.Sprintf("a v1 exception list cannot express %s: %s %s", showDevices(d), c.describe(mi, ni), why))
				}
			}
		}
		// Drop keys the others make redundant, most specific first, so the
		// list keeps its wildcards and stays short.
		keys := sortKeys(slices.Collect(maps.Keys(ex)), func(a, b devKey) int {
			return cmp.Or(cmp.Compare(a.specificity(), b.specificity()), compareKeys(a, b))
		})
		for _, k := range keys {
			a := ex[k]
			delete(ex, k)
			if !allExpressed(ex, c, allowed[ti], k) {
				ex[k] = a
			}
		}
		maps.Copy(s.ex, ex)
	}
	return s, nil
}

// compiled is a device list compiled once: its state, and the writes
// that set it on a new group (transition from an unknown state).
type compiled struct {
	state devState
	fresh []devStep
}

// devCache remembers the device list compiled last: a caller usually
// gives every group it creates one policy, and compiling is the costliest
// part of preparing a request. What it holds is shared and never changed.
type devCache struct {
	mu    sync.Mutex
	def   semantic.DevicePolicy
	rules []semantic.DeviceRule // a copy of the list's rules
	c     *compiled
}

// compile returns d compiled, from the cache when d is the list compiled
// last. A list that cannot be compiled is not remembered.
func (dc *devCache) compile(d *semantic.Devices) (*compiled, error) {
	dc.mu.Lock()
	if c := dc.c; c != nil && dc.def == d.Default && slices.Equal(dc.rules, d.Rules) {
		dc.mu.Unlock()
		return c, nil
	}
	dc.mu.Unlock()
	s, err := compileDevices(d)
	if err != nil {
		return nil, err
	}
	c := &compiled{state: s, fresh: transition(nil, s, false)}
	dc.mu.Lock()
	dc.def, dc.rules, dc.c = d.Default, slices.Clone(d.Rules), c
	dc.mu.Unlock()
	return c, nil
}

// keysOf lists the keys that cover class (mi, ni): its numbers where they
// are named, and the wildcards.
func keysOf(c devClasses, mi, ni int) []devKey {
	majors := []int64{semantic.Wildcard}
	if mi < len(c.majors)-1 {
		majors = append(majors, c.majors[mi])
	}
	minors := []int64{semantic.Wildcard}
	if ni < len(c.minors)-1 {
		minors = append(minors, c.minors[ni])
	}
	var ks []devKey
	for _, ma := range majors {
		for _, mn := range minors {
			ks = append(ks, devKey{c.typ, ma, mn})
		}
	}
	return ks
}

// classExpressed says why ex does not give class (mi, ni) exactly want
// under default deny, or "".
func classExpressed(ex map[devKey]semantic.Access, c devClasses, mi, ni int, want semantic.Access) string {
	var union semantic.Access
	both := false
	for _, k := range keysOf(c, mi, ni) {
		a := ex[k]
		union |= a
		both = both || a&(semantic.Read|semantic.Write) == semantic.Read|semantic.Write
	}
	switch {
	case union != want:
		return fmt.Sprintf("needs %q, but every exception that could grant it would grant a device it covers more than its rules allow (%q would be granted)", want.String(), union.String())
	case want&(semantic.Read|semantic.Write) == semantic.Read|semantic.Write && !both:
		return "is granted r and w by different rules, and the kernel refuses a read-write open unless one exception holds both"
	}
	return ""
}

// allExpressed checks every class that key k covers.
func allExpressed(ex map[devKey]semantic.Access, c devClasses, allowed [][]semantic.Access, k devKey) bool {
	for mi, major := range c.majors {
		for ni, minor := range c.minors {
			if !k.matches(c.typ, major, minor) {
				continue
			}
			if classExpressed(ex, c, mi, ni, allowed[mi][ni]) != "" {
				return false
			}
		}
	}
	return true
}

func showDevices(d *semantic.Devices) string {
	return (&semantic.Resources{Devices: d}).String()
}

// devWrite is one write to devices.allow or devices.deny.
type devWrite struct {
	file  string // "devices.allow" or "devices.deny"
	value string // "a" or "c 1:3 rwm"
	// For the model: the key and bits, or all for "a".
	all  bool
	key  devKey
	bits semantic.Access
}

const (
	devicesAllow = "devices.allow"
	devicesDeny  = "devices.deny"
)

func resetWrite(file string) devWrite { return devWrite{file: file, value: "a", all: true} }

func keyWrite(file string, k devKey, a semantic.Access) devWrite {
	return devWrite{file: file, value: k.spec(a), key: k, bits: a}
}

// applyWrite is the kernel's effect of w on s (devcgroup_update_access),
// for a group whose parent allows everything.
func applyWrite(s devState, w devWrite) devState {
	out := s.clone()
	if out.ex == nil {
		out.ex = map[devKey]semantic.Access{}
	}
	switch {
	case w.all:
		out.allow = w.file == devicesAllow
		clear(out.ex)
	case (w.file == devicesAllow) != s.allow: // adds an exception's bits
		out.ex[w.key] |= w.bits
	default: // clears bits of exactly that key
		out.ex[w.key] &^= w.bits
		if out.ex[w.key] == 0 {
			delete(out.ex, w.key)
		}
	}
	return out
}

// devStep is a write and the writes that undo it.
type devStep struct {
	w    devWrite
	undo []devWrite
}

// transition returns the writes that take a group from cur to target
// (as compileDevices made it: default allow with no exceptions, or
// default deny), each with its undo. cur is nil when the state is not
// known (a group just created, which holds a copy of its parent's);
// childless says the group has no children, so "a" may be written.
//
// The invariant, checked against the reference evaluator in the tests:
// the writes first only take access away, each state within the one
// before, down to a state within both cur and target; then only add
// access, each state within target. So no state between two writes
// grants anything cur and target both refuse, and once access is
// narrower than target it only grows toward target. Undoing a prefix
// in reverse walks back through the same states.
func transition(cur *devState, target devState, childless bool) []devStep {
	if target.allow {
		if cur != nil && cur.allow {
			return nil
		}
		w := resetWrite(devicesAllow)
		if cur == nil {
			return []devStep{{w: w}}
		}
		return []devStep{{w: w, undo: restoreDeny(*cur)}}
	}
	additions := func(from devState) []devStep {
		var out []devStep
		for _, k := range target.sortedKeys() {
			if a := target.ex[k] &^ from.ex[k]; a != 0 {
				out = append(out, devStep{w: keyWrite(devicesAllow, k, a), undo: []devWrite{keyWrite(devicesDeny, k, a)}})
			}
		}
		return out
	}
	empty := devState{ex: map[devKey]semantic.Access{}}
	if cur == nil {
		return append([]devStep{{w: resetWrite(devicesDeny)}}, additions(empty)...)
	}
	if cur.allow {
		reset := devStep{w: resetWrite(devicesDeny), undo: []devWrite{resetWrite(devicesAllow)}}
		return append([]devStep{reset}, additions(empty)...)
	}
	var byKey []devStep
	for _, k := range cur.sortedKeys() {
		if r := cur.ex[k] &^ target.ex[k]; r != 0 {
			byKey = append(byKey, devStep{w: keyWrite(devicesDeny, k, r), undo: []devWrite{keyWrite(devicesAllow, k, r)}})
		}
	}
	byKey = append(byKey, additions(*cur)...)
	if childless && len(cur.ex) > 0 {
		reset := append([]devStep{{w: resetWrite(devicesDeny), undo: restoreDeny(*cur)[1:]}}, additions(empty)...)
		if len(reset) < len(byKey) {
			return reset
		}
	}
	return byKey
}

// restoreDeny rebuilds a default-deny state from scratch: "a" to
// devices.deny, then each exception.
func restoreDeny(s devState) []devWrite {
	out := []devWrite{resetWrite(devicesDeny)}
	for _, k := range s.sortedKeys() {
		out = append(out, keyWrite(devicesAllow, k, s.ex[k]))
	}
	return out
}
