package devfilter

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// An interpreter for the instruction subset emit produces. It decodes the
// encoded bytes (so the encoding is under test too) and refuses what the
// kernel's verifier would refuse for these instructions: unknown opcodes,
// jumps backwards or out of the program, unreachable instructions, falling
// off the end, reading an unset register, context reads other than the
// three u32 fields, arithmetic on the context pointer, and a return value
// other than 0 or 1.

// devCtx is struct bpf_cgroup_dev_ctx.
type devCtx struct {
	accessType, major, minor uint32
}

func newDevCtx(typ, access uint32, major, minor uint32) devCtx {
	return devCtx{accessType: access<<16 | typ, major: major, minor: minor}
}

func (c devCtx) load(off int16) (uint64, error) {
	switch off {
	case ctxAccessType:
		return uint64(c.accessType), nil
	case ctxMajor:
		return uint64(c.major), nil
	case ctxMinor:
		return uint64(c.minor), nil
	}
	return 0, fmt.Errorf("context read at offset %d", off)
}

func decode(code []byte) ([]insn, error) {
	if len(code) == 0 || len(code)%InsnSize != 0 {
		return nil, fmt.Errorf("program of %d bytes is not a whole number of instructions", len(code))
	}
	prog := make([]insn, len(code)/InsnSize)
	for i := range prog {
		b := code[i*InsnSize:]
		in := insn{op: b[0], dst: b[1] & 0x0f, src: b[1] >> 4}
		if bigEndian() {
			in.dst, in.src = b[1]>>4, b[1]&0x0f
		}
		in.off = int16(binary.NativeEndian.Uint16(b[2:]))
		in.imm = int32(binary.NativeEndian.Uint32(b[4:]))
		prog[i] = in
	}
	return prog, check(prog)
}

// check is the static part of the verifier for this subset.
func check(prog []insn) error {
	reach := make([]bool, len(prog)+1)
	reach[0] = true
	for pc, in := range prog {
		if !reach[pc] {
			return fmt.Errorf("insn %d (%s): unreachable", pc, in)
		}
		if in.dst > 10 || in.src > 10 {
			return fmt.Errorf("insn %d (%s): bad register", pc, in)
		}
		switch in.op {
		case opLDXW, opMOVX, opANDX:
			if in.off != 0 && in.op != opLDXW || in.imm != 0 {
				return fmt.Errorf("insn %d (%s): reserved field set", pc, in)
			}
			reach[pc+1] = true
		case opMOVK, opAND32K, opANDK, opORK, opXORK:
			if in.src != 0 || in.off != 0 {
				return fmt.Errorf("insn %d (%s): reserved field set", pc, in)
			}
			reach[pc+1] = true
		case opRSHK:
			if in.src != 0 || in.off != 0 || in.imm < 0 || in.imm > 63 {
				return fmt.Errorf("insn %d (%s): bad shift", pc, in)
			}
			reach[pc+1] = true
		case opJEQK, opJNEK:
			if in.src != 0 {
				return fmt.Errorf("insn %d (%s): reserved field set", pc, in)
			}
			if in.off < 0 {
				return fmt.Errorf("insn %d (%s): backward jump", pc, in)
			}
			target := pc + 1 + int(in.off)
			if target >= len(prog) {
				return fmt.Errorf("insn %d (%s): jump out of range", pc, in)
			}
			reach[pc+1] = true
			reach[target] = true
		case opEXIT:
			if in.dst != 0 || in.src != 0 || in.off != 0 || in.imm != 0 {
				return fmt.Errorf("insn %d (%s): reserved field set", pc, in)
			}
		default:
			return fmt.Errorf("insn %d: unknown opcode %#02x", pc, in.op)
		}
	}
	if reach[len(prog)] {
		return fmt.Errorf("falls off the end after insn %d", len(prog)-1)
	}
	return nil
}

type regKind uint8

const (
	unset regKind = iota
	scalar
	ctxPtr
)

// run executes a checked program on c and returns R0.
func run(prog []insn, c devCtx) (uint64, error) {
	var (
		reg  [11]uint64
		kind [11]regKind
	)
	kind[r1] = ctxPtr
	kind[10] = scalar // the frame pointer; never used by the compiler
	readScalar := func(pc, r int) (uint64, error) {
		if kind[r] != scalar {
			return 0, fmt.Errorf("insn %d (%s): r%d is not a set scalar", pc, prog[pc], r)
		}
		return reg[r], nil
	}
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		dst, src := int(in.dst), int(in.src)
		imm := uint64(int64(in.imm)) // sign-extended, as the kernel does for 64-bit ops
		if in.op != opEXIT && in.op&0x07 != classJMP && dst == 10 {
			return 0, fmt.Errorf("insn %d (%s): writes the frame pointer", pc, in)
		}
		switch in.op {
		case opLDXW:
			if kind[src] != ctxPtr {
				return 0, fmt.Errorf("insn %d (%s): load through r%d, not the context", pc, in, src)
			}
			v, err := c.load(in.off)
			if err != nil {
				return 0, fmt.Errorf("insn %d (%s): %w", pc, in, err)
			}
			reg[dst], kind[dst] = v, scalar
			continue
		case opMOVK:
			reg[dst], kind[dst] = imm, scalar
			continue
		case opMOVX:
			v, err := readScalar(pc, src)
			if err != nil {
				return 0, err
			}
			reg[dst], kind[dst] = v, scalar
			continue
		case opEXIT:
			v, err := readScalar(pc, r0)
			if err != nil {
				return 0, err
			}
			if v > 1 {
				return 0, fmt.Errorf("insn %d: returns %d, not 0 or 1", pc, v)
			}
			return v, nil
		}
		d, err := readScalar(pc, dst)
		if err != nil {
			return 0, err
		}
		switch in.op {
		case opAND32K:
			reg[dst] = uint64(uint32(d) & uint32(in.imm))
		case opANDK:
			reg[dst] = d & imm
		case opANDX:
			s, err := readScalar(pc, src)
			if err != nil {
				return 0, err
			}
			reg[dst] = d & s
		case opORK:
			reg[dst] = d | imm
		case opXORK:
			reg[dst] = d ^ imm
		case opRSHK:
			reg[dst] = d >> uint(in.imm)
		case opJEQK:
			if d == imm {
				pc += int(in.off)
			}
		case opJNEK:
			if d != imm {
				pc += int(in.off)
			}
		default:
			return 0, fmt.Errorf("insn %d: unknown opcode %#02x", pc, in.op)
		}
	}
	return 0, fmt.Errorf("ran off the end")
}

func (in insn) String() string {
	switch in.op {
	case opLDXW:
		return fmt.Sprintf("r%d = *(u32 *)(r%d %+d)", in.dst, in.src, in.off)
	case opMOVK:
		return fmt.Sprintf("r%d = %d", in.dst, in.imm)
	case opMOVX:
		return fmt.Sprintf("r%d = r%d", in.dst, in.src)
	case opAND32K:
		return fmt.Sprintf("w%d &= %#x", in.dst, uint32(in.imm))
	case opANDK:
		return fmt.Sprintf("r%d &= %#x", in.dst, uint64(int64(in.imm)))
	case opANDX:
		return fmt.Sprintf("r%d &= r%d", in.dst, in.src)
	case opORK:
		return fmt.Sprintf("r%d |= %#x", in.dst, in.imm)
	case opXORK:
		return fmt.Sprintf("r%d ^= %#x", in.dst, uint64(int64(in.imm)))
	case opRSHK:
		return fmt.Sprintf("r%d >>= %d", in.dst, in.imm)
	case opJEQK:
		return fmt.Sprintf("if r%d == %d goto %+d", in.dst, in.imm, in.off)
	case opJNEK:
		return fmt.Sprintf("if r%d != %d goto %+d", in.dst, in.imm, in.off)
	case opEXIT:
		return "exit"
	}
	return fmt.Sprintf("op %#02x dst r%d src r%d off %d imm %d", in.op, in.dst, in.src, in.off, in.imm)
}

// disasm lists a program for failure messages.
func disasm(code []byte) string {
	var b strings.Builder
	for i := 0; i+InsnSize <= len(code); i += InsnSize {
		in := insn{op: code[i], dst: code[i+1] & 0x0f, src: code[i+1] >> 4,
			off: int16(binary.NativeEndian.Uint16(code[i+2:])), imm: int32(binary.NativeEndian.Uint32(code[i+4:]))}
		if bigEndian() {
			in.dst, in.src = code[i+1]>>4, code[i+1]&0x0f
		}
		fmt.Fprintf(&b, "%4d: %s\n", i/InsnSize, in)
	}
	return b.String()
}
