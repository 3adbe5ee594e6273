package sdns

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Modes: the cgroup layout systemd finds at /sys/fs/cgroup.
const (
	// ModeHybrid mounts the host's v1 controller hierarchies, name=systemd
	// and cgroup2 at /sys/fs/cgroup/unified: systemd manages the v1
	// controllers (memory, pids, cpu, devices, ...) and tracks units on
	// cgroup2.
	ModeHybrid = "hybrid"
	// ModeUnified mounts cgroup2 alone at /sys/fs/cgroup: systemd gets the
	// controllers that the caller's cgroup2 group offers (none on a hybrid
	// host, where every controller is bound to v1).
	ModeUnified = "unified"
)

// GroupPrefix starts the name of every cgroup this package creates; the
// rest is random.
const GroupPrefix = "cgsem-test-sd-"

// NoDeviceMajor is the major number of /dev/cgsem-nodev inside, a
// character node (minor 0) that no driver serves: 60 is reserved for
// local use and never allocated dynamically. Opening it fails with EPERM
// when the device cgroup denies it and with ENXIO when it allows it.
const NoDeviceMajor = 60

// Options configure Start. The zero value works.
type Options struct {
	// Mode is ModeHybrid or ModeUnified; "" picks hybrid where the host has
	// the v1 hierarchies systemd needs, else unified.
	Mode string
	// Systemd is the systemd binary; "" finds /lib/systemd/systemd or
	// /usr/lib/systemd/systemd.
	Systemd string
	// MemoryLimit caps the memory of everything in the container, a
	// safety net, where the caller's groups allow it (v1 memory, or a
	// cgroup2 memory controller offered to the group); 0 is 4 GiB.
	MemoryLimit uint64
	// TasksLimit caps the container's tasks likewise; 0 is 4096.
	TasksLimit uint64
	// Units are extra unit files for /etc/systemd/system inside, by name.
	Units map[string]string
	// LogLevel is systemd's --log-level; "" is "info".
	LogLevel string
	// LogTarget is systemd's --log-target; "" is "console": PID 1's log
	// goes to the container's console, a terminal whose output the host
	// appends to ConsolePath (services still log to the journal).
	LogTarget string
	// StopGrace bounds how long Stop waits for a clean poweroff before it
	// kills the container; 0 is 30 s. Stop's ctx can end the wait sooner.
	StopGrace time.Duration
	// TempDir holds the state directory (console log, the tmpfs mount
	// point); "" is os.TempDir().
	TempDir string
	// Logger receives this package's logs, named "sdns": a trace line per
	// cgroup write and removal, debug per step, info for start and stop.
	// nil is the null logger.
	Logger hclog.Logger
}

// Timings are durations from the start of Start.
type Timings struct {
	// Exec: systemd was executed as the container's PID 1.
	Exec time.Duration
	// Bus: org.freedesktop.systemd1 answered on the system bus.
	Bus time.Duration
	// Booted: SystemState was running or degraded.
	Booted time.Duration
}

// Instance is a running container. Its methods are safe for concurrent use.
type Instance struct {
	opts    Options
	log     hclog.Logger
	name    string
	mode    string
	state   string
	nsenter string
	hier    []hierarchy
	groups  map[string]string // hierarchy key -> created group directory
	console *console
	t0      time.Time

	initPID   int
	initProc  *os.Process   // signals through a pidfd, safe after the reap
	root      *os.File      // the container's root directory
	ns        []nsFile      // its namespaces, as nsenter options
	exited    chan struct{} // closed once the container's PID 1 is reaped
	exitState string        // "exit status 1", "signal: killed"; set before exited is closed

	mu      sync.Mutex
	timings Timings
	procs   map[*Process]struct{}

	stopOnce sync.Once
	stopErr  error
}

type nsFile struct {
	option string
	f      *os.File
}

// fdPath names one of this process's descriptors so that other processes
// (nsenter, busctl) reach the same object.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()) }

// Name is the name of the container's group in every hierarchy.
func (in *Instance) Name() string { return in.name }

// Mode is the cgroup layout systemd sees: ModeHybrid or ModeUnified.
func (in *Instance) Mode() string { return in.mode }

// InitPID is the host pid of the container's PID 1, systemd, while it
// runs (see Exited): for reading /proc, not for signalling.
func (in *Instance) InitPID() int { return in.initPID }

// RootDir is the container's root directory as the host reaches it, a
// path through a descriptor this process holds until Stop (not through
// the container's pid, which another process may get once the container
// is gone). Files written below it land in the container's tmpfs.
func (in *Instance) RootDir() string { return fdPath(in.root) }

// BusAddress is the container's D-Bus system bus as the host reaches it.
// dbus.Connect(addr) authenticates with EXTERNAL as the caller's uid and
// says Hello; see also Connect. (systemd's private socket is no
// alternative from the host: systemd refuses a peer whose pid it cannot
// see in its pid namespace.)
func (in *Instance) BusAddress() string {
	return "unix:path=" + in.RootDir() + "/run/dbus/system_bus_socket"
}

// ConsolePath is the host file that collects what the container writes to
// /dev/console; it is removed by Stop.
func (in *Instance) ConsolePath() string { return filepath.Join(in.state, "console.log") }

// ConsoleTail returns up to the last n bytes of the console log.
func (in *Instance) ConsoleTail(n int64) string {
	f, err := os.Open(in.ConsolePath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// CgroupPath is the host directory of the container's root group in a
// hierarchy, named by a controller ("memory", "cpuacct"), "name=systemd"
// (or "systemd"), or "unified" (or "") for cgroup2; "" when the container
// has no group there. systemd inside sees this directory as "/".
func (in *Instance) CgroupPath(hierarchy string) string {
	switch hierarchy {
	case "", "unified", "cgroup2":
		return in.groups["unified"]
	case "systemd":
		hierarchy = "name=systemd"
	}
	for _, h := range in.hier {
		if h.Key() == hierarchy || slices.Contains(h.Controllers, hierarchy) {
			return in.groups[h.Key()]
		}
	}
	return ""
}

// HostPath maps a cgroup path as systemd inside reports it (a unit's
// ControlGroup such as "/system.slice/x.scope") to its host directory in
// a hierarchy named as for CgroupPath; "" when there is none.
func (in *Instance) HostPath(hierarchy, cgroup string) string {
	root := in.CgroupPath(hierarchy)
	if root == "" {
		return ""
	}
	return filepath.Join(root, filepath.Clean("/"+cgroup))
}

// Groups lists the container's group directories on the host by hierarchy
// key ("memory", "cpu,cpuacct", "name=systemd", "unified").
func (in *Instance) Groups() map[string]string {
	out := make(map[string]string, len(in.groups))
	for k, v := range in.groups {
		out[k] = v
	}
	return out
}

func (in *Instance) groupDirs() []string {
	var ds []string
	for _, g := range in.groups {
		ds = append(ds, g)
	}
	sort.Strings(ds)
	return ds
}

// Timings reports how long the steps of the start took; zero for a step
// not reached yet (WaitReady fills Bus and Booted).
func (in *Instance) Timings() Timings {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.timings
}

// Exited is closed once the container's PID 1 has exited and been reaped.
func (in *Instance) Exited() <-chan struct{} { return in.exited }
