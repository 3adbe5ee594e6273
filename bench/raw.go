package main

// The raw floor: each workload done with the fewest system calls this
// program knows for it, through golang.org/x/sys/unix and nothing else.
// It is the denominator of every ratio, so it holds what any library may
// hold (a descriptor of its root directory) and nothing more, and it
// writes one attribute as openat + write + close.

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func openRetry(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// writeRetry writes b in one write(2), retrying EINTR: a cgroup write can
// fail so while a signal is pending (see DESIGN.md).
func writeRetry(fd int, b []byte) error {
	for {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n != len(b) {
			return io.ErrShortWrite
		}
		return nil
	}
}

// writeAt writes value to the attribute path below dirfd: openat, write,
// close.
func writeAt(dirfd int, path string, value []byte) error {
	fd, err := openRetry(dirfd, path, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	err = writeRetry(fd, value)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readAt reads the attribute path below dirfd into buf with one read:
// openat, read, close. buf must be larger than the file.
func readAt(dirfd int, path string, buf []byte) ([]byte, error) {
	fd, err := openRetry(dirfd, path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n, err := readRetry(fd, buf)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf[:n], nil
}

func readRetry(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func preadRetry(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Pread(fd, buf, 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func mkdirAt(dirfd int, name string) error {
	for {
		err := unix.Mkdirat(dirfd, name, 0o755)
		if err != unix.EINTR {
			return err
		}
	}
}

// rmdirAt removes a group, retrying EINTR and the transient EBUSY of a
// group whose last task is still leaving.
func rmdirAt(dirfd int, name string) error {
	for range 1000 {
		err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		switch err {
		case unix.EINTR:
		case unix.EBUSY:
			sleepBriefly()
		default:
			return err
		}
	}
	return unix.EBUSY
}

func sleepBriefly() { time.Sleep(100 * time.Microsecond) }

func openDir(path string) (int, error) {
	return openRetry(unix.AT_FDCWD, path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC)
}

// v1 lifecycle values: memory 256 MiB, pids 100, CPU weight 50 (cpu.shares
// 512 by semantic.WeightToShares), every device denied but /dev/null.
var (
	rawMemLimit   = []byte("268435456")
	rawPidsMax    = []byte("100")
	rawShares     = []byte("512")
	rawDevDeny    = []byte("a")
	rawDevAllowNl = []byte("c 1:3 rwm")
)

// rawV1 does the v1 lifecycle on held directory descriptors of the run's
// root in each hierarchy it uses.
type rawV1 struct {
	keys  []string // hierarchies, in order
	fds   []int
	byC   map[string]int // controller -> descriptor
	seeds [][2][]byte    // per hierarchy: cpuset cpus and mems, nil when not cpuset
}

// openRawV1 opens the run's root in the hierarchies holding controllers
// (each hierarchy once, however many of them it holds).
func openRawV1(h *host, root *benchRoot, controllers []string) (*rawV1, error) {
	r := &rawV1{byC: map[string]int{}}
	seen := map[string]int{}
	for _, c := range controllers {
		k, ok := h.ctrl[c]
		if !ok {
			r.close()
			return nil, fmt.Errorf("no v1 hierarchy has %s", c)
		}
		if fd, ok := seen[k]; ok {
			r.byC[c] = fd
			continue
		}
		fd, err := openDir(root.v1[k])
		if err != nil {
			r.close()
			return nil, err
		}
		var seed [2][]byte
		if h.ctrl["cpuset"] == k {
			for i, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := readAt(fd, f, make([]byte, 4096))
				if err != nil {
					r.close()
					return nil, err
				}
				seed[i] = b
			}
		}
		seen[k] = fd
		r.byC[c] = fd
		r.keys = append(r.keys, k)
		r.fds = append(r.fds, fd)
		r.seeds = append(r.seeds, seed)
	}
	return r, nil
}

func (r *rawV1) close() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}

// lifecycle creates name in every hierarchy (seeding cpuset where it is
// one of them), writes the limits, moves pid in and back out to the root
// when pid > 0, and removes the group.
func (r *rawV1) lifecycle(name string, pid int) (err error) {
	made := 0
	defer func() {
		if err != nil {
			for _, fd := range r.fds[:made] {
				rmdirAt(fd, name)
			}
		}
	}()
	for i, fd := range r.fds {
		if err := mkdirAt(fd, name); err != nil {
			return fmt.Errorf("mkdir %s in %s: %w", name, r.keys[i], err)
		}
		made++
		if s := r.seeds[i]; s[0] != nil {
			if err := writeAt(fd, name+"/cpuset.cpus", s[0]); err != nil {
				return err
			}
			if err := writeAt(fd, name+"/cpuset.mems", s[1]); err != nil {
				return err
			}
		}
	}
	for _, w := range []struct {
		c, file string
		v       []byte
	}{
		{"memory", "/memory.limit_in_bytes", rawMemLimit},
		{"pids", "/pids.max", rawPidsMax},
		{"cpu", "/cpu.shares", rawShares},
		{"devices", "/devices.deny", rawDevDeny},
		{"devices", "/devices.allow", rawDevAllowNl},
	} {
		if err := writeAt(r.byC[w.c], name+w.file, w.v); err != nil {
			return err
		}
	}
	if pid > 0 {
		p := []byte(strconv.Itoa(pid))
		for _, fd := range r.fds {
			if err := writeAt(fd, name+"/cgroup.procs", p); err != nil {
				return err
			}
		}
		for _, fd := range r.fds {
			if err := writeAt(fd, "cgroup.procs", p); err != nil {
				return err
			}
		}
	}
	for i, fd := range r.fds {
		if err := rmdirAt(fd, name); err != nil {
			return fmt.Errorf("rmdir %s in %s: %w", name, r.keys[i], err)
		}
	}
	return nil
}

// statFile is one file the stats workload reads, and where.
type statFile struct{ ctrl, name string }

// v1StatFiles are the files cgsem's v1 driver reads for Group.Stats:
// memory, CPU, pids and IO figures. The floor reads and parses exactly
// these, so the comparison is of the same work.
var v1StatFiles = []statFile{
	{"memory", "memory.usage_in_bytes"},
	{"memory", "memory.max_usage_in_bytes"},
	{"memory", "memory.stat"},
	{"memory", "memory.oom_control"},
	{"cpuacct", "cpuacct.usage"},
	{"cpuacct", "cpuacct.usage_all"},
	{"cpu", "cpu.stat"},
	{"pids", "pids.current"},
	{"pids", "pids.max"},
	{"blkio", "blkio.throttle.io_service_bytes_recursive"},
	{"blkio", "blkio.throttle.io_serviced_recursive"},
}

// rawStats is what the stats floor extracts, the figures semantic.Stats
// holds on v1.
type rawStats struct {
	usage, peak, anon, file, swap, oomKill uint64
	cpuUsage, user, system                 uint64
	periods, throttled, throttledTime      uint64
	pidsCurrent, pidsMax                   uint64
	ioBytesR, ioBytesW, ioOpsR, ioOpsW     uint64
	ioDevices                              int
}

// rawStatsReader reads one group's stat files: opened on every read
// (openat relative to a held descriptor of the run's root, as the
// lifecycle floor and cgsem do), or held open and re-read with pread.
type rawStatsReader struct {
	dirfds []int    // per v1StatFiles entry: the run's root in its hierarchy
	paths  []string // per entry: "group/file"
	held   []int    // per entry when holding, else nil
	buf    []byte
}

// openRawStats prepares reading group's files below the run's root.
func openRawStats(h *host, root *benchRoot, group string, hold bool) (*rawStatsReader, error) {
	r := &rawStatsReader{buf: make([]byte, 64<<10)}
	opened := map[string]int{}
	for _, f := range v1StatFiles {
		d := root.v1[h.ctrl[f.ctrl]]
		fd, ok := opened[d]
		if !ok {
			var err error
			if fd, err = openDir(d); err != nil {
				r.close()
				return nil, err
			}
			opened[d] = fd
		}
		r.dirfds = append(r.dirfds, fd)
		r.paths = append(r.paths, group+"/"+f.name)
	}
	if hold {
		for i := range v1StatFiles {
			fd, err := openRetry(r.dirfds[i], r.paths[i], unix.O_RDONLY|unix.O_CLOEXEC)
			if err != nil {
				r.close()
				return nil, err
			}
			r.held = append(r.held, fd)
		}
	}
	return r, nil
}

func (r *rawStatsReader) close() {
	seen := map[int]bool{}
	for _, fd := range append(r.dirfds, r.held...) {
		if !seen[fd] {
			seen[fd] = true
			unix.Close(fd)
		}
	}
	r.dirfds, r.held = nil, nil
}

func (r *rawStatsReader) read(i int) ([]byte, error) {
	if r.held != nil {
		n, err := preadRetry(r.held[i], r.buf)
		if err != nil {
			return nil, err
		}
		return r.buf[:n], nil
	}
	return readAt(r.dirfds[i], r.paths[i], r.buf)
}

func (r *rawStatsReader) stats(st *rawStats) error {
	*st = rawStats{}
	for i, f := range v1StatFiles {
		b, err := r.read(i)
		if err != nil {
			return err
		}
		switch f.name {
		case "memory.usage_in_bytes":
			st.usage, err = atou(b)
		case "memory.max_usage_in_bytes":
			st.peak, err = atou(b)
		case "memory.stat":
			err = scanKV(b, func(k []byte, v uint64) {
				switch string(k) {
				case "total_rss":
					st.anon = v
				case "total_cache":
					st.file = v
				case "total_swap":
					st.swap = v
				}
			})
		case "memory.oom_control":
			err = scanKV(b, func(k []byte, v uint64) {
				if string(k) == "oom_kill" {
					st.oomKill = v
				}
			})
		case "cpuacct.usage":
			st.cpuUsage, err = atou(b)
		case "cpuacct.usage_all":
			err = scanUsageAll(b, st)
		case "cpu.stat":
			err = scanKV(b, func(k []byte, v uint64) {
				switch string(k) {
				case "nr_periods":
					st.periods = v
				case "nr_throttled":
					st.throttled = v
				case "throttled_time":
					st.throttledTime = v
				}
			})
		case "pids.current":
			st.pidsCurrent, err = atou(b)
		case "pids.max":
			if string(trimNL(b)) == "max" {
				st.pidsMax = ^uint64(0)
			} else {
				st.pidsMax, err = atou(b)
			}
		default: // blkio throttle files: "MAJ:MIN Op value" lines, and "Total value"
			err = scanBlkio(b, f.name == "blkio.throttle.io_serviced_recursive", st)
		}
		if err != nil {
			return fmt.Errorf("parse %s: %w", f.name, err)
		}
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

var errNumber = errors.New("not a number")

// atou parses a decimal number, ignoring a trailing newline.
func atou(b []byte) (uint64, error) {
	b = trimNL(b)
	if len(b) == 0 {
		return 0, errNumber
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errNumber
		}
		v = v*10 + uint64(c-'0')
	}
	return v, nil
}

// fields splits a line on spaces without allocating more than the slice.
func fields(line []byte, out [][]byte) [][]byte {
	out = out[:0]
	start := -1
	for i, c := range line {
		if c == ' ' || c == '\t' {
			if start >= 0 {
				out = append(out, line[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, line[start:])
	}
	return out
}

// lines calls fn for each non-empty line.
func lines(b []byte, fn func(line []byte) error) error {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			if err := fn(b[:i]); err != nil {
				return err
			}
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return nil
}

// scanKV reads "key value" lines.
func scanKV(b []byte, fn func(k []byte, v uint64)) error {
	var f [4][]byte
	return lines(b, func(line []byte) error {
		fs := fields(line, f[:0])
		if len(fs) != 2 {
			return fmt.Errorf("line %q", line)
		}
		v, err := atou(fs[1])
		if err != nil {
			return err
		}
		fn(fs[0], v)
		return nil
	})
}

// scanUsageAll sums the user and system columns of cpuacct.usage_all.
func scanUsageAll(b []byte, st *rawStats) error {
	var f [4][]byte
	first := true
	return lines(b, func(line []byte) error {
		if first { // "cpu user system"
			first = false
			return nil
		}
		fs := fields(line, f[:0])
		if len(fs) != 3 {
			return fmt.Errorf("line %q", line)
		}
		u, err := atou(fs[1])
		if err != nil {
			return err
		}
		s, err := atou(fs[2])
		if err != nil {
			return err
		}
		st.user += u
		st.system += s
		return nil
	})
}

// scanBlkio sums the Read and Write lines of a blkio throttle file and
// counts the devices.
func scanBlkio(b []byte, ops bool, st *rawStats) error {
	var f [4][]byte
	return lines(b, func(line []byte) error {
		fs := fields(line, f[:0])
		if len(fs) == 2 { // "Total N"
			return nil
		}
		if len(fs) != 3 {
			return fmt.Errorf("line %q", line)
		}
		v, err := atou(fs[2])
		if err != nil {
			return err
		}
		switch string(fs[1]) {
		case "Read":
			if ops {
				st.ioOpsR += v
			} else {
				st.ioBytesR += v
				st.ioDevices++
			}
		case "Write":
			if ops {
				st.ioOpsW += v
			} else {
				st.ioBytesW += v
			}
		}
		return nil
	})
}

// The device filter floor: a hand-written BPF_PROG_TYPE_CGROUP_DEVICE
// program for "deny everything, allow c 1:3 rwm", loaded, attached with
// BPF_F_ALLOW_MULTI and detached through bpf(2) directly.

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

const (
	bpfLdxMemW  = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	bpfAnd32K   = 0x54 // BPF_ALU | BPF_AND | BPF_K
	bpfJneK     = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	bpfMov64K   = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	bpfExit     = 0x95 // BPF_JMP | BPF_EXIT
	bpfDevChar  = 2    // BPF_DEVCG_DEV_CHAR
	bpfCtxType  = 0    // struct bpf_cgroup_dev_ctx: access_type (access<<16 | type)
	bpfCtxMajor = 4
	bpfCtxMinor = 8
)

func reg(dst, src uint8) uint8 { return dst | src<<4 }

// nullOnlyProgram allows every access to c 1:3 and nothing else: the
// shortest program with that meaning (access bits need no test, since all
// of rwm is allowed).
var nullOnlyProgram = []bpfInsn{
	{bpfLdxMemW, reg(2, 1), bpfCtxType, 0},  // r2 = ctx->access_type
	{bpfAnd32K, reg(2, 0), 0, 0xffff},       // w2 &= 0xffff: the type
	{bpfJneK, reg(2, 0), 6, bpfDevChar},     // not char: deny
	{bpfLdxMemW, reg(3, 1), bpfCtxMajor, 0}, // r3 = major
	{bpfJneK, reg(3, 0), 4, 1},              // not 1: deny
	{bpfLdxMemW, reg(4, 1), bpfCtxMinor, 0}, // r4 = minor
	{bpfJneK, reg(4, 0), 2, 3},              // not 3: deny
	{bpfMov64K, reg(0, 0), 0, 1},            // allow
	{bpfExit, 0, 0, 0},
	{bpfMov64K, reg(0, 0), 0, 0}, // deny
	{bpfExit, 0, 0, 0},
}

var bpfLicense = []byte("GPL\x00")

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// expected_attach_type; the kernel treats the rest as zero.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// progAttachAttr is the BPF_PROG_ATTACH/DETACH part of union bpf_attr.
type progAttachAttr struct {
	targetFD     uint32
	attachBPFFD  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBPFFD uint32
}

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		if e == unix.EINTR || e == unix.EAGAIN && cmd == unix.BPF_PROG_LOAD {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// loadDeviceProgram loads insns as a cgroup device program and returns
// its descriptor.
func loadDeviceProgram(insns []bpfInsn) (int, error) {
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&bpfLicense[0]))),
	}
	copy(attr.progName[:], "cgsem_bench")
	fd, err := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	if err != nil {
		return -1, fmt.Errorf("bpf prog load: %w", err)
	}
	return fd, nil
}

func attachDeviceProgram(cgroupFD, progFD int) error {
	attr := progAttachAttr{targetFD: uint32(cgroupFD), attachBPFFD: uint32(progFD),
		attachType: unix.BPF_CGROUP_DEVICE, attachFlags: unix.BPF_F_ALLOW_MULTI}
	if _, err := bpfCall(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("bpf prog attach: %w", err)
	}
	return nil
}

func detachDeviceProgram(cgroupFD, progFD int) error {
	attr := progAttachAttr{targetFD: uint32(cgroupFD), attachBPFFD: uint32(progFD), attachType: unix.BPF_CGROUP_DEVICE}
	if _, err := bpfCall(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("bpf prog detach: %w", err)
	}
	return nil
}

// rawV2 does the v2 lifecycle below a held descriptor of the run's root
// on the cgroup2 mount.
type rawV2 struct {
	root int
	// prog is a program loaded once, for the variant that shares one
	// program between groups; -1 when each group loads its own.
	prog int
}

// lifecycle: mkdir, open the group, load the filter (unless one is
// shared), attach, detach, close, rmdir.
func (r *rawV2) lifecycle(name string) error {
	if err := mkdirAt(r.root, name); err != nil {
		return fmt.Errorf("mkdir %s: %w", name, err)
	}
	err := r.filter(name)
	if rerr := rmdirAt(r.root, name); rerr != nil && err == nil {
		err = fmt.Errorf("rmdir %s: %w", name, rerr)
	}
	return err
}

func (r *rawV2) filter(name string) error {
	dfd, err := openRetry(r.root, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	prog := r.prog
	if prog < 0 {
		if prog, err = loadDeviceProgram(nullOnlyProgram); err != nil {
			return err
		}
		defer unix.Close(prog)
	}
	if err := attachDeviceProgram(dfd, prog); err != nil {
		return err
	}
	return detachDeviceProgram(dfd, prog)
}
