package devfilter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/digest"
	"github.com/cgsem/cgsem/semantic"
)

// The bpf(2) system call, for the seven commands this package uses. The
// attribute structs are prefixes of union bpf_attr (include/uapi/linux/
// bpf.h); the kernel accepts a shorter attr and treats the rest as zero.

// progLoadAttr is the BPF_PROG_LOAD part of bpf_attr.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              ptr
	license            ptr
	logLevel           uint32
	logSize            uint32
	logBuf             ptr
	kernVersion        uint32
	progFlags          uint32
	progName           [unix.BPF_OBJ_NAME_LEN]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// attachAttr is the BPF_PROG_ATTACH / BPF_PROG_DETACH part of bpf_attr.
type attachAttr struct {
	targetFD     uint32
	attachBPFFD  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBPFFD uint32
}

// queryAttr is the BPF_PROG_QUERY part of bpf_attr.
type queryAttr struct {
	targetFD    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     ptr
	progCnt     uint32
	_           uint32
}

// infoAttr is the BPF_OBJ_GET_INFO_BY_FD part of bpf_attr.
type infoAttr struct {
	bpfFD   uint32
	infoLen uint32
	info    ptr
}

// progInfo is the start of struct bpf_prog_info; the kernel fills as much
// as infoLen asks for.
type progInfo struct {
	progType      uint32
	id            uint32
	tag           [unix.BPF_TAG_SIZE]byte
	jitedProgLen  uint32
	xlatedProgLen uint32
}

// getFDAttr is the BPF_PROG_GET_FD_BY_ID part of bpf_attr.
type getFDAttr struct {
	progID    uint32
	nextID    uint32
	openFlags uint32
}

// bpf makes one bpf(2) call, retrying EINTR.
func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return -1, errno
	}
}

// progName is how the programs show in bpftool: [A-Za-z0-9_.], 15 bytes.
const progName = "cgsem_devices"

// license: the kernel only checks the license string before letting a
// program call a GPL-only helper, and this program calls no helper, so any
// string loads (measured on 6.18: "GPL", "Proprietary" and "" all do).
// "GPL" is what systemd declares for its device programs, and it keeps
// loading should a kernel ever gate more on it.
const license = "GPL"

// loadRetries bounds retries of a verification the kernel abandoned with
// EAGAIN because a signal arrived (the Go runtime's preemption signals are
// enough).
const loadRetries = 20

// Log buffer sizes for the second load that explains a rejection. The
// kernel keeps the head of the log and fails with ENOSPC when it is full;
// the rejection itself is at the end, so the buffer grows until it fits.
const (
	logSizeFirst = 64 << 10
	logSizeMax   = 16 << 20
)

// LoadError is a refused BPF_PROG_LOAD. When the verifier refused the
// program, Log holds its log. It unwraps to the errno, and a verifier
// refusal also to semantic.ErrNotSupported (this kernel does not take the
// program).
type LoadError struct {
	Errno unix.Errno
	Log   string
}

func (e *LoadError) Error() string {
	msg := "bpf(BPF_PROG_LOAD): " + e.Errno.Error()
	if e.Errno == unix.EPERM {
		msg += " (loading needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; on kernels before 5.11 the program's memory" +
			" is also charged to RLIMIT_MEMLOCK, which cgsem never raises: raise it for this process if that is the cause)"
	}
	if e.Log == "" {
		return msg
	}
	// The verifier's reason is at the end; the whole log is in Log.
	lines := strings.Split(strings.TrimRight(e.Log, "\n\x00"), "\n")
	if len(lines) > 8 {
		lines = append([]string{"..."}, lines[len(lines)-8:]...)
	}
	return msg + ": verifier log:\n" + strings.Join(lines, "\n")
}

func (e *LoadError) Unwrap() []error {
	if e.Log != "" {
		return []error{e.Errno, semantic.ErrNotSupported}
	}
	return []error{e.Errno}
}

// Loaded is a program loaded into the kernel: a file descriptor and the
// program's id. Attaching it takes no further copy; the kernel keeps an
// attached program alive after Close.
type Loaded struct {
	fd  int
	id  uint32
	len int
	tag [unix.BPF_TAG_SIZE]byte
	// key is the Cache key, for Release; "" for a program the cache does
	// not hold (one OpenProgram opened, which its opener closes).
	key string
}

// ID returns the kernel's id of the program, as BPF_PROG_QUERY and
// bpftool report it.
func (l *Loaded) ID() uint32 { return l.id }

// FD returns the program's file descriptor (close-on-exec), owned by l.
func (l *Loaded) FD() int { return l.fd }

// Len returns the number of instructions.
func (l *Loaded) Len() int { return l.len }

// Close closes the descriptor. A program still attached somewhere stays
// loaded until it is detached or its cgroup is removed.
func (l *Loaded) Close() error {
	if l.fd < 0 {
		return errors.New("devfilter: program already closed")
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// Load loads p as a BPF_PROG_TYPE_CGROUP_DEVICE program. On a refusal it
// loads again with a log buffer and returns a *LoadError carrying the
// verifier's log. It does not change RLIMIT_MEMLOCK (kernels since 5.11
// charge BPF memory to the memory cgroup instead).
func Load(ctx context.Context, p *Program) (*Loaded, error) {
	code := p.key()
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(p.Len()),
		insns:    ptr{p: unsafe.Pointer(unsafe.StringData(code))},
		license:  ptr{p: unsafe.Pointer(unsafe.StringData(license + "\x00"))},
	}
	copy(attr.progName[:], progName)
	fd, err := loadRetry(ctx, &attr)
	var le *LoadError
	if errors.As(err, &le) && le.Errno != unix.EPERM {
		fd, err = loadWithLog(ctx, &attr, le)
	}
	if err != nil {
		return nil, err
	}
	info, err := infoOf(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bpf(BPF_OBJ_GET_INFO_BY_FD) of a loaded device program: %w", err)
	}
	return &Loaded{fd: fd, id: info.id, len: p.Len(), tag: info.tag}, nil
}

// infoOf asks the kernel about the program open as fd.
func infoOf(fd int) (progInfo, error) {
	var info progInfo
	attr := infoAttr{bpfFD: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: ptr{p: unsafe.Pointer(&info)}}
	_, err := bpf(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return info, err
}

// OpenProgram opens a descriptor of the loaded program whose id is id
// (BPF_PROG_GET_FD_BY_ID), as another process's program is reached: ids
// are what BPF_PROG_QUERY lists and what outlives the process that loaded
// a program. While the descriptor is open the program stays loaded, so the
// id keeps naming it. It fails with an error wrapping ENOENT (which
// matches fs.ErrNotExist) when no program has that id, and with one
// wrapping semantic.ErrInvalid when that program is not a device program.
// The caller closes the result; Len is the kernel's translated length, 0 where
// the kernel does not tell it.
func OpenProgram(id uint32) (*Loaded, error) {
	attr := getFDAttr{progID: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return nil, fmt.Errorf("bpf(BPF_PROG_GET_FD_BY_ID) program %d: %w", id, err)
	}
	info, err := infoOf(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bpf(BPF_OBJ_GET_INFO_BY_FD) of program %d: %w", id, err)
	}
	if info.progType != unix.BPF_PROG_TYPE_CGROUP_DEVICE {
		unix.Close(fd)
		return nil, fmt.Errorf("program %d is of BPF program type %d, not a device program (type %d): %w",
			id, info.progType, unix.BPF_PROG_TYPE_CGROUP_DEVICE, semantic.ErrInvalid)
	}
	return &Loaded{fd: fd, id: id, len: int(info.xlatedProgLen) / InsnSize, tag: info.tag}, nil
}

// Runs reports whether the loaded program with id is a device program
// running p's instructions, as the tag the kernel gave it shows. It fails
// as OpenProgram does: a program that is gone is an error wrapping ENOENT,
// one of another type an error wrapping semantic.ErrInvalid.
func Runs(id uint32, p *Program) (bool, error) {
	l, err := OpenProgram(id)
	if err != nil {
		return false, err
	}
	defer l.Close()
	return l.runs(p), nil
}

// runs reports whether l's tag is one p loads with.
func (l *Loaded) runs(p *Program) bool {
	tags := tagsOf(p)
	return l.tag == tags[0] || l.tag == tags[1]
}

// tagsOf returns the tags the kernel may give p once loaded: the first
// bytes of a hash of its instructions as loaded (it references no map,
// whose descriptors the hash would skip): SHA-256 on recent kernels
// (measured on 6.18), SHA-1 on older ones.
// A loaded program whose tag is neither runs other instructions.
func tagsOf(p *Program) [2][unix.BPF_TAG_SIZE]byte {
	code := []byte(p.key())
	s1, s256 := digest.SHA1(code), digest.SHA256(code)
	var out [2][unix.BPF_TAG_SIZE]byte
	copy(out[0][:], s256[:])
	copy(out[1][:], s1[:])
	return out
}

// loadRetry makes BPF_PROG_LOAD calls until one is not interrupted.
func loadRetry(ctx context.Context, attr *progLoadAttr) (int, error) {
	var err error
	for range loadRetries {
		if cerr := ctx.Err(); cerr != nil {
			return -1, cerr
		}
		var fd int
		fd, err = bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
		if err == nil {
			return fd, nil
		}
		if err != unix.EAGAIN {
			break
		}
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return -1, &LoadError{Errno: errno}
	}
	return -1, err
}

// loadWithLog loads again with a growing log buffer to get the verifier's
// reason for the refusal first. Should the program load this time, it
// returns the descriptor.
func loadWithLog(ctx context.Context, attr *progLoadAttr, first *LoadError) (int, error) {
	for size := logSizeFirst; ; size *= 4 {
		buf := make([]byte, size)
		a := *attr
		a.logLevel = 1
		a.logSize = uint32(size)
		a.logBuf = ptr{p: unsafe.Pointer(&buf[0])}
		fd, err := loadRetry(ctx, &a)
		var le *LoadError
		if !errors.As(err, &le) {
			return fd, err
		}
		if le.Errno == unix.ENOSPC && size < logSizeMax {
			continue
		}
		// A log that filled the largest buffer still ends in ENOSPC; the
		// refusal is the first one's.
		le.Errno = first.Errno
		if n := strings.IndexByte(string(buf), 0); n >= 0 {
			buf = buf[:n]
		}
		le.Log = string(buf)
		if le.Log == "" {
			return -1, first
		}
		return -1, le
	}
}

// Attach attaches l to the cgroup whose directory is open as cgroupFD,
// with BPF_F_ALLOW_MULTI: the kernel then runs every program attached to
// the cgroup and to its ancestors, and a device access needs all of them
// to allow it. It fails with EEXIST when l is already attached there, and
// with EPERM when the cgroup holds a program attached without
// BPF_F_ALLOW_MULTI.
func Attach(cgroupFD int, l *Loaded) error {
	attr := attachAttr{
		targetFD:    uint32(cgroupFD),
		attachBPFFD: uint32(l.fd),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("bpf(BPF_PROG_ATTACH) device program %d: %w", l.id, err)
	}
	return nil
}

// Detach detaches l from the cgroup open as cgroupFD. It names the program
// by its descriptor, so it can only detach a program this process loaded;
// it fails with ENOENT when l is not attached there.
func Detach(cgroupFD int, l *Loaded) error {
	attr := attachAttr{
		targetFD:    uint32(cgroupFD),
		attachBPFFD: uint32(l.fd),
		attachType:  unix.BPF_CGROUP_DEVICE,
	}
	if _, err := bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("bpf(BPF_PROG_DETACH) device program %d: %w", l.id, err)
	}
	return nil
}

// Query returns the ids of the device programs attached directly to the
// cgroup open as cgroupFD (not those inherited from ancestors), in the
// order the kernel runs them.
func Query(cgroupFD int) ([]uint32, error) {
	ids := make([]uint32, 8)
	for {
		attr := queryAttr{
			targetFD:   uint32(cgroupFD),
			attachType: unix.BPF_CGROUP_DEVICE,
			progIDs:    ptr{p: unsafe.Pointer(&ids[0])},
			progCnt:    uint32(len(ids)),
		}
		_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		switch {
		case err == nil:
			return ids[:attr.progCnt], nil
		case err == unix.ENOSPC && int(attr.progCnt) > len(ids):
			// Programs were attached since the count was taken; ask again.
			ids = make([]uint32, attr.progCnt+8)
		default:
			return nil, fmt.Errorf("bpf(BPF_PROG_QUERY) device programs: %w", err)
		}
	}
}

// Replace puts next in the place of prev on the cgroup open as cgroupFD
// without a window: next is attached before prev is detached, and while
// both are attached a device access needs both to allow it, so access is
// never wider than prev's or next's. When prev cannot be detached, next is
// detached again and the cgroup is left as it was. prev nil only attaches;
// next nil only detaches; the same program in both changes nothing.
func Replace(cgroupFD int, prev, next *Loaded) error {
	return replace(cgroupFD, prev, next, nil)
}

// replace is Replace with a hook that runs while both are attached, for
// tests that look at that moment.
func replace(cgroupFD int, prev, next *Loaded, between func()) error {
	switch {
	case next == nil && prev == nil:
		return nil
	case next == nil:
		return Detach(cgroupFD, prev)
	case prev == nil:
		return Attach(cgroupFD, next)
	case prev.id == next.id:
		return nil
	}
	if err := Attach(cgroupFD, next); err != nil {
		return err
	}
	if between != nil {
		between()
	}
	if err := Detach(cgroupFD, prev); err != nil {
		if rerr := Detach(cgroupFD, next); rerr != nil {
			return fmt.Errorf("%w; and undoing the attach of program %d: %w", err, next.id, rerr)
		}
		return err
	}
	return nil
}

// The attrs' layouts, checked at compile time against the kernel's
// offsets: a wrong ptr size shows here, not as EFAULT or EINVAL.
var (
	_ [unsafe.Offsetof(progLoadAttr{}.logBuf) - 32]struct{}
	_ [32 - unsafe.Offsetof(progLoadAttr{}.logBuf)]struct{}
	_ [unsafe.Offsetof(progLoadAttr{}.expectedAttachType) - 68]struct{}
	_ [68 - unsafe.Offsetof(progLoadAttr{}.expectedAttachType)]struct{}
	_ [unsafe.Offsetof(queryAttr{}.progCnt) - 24]struct{}
	_ [24 - unsafe.Offsetof(queryAttr{}.progCnt)]struct{}
	_ [unsafe.Sizeof(infoAttr{}) - 16]struct{}
	_ [16 - unsafe.Sizeof(infoAttr{})]struct{}
	_ [unsafe.Offsetof(progInfo{}.xlatedProgLen) - 20]struct{}
	_ [20 - unsafe.Offsetof(progInfo{}.xlatedProgLen)]struct{}
)
