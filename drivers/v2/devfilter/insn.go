package devfilter

import (
	"encoding/binary"
	"unsafe"
)

// The eBPF instruction subset the compiler emits, and its encoding.
//
// An instruction is the kernel's struct bpf_insn, 8 bytes in host byte order:
//
//	byte 0     opcode: class (low 3 bits) | operation | source (K = imm, X = reg)
//	byte 1     dst_reg:4, src_reg:4 (a C bitfield: dst in the low nibble on
//	           little-endian hosts, in the high nibble on big-endian ones)
//	bytes 2-3  off, int16: jump distance in instructions after the next one,
//	           or the memory offset of a load
//	bytes 4-7  imm, int32: the immediate; 64-bit operations sign-extend it
//
// Only these opcodes are used (see emit in compile.go for where):
//
//	ldxw  dst = *(u32 *)(src + off)   BPF_LDX|BPF_MEM|BPF_W   0x61
//	mov   dst = imm / dst = src        BPF_ALU64|BPF_MOV       0xb7 / 0xbf
//	and32 dst = (u32)dst & imm         BPF_ALU|BPF_AND|BPF_K   0x54
//	and   dst &= imm / dst &= src      BPF_ALU64|BPF_AND       0x57 / 0x5f
//	or    dst |= imm                   BPF_ALU64|BPF_OR|BPF_K  0x47
//	xor   dst ^= imm                   BPF_ALU64|BPF_XOR|BPF_K 0xa7
//	rsh   dst >>= imm                  BPF_ALU64|BPF_RSH|BPF_K 0x77
//	jeq   if dst == imm goto +off      BPF_JMP|BPF_JEQ|BPF_K   0x15
//	jne   if dst != imm goto +off      BPF_JMP|BPF_JNE|BPF_K   0x55
//	exit  return r0                    BPF_JMP|BPF_EXIT        0x95
//
// Every jump goes forward, so a program runs at most once through each
// instruction.

// Opcode parts (include/uapi/linux/bpf_common.h and bpf.h).
const (
	classLDX   = 0x01
	classALU   = 0x04
	classJMP   = 0x05
	classALU64 = 0x07

	sizeW   = 0x00
	modeMEM = 0x60

	srcK = 0x00
	srcX = 0x08

	aluOR  = 0x40
	aluAND = 0x50
	aluRSH = 0x70
	aluXOR = 0xa0
	aluMOV = 0xb0

	jmpJEQ  = 0x10
	jmpJNE  = 0x50
	jmpEXIT = 0x90
)

// The opcodes the compiler emits.
const (
	opLDXW   = classLDX | modeMEM | sizeW
	opMOVK   = classALU64 | aluMOV | srcK
	opMOVX   = classALU64 | aluMOV | srcX
	opAND32K = classALU | aluAND | srcK
	opANDK   = classALU64 | aluAND | srcK
	opANDX   = classALU64 | aluAND | srcX
	opORK    = classALU64 | aluOR | srcK
	opXORK   = classALU64 | aluXOR | srcK
	opRSHK   = classALU64 | aluRSH | srcK
	opJEQK   = classJMP | jmpJEQ | srcK
	opJNEK   = classJMP | jmpJNE | srcK
	opEXIT   = classJMP | jmpEXIT
)

// Registers. R1 holds the context pointer on entry and R0 the result on
// exit; R2..R5 are scratch.
const (
	r0 = 0
	r1 = 1
	r2 = 2
	r3 = 3
	r4 = 4
	r5 = 5
)

// InsnSize is the size of one encoded instruction.
const InsnSize = 8

// Field offsets in struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
// u32 minor; }, where access_type = access<<16 | type.
const (
	ctxAccessType = 0
	ctxMajor      = 4
	ctxMinor      = 8
)

// Kernel encodings of the context's access and type
// (BPF_DEVCG_ACC_* and BPF_DEVCG_DEV_*).
const (
	accMknod = 1
	accRead  = 2
	accWrite = 4

	devBlock = 1
	devChar  = 2
)

// insn is one instruction before encoding.
type insn struct {
	op       uint8
	dst, src uint8
	off      int16
	imm      int32
}

// bigEndian reports the host byte order, which decides both the integer
// encoding and the bitfield order of the register byte.
func bigEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}

// appendInsn encodes in onto b.
func appendInsn(b []byte, in insn) []byte {
	regs := in.dst&0x0f | in.src<<4
	if bigEndian() {
		regs = in.dst<<4 | in.src&0x0f
	}
	b = append(b, in.op, regs)
	b = binary.NativeEndian.AppendUint16(b, uint16(in.off))
	return binary.NativeEndian.AppendUint32(b, uint32(in.imm))
}
