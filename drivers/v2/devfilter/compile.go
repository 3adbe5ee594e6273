package devfilter

import (
	"github.com/cgsem/cgsem/semantic"
)

// MaxInsns bounds a compiled program: the kernel refuses longer ones even
// from a privileged loader (BPF_COMPLEXITY_LIMIT_INSNS). About 200,000
// rules fit.
const MaxInsns = 1_000_000

// Program is a compiled device filter: the encoded instructions of a
// BPF_PROG_TYPE_CGROUP_DEVICE program, not yet loaded. It is immutable and
// safe to share. Two rule lists compile to the same bytes when they differ
// only in ways the optimizer removes (shadowed rules, no-ops), which is what
// lets a Cache share one loaded program between them.
type Program struct {
	code string
}

// Bytes returns a copy of the encoded instructions (InsnSize bytes each,
// host byte order).
func (p *Program) Bytes() []byte { return []byte(p.code) }

// Len returns the number of instructions.
func (p *Program) Len() int { return len(p.code) / InsnSize }

// key identifies the program in a Cache.
func (p *Program) key() string { return p.code }

// Compile translates a device list into a program that grants exactly what
// d.Allowed grants: for every device type, major, minor and requested
// access, the program returns 1 iff the request is a subset of
// d.Allowed(type, major, minor). d must be valid (see semantic.Devices.Validate);
// an invalid or nil list is refused with an error wrapping
// semantic.ErrInvalid.
//
// Compile is a pure function: no system call, no state.
func Compile(d *semantic.Devices) (*Program, error) {
	return compile(d, true)
}

// rule is a semantic.DeviceRule in the kernel's encodings.
type rule struct {
	typ          int32 // 0 (any), devBlock or devChar
	major, minor int64 // a number, or semantic.Wildcard
	acc          int32 // accMknod|accRead|accWrite bits
	allow        bool
}

func compile(d *semantic.Devices, optimize bool) (*Program, error) {
	if d == nil {
		return nil, semantic.Errorf(semantic.ErrInvalid, "compile device filter", "", "no device list")
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	// The granted mask starts with every bit set or none, so access bits
	// the kernel may add later, which no rule can name, follow the default
	// as every unnamed bit does.
	var init int32
	if d.Default == semantic.AllowByDefault {
		init = -1
	}
	rules := make([]rule, len(d.Rules))
	for i, r := range d.Rules {
		rules[i] = rule{typ: kernelType(r.Type), major: r.Major, minor: r.Minor, acc: kernelAccess(r.Access), allow: r.Allow}
	}
	if optimize {
		init, rules = simplify(init, rules)
	}
	code := emit(init, rules, optimize)
	if len(code)/InsnSize > MaxInsns {
		return nil, semantic.Errorf(semantic.ErrInvalid, "compile device filter", "",
			"%d rules compile to %d instructions, more than the kernel's limit of %d", len(d.Rules), len(code)/InsnSize, MaxInsns)
	}
	return &Program{code: string(code)}, nil
}

func kernelType(t semantic.DeviceType) int32 {
	switch t {
	case semantic.BlockDevice:
		return devBlock
	case semantic.CharDevice:
		return devChar
	}
	return 0
}

func kernelAccess(a semantic.Access) int32 {
	var k int32
	if a&semantic.Read != 0 {
		k |= accRead
	}
	if a&semantic.Write != 0 {
		k |= accWrite
	}
	if a&semantic.Mknod != 0 {
		k |= accMknod
	}
	return k
}

// covers reports whether r matches every device that s matches.
func (r *rule) covers(s *rule) bool {
	return (r.typ == 0 || r.typ == s.typ) &&
		(r.major == semantic.Wildcard || r.major == s.major) &&
		(r.minor == semantic.Wildcard || r.minor == s.minor)
}

// overlaps reports whether some device matches both r and s.
func (r *rule) overlaps(s *rule) bool {
	return (r.typ == 0 || s.typ == 0 || r.typ == s.typ) &&
		(r.major == semantic.Wildcard || s.major == semantic.Wildcard || r.major == s.major) &&
		(r.minor == semantic.Wildcard || s.minor == semantic.Wildcard || r.minor == s.minor)
}

func (r *rule) hasWildcard() bool {
	return r.typ == 0 || r.major == semantic.Wildcard || r.minor == semantic.Wildcard
}

// device packs the type and numbers of a rule without wildcards.
func (r *rule) device() uint64 {
	return uint64(r.typ)<<40 | uint64(r.major)<<20 | uint64(r.minor)
}

func (r *rule) sameDevices(s *rule) bool {
	return r.typ == s.typ && r.major == s.major && r.minor == s.minor
}

// simplify removes what cannot change a decision. For a device D and an
// access bit b the decision is made by the last rule that matches D and
// names b, or by init. Each step keeps that true:
//
//  1. A bit of rule i that a later rule j names, where j covers i, never
//     decides: whenever i matches, j matches after it. It is removed.
//  2. A rule matching every device (a *:*) now names only bits that no
//     earlier rule names (step 1), so its effect can move to init.
//  3. A bit that rule i sets to the value init already has, when no
//     earlier overlapping rule names b with the opposite effect, finds b
//     at that value already. It is removed.
//
// Rules left with no bits are dropped.
func simplify(init int32, rules []rule) (int32, []rule) {
	// Step 1 walks backwards keeping, for the later rules, the bits named
	// per exact device (a rule with no wildcard is covered only by rules on
	// the same device or with wildcards) and the list of rules with
	// wildcards, which real lists have few of.
	exact := make(map[uint64]int32, len(rules))
	var wild []rule
	for i := len(rules) - 1; i >= 0; i-- {
		r := &rules[i]
		named := r.acc
		var later int32
		if !r.hasWildcard() {
			later = exact[r.device()]
			exact[r.device()] |= named
		}
		for j := range wild {
			if r.acc&^later == 0 {
				break // every bit is overridden already
			}
			if wild[j].covers(r) {
				later |= wild[j].acc
			}
		}
		if r.hasWildcard() {
			wild = append(wild, rule{typ: r.typ, major: r.major, minor: r.minor, acc: named})
		}
		r.acc &^= later
	}
	kept := rules[:0]
	for _, r := range rules {
		switch {
		case r.acc == 0:
		case r.typ == 0:
			if r.allow {
				init |= r.acc
			} else {
				init &^= r.acc
			}
		default:
			kept = append(kept, r)
		}
	}
	rules = kept
	for i := range rules {
		r := &rules[i]
		same := r.acc & init // bits an allow would set that are set
		if !r.allow {
			same = r.acc &^ init // bits a deny would clear that are clear
		}
		if same == 0 {
			continue
		}
		for j := 0; j < i && same != 0; j++ {
			if rules[j].allow != r.allow && rules[j].overlaps(r) {
				same &^= rules[j].acc
			}
		}
		r.acc &^= same
	}
	kept = rules[:0]
	for _, r := range rules {
		if r.acc != 0 {
			kept = append(kept, r)
		}
	}
	return init, kept
}

// maxBlockOps bounds the operations of one block.
const maxBlockOps = 16

// emit encodes the program:
//
//	r2 = access_type; r3 = r2 & 0xffff (type); r2 >>= 16 (access)
//	r0 = init (the granted mask)
//	per rule, or run of rules on the same devices when group is set:
//	  if r3 != type goto next                  (unless type is a)
//	  r4 = major; if r4 != major goto next     (unless major is *)
//	  r5 = minor; if r5 != minor goto next     (unless minor is *)
//	  r0 |= access  or  r0 &= ^access
//	next:
//	return (r2 & ^r0) == 0
//
// Major and minor are loaded again for every test: on the path where a
// test matched, the verifier knows the register's value, and a value
// carried to later rules would keep it from merging that path with the
// others (a 5,000-rule list then exceeds its budget of a million
// instructions); a fresh load is unknown again, so the verifier's work
// stays linear in the rules. The type has only two values, so carrying
// it costs at most a constant factor.
func emit(init int32, rules []rule, group bool) []byte {
	if len(rules) == 0 && init == -1 {
		code := make([]byte, 0, 2*InsnSize)
		code = appendInsn(code, insn{op: opMOVK, dst: r0, imm: 1})
		return appendInsn(code, insn{op: opEXIT})
	}
	needType := false
	for i := range rules {
		needType = needType || rules[i].typ != 0
	}
	code := make([]byte, 0, (12+7*len(rules))*InsnSize)
	code = appendInsn(code, insn{op: opLDXW, dst: r2, src: r1, off: ctxAccessType})
	if needType {
		code = appendInsn(code, insn{op: opMOVX, dst: r3, src: r2})
		code = appendInsn(code, insn{op: opAND32K, dst: r3, imm: 0xffff})
	}
	code = appendInsn(code, insn{op: opRSHK, dst: r2, imm: 16})
	code = appendInsn(code, insn{op: opMOVK, dst: r0, imm: init})

	var (
		tests [5]insn // a jne per field, after a load for major and minor
		jumps [3]int  // indexes of the jne instructions in tests
		ops   []insn
	)
	for i := 0; i < len(rules); {
		r := &rules[i]
		nt, nj := 0, 0
		if r.typ != 0 {
			tests[nt] = insn{op: opJNEK, dst: r3, imm: r.typ}
			jumps[nj], nt, nj = nt, nt+1, nj+1
		}
		if r.major != semantic.Wildcard {
			tests[nt] = insn{op: opLDXW, dst: r4, src: r1, off: ctxMajor}
			tests[nt+1] = insn{op: opJNEK, dst: r4, imm: int32(r.major)}
			jumps[nj], nt, nj = nt+1, nt+2, nj+1
		}
		if r.minor != semantic.Wildcard {
			tests[nt] = insn{op: opLDXW, dst: r5, src: r1, off: ctxMinor}
			tests[nt+1] = insn{op: opJNEK, dst: r5, imm: int32(r.minor)}
			jumps[nj], nt, nj = nt+1, nt+2, nj+1
		}
		// One block serves a run of rules on the same devices, in order;
		// consecutive rules of one effect fold into one instruction. The
		// run is bounded so that jump offsets stay small.
		ops = ops[:0]
		j := i
		for ; j < len(rules) && (j == i || group && len(ops) < maxBlockOps && rules[j].sameDevices(r)); j++ {
			last := len(ops) - 1
			switch {
			case j > i && rules[j].allow == rules[j-1].allow && rules[j].allow:
				ops[last].imm |= rules[j].acc
			case j > i && rules[j].allow == rules[j-1].allow:
				ops[last].imm &^= rules[j].acc
			case rules[j].allow:
				ops = append(ops, insn{op: opORK, dst: r0, imm: rules[j].acc})
			default:
				ops = append(ops, insn{op: opANDK, dst: r0, imm: ^rules[j].acc})
			}
		}
		for _, k := range jumps[:nj] {
			tests[k].off = int16(nt - k - 1 + len(ops))
		}
		for _, t := range tests[:nt] {
			code = appendInsn(code, t)
		}
		for _, op := range ops {
			code = appendInsn(code, op)
		}
		i = j
	}

	code = appendInsn(code, insn{op: opXORK, dst: r0, imm: -1})
	code = appendInsn(code, insn{op: opANDX, dst: r0, src: r2})
	code = appendInsn(code, insn{op: opJEQK, dst: r0, imm: 0, off: 2})
	code = appendInsn(code, insn{op: opMOVK, dst: r0, imm: 0})
	code = appendInsn(code, insn{op: opEXIT})
	code = appendInsn(code, insn{op: opMOVK, dst: r0, imm: 1})
	return appendInsn(code, insn{op: opEXIT})
}
