package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// view is how this process reaches what systemd sees: its file system (for
// /sys/fs/cgroup, /dev and /proc/devices) and its pid namespace (the pids
// systemd takes in PIDs= and AttachProcessesToUnit). On a host where the
// caller and systemd share namespaces both are the caller's own. A caller
// that reaches a systemd in other namespaces through a bus address (a
// container's bus seen from the host) sees them through the bus peer, the
// bus daemon, which runs in systemd's namespaces: its /proc/PID/root and
// /proc/PID/ns/pid.
type view struct {
	// root prefixes systemd's paths: "" or "/proc/PID/root".
	root string
	// peer is the bus peer's pid when its pid namespace differs; 0 when
	// systemd's pids are the caller's.
	peer int
	// depth is the level of systemd's pid namespace below the caller's,
	// the index of a process's pid there in its NSpid list.
	depth int
	// pidns identifies systemd's pid namespace (device and inode).
	pidns [2]uint64
}

// path is a path in systemd's file system, as this process opens it.
func (v *view) path(p string) string { return v.root + p }

// samePids reports whether systemd's pids are the caller's.
func (v *view) samePids() bool { return v.peer == 0 }

// peerOf returns the pid of the process at the other end of a unix socket
// bus address, or 0 when the address is not a unix path or the peer is
// not visible from here.
func peerOf(address string) (int, error) {
	path := ""
	for _, a := range strings.Split(address, ";") {
		transport, params, ok := strings.Cut(a, ":")
		if !ok || transport != "unix" {
			continue
		}
		for kv := range strings.SplitSeq(params, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "path" {
				path = unescapeAddress(v)
			}
		}
		if path != "" {
			break
		}
	}
	if path == "" {
		return 0, nil
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) { cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}

// unescapeAddress decodes a D-Bus address value's %XX escapes.
func unescapeAddress(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// nsID identifies a namespace file.
func nsID(path string) ([2]uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// newView works out how to reach the systemd behind a bus address.
func newView(address string) (*view, error) {
	v := &view{}
	peer, err := peerOf(address)
	if err != nil || peer <= 0 {
		// Not a unix socket, or a peer in a namespace this process
		// cannot see (a host's bus bind-mounted into a container):
		// nothing better than the caller's own view.
		return v, nil
	}
	base := "/proc/" + strconv.Itoa(peer)
	myMnt, err1 := nsID("/proc/self/ns/mnt")
	peerMnt, err2 := nsID(base + "/ns/mnt")
	if err1 == nil && err2 == nil && myMnt != peerMnt {
		v.root = base + "/root"
	}
	myPid, err1 := nsID("/proc/self/ns/pid")
	peerPid, err2 := nsID(base + "/ns/pid")
	if err1 == nil && err2 == nil && myPid != peerPid {
		ns, err := nsPIDs(peer)
		if err != nil {
			return nil, err
		}
		v.peer, v.depth, v.pidns = peer, len(ns)-1, peerPid
	}
	return v, nil
}

// nsPIDs reads a process's NSpid: its pid in the caller's namespace first,
// then in each nested one down to its own.
func nsPIDs(pid int) ([]int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "NSpid:")
		if !ok {
			continue
		}
		var out []int
		for _, f := range strings.Fields(rest) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/status: NSpid %q", pid, rest)
			}
			out = append(out, n)
		}
		if len(out) == 0 {
			break
		}
		return out, nil
	}
	return nil, fmt.Errorf("/proc/%d/status has no NSpid line", pid)
}

// errOutsidePidns is wrapped when a process cannot be named to systemd.
var errOutsidePidns = errors.New("the process is not in systemd's pid namespace")

// systemdPID translates a pid of the caller's into systemd's pid namespace.
// The process must live in that namespace or one nested in it.
func (v *view) systemdPID(pid int) (uint32, error) {
	if v.samePids() {
		return uint32(pid), nil
	}
	ns, err := nsPIDs(pid)
	if err != nil {
		return 0, err
	}
	if len(ns) <= v.depth || !v.inSystemdPidns(pid, len(ns)-1-v.depth) {
		return 0, fmt.Errorf("pid %d: %w", pid, errOutsidePidns)
	}
	return uint32(ns[v.depth]), nil
}

// inSystemdPidns checks that systemd's pid namespace is the process's own
// or its ancestor up levels above.
func (v *view) inSystemdPidns(pid, up int) bool {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	for range up {
		parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		if err != nil {
			return false
		}
		fd = parent
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return [2]uint64{st.Dev, st.Ino} == v.pidns
}
