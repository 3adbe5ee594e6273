package fake

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// task is a process or a thread the driver has put in a group. The pidfd
// pins its identity: signals go through it (never to a recycled pid), and
// it turns readable when the task exits, zombie or not.
type task struct {
	id     int  // pid, or tid for a thread
	tgid   int  // the process: id itself for a process
	thread bool // added with AddThread
	f      *os.File
	node   *node
}

// taskKey tells a process from its main thread added on its own, which
// share a number.
type taskKey struct {
	id     int
	thread bool
}

func (t *task) key() taskKey { return taskKey{t.id, t.thread} }

// openTask opens a pidfd for a process (the one tid belongs to, when id is
// a thread of it, as writing a tid to cgroup.procs moves its process) or,
// with thread set, for one thread. A task that has exited fails with
// ErrNotExist unless allowExited (Start's child may exit at once and stays
// a zombie until its caller waits).
func openTask(op string, p semantic.Path, id int, thread, allowExited bool) (*os.File, int, error) {
	if id <= 0 {
		return nil, 0, errorf(op, p, semantic.ErrInvalid, "%d is not a process or thread id", id)
	}
	tgid := id
	flags := unix.PIDFD_NONBLOCK
	if thread {
		flags |= unix.PIDFD_THREAD
		var err error
		if tgid, err = readTgid(id); err != nil {
			return nil, 0, semantic.Wrap(Name, op, p.Display(), err)
		}
	}
	fd, err := unix.PidfdOpen(id, flags)
	if (err == unix.EINVAL || err == unix.ENOENT) && !thread {
		// Not a thread-group leader but a thread of some process (older
		// kernels say EINVAL, newer ENOENT).
		if tgid, err = readTgid(id); err != nil {
			return nil, 0, semantic.Wrap(Name, op, p.Display(), err)
		}
		fd, err = unix.PidfdOpen(tgid, flags)
	}
	if err != nil {
		return nil, 0, semantic.Wrap(Name, op, p.Display(), fmt.Errorf("task %d: %w", id, err))
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(id))
	// Signal 0 checks the caller may signal the task, as the kernel checks
	// before moving it.
	if err := control(f, func(fd int) error { return unix.PidfdSendSignal(fd, 0, nil, 0) }); err != nil {
		f.Close()
		return nil, 0, semantic.Wrap(Name, op, p.Display(), fmt.Errorf("task %d: %w", id, err))
	}
	if !allowExited && exited(f) {
		f.Close()
		return nil, 0, errorf(op, p, semantic.ErrNotExist, "task %d has exited", id)
	}
	return f, tgid, nil
}

// readTgid reads the process a thread belongs to.
func readTgid(tid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("task %d: %w", tid, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("task %d: no Tgid in its status", tid)
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var inner error
	if err := rc.Control(func(fd uintptr) { inner = fn(int(fd)) }); err != nil {
		return err
	}
	return inner
}

// exited reports whether the pidfd's task has exited (or f is closed).
func exited(f *os.File) bool {
	ready := true
	err := control(f, func(fd int) error {
		ready = pollable(fd)
		return nil
	})
	return err != nil || ready
}

func pollable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

// waitExit blocks until the task exits (nil) or f is closed (an error),
// parked in the runtime's poller rather than holding a thread.
func waitExit(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool { return pollable(int(fd)) })
}

func pidfdThreadsWork() bool {
	fd, err := unix.PidfdOpen(unix.Gettid(), unix.PIDFD_THREAD)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// track puts the task on id into n: it moves a tracked one, or starts
// tracking a new one with a watcher. A process takes its threads along.
// Called with d.mu held; f is consumed.
func (d *Driver) track(n *node, id, tgid int, thread bool, f *os.File) {
	key := taskKey{id, thread}
	if old := d.tasks[key]; old != nil && !exited(old.f) {
		f.Close()
		d.log.Trace("move", "group", n.path.Display(), "id", id, "thread", thread)
		d.relocate(old, n)
	} else {
		if old != nil {
			// Exited, and its watcher has not run yet: the number now
			// names another task.
			d.forget(old)
		}
		t := &task{id: id, tgid: tgid, thread: thread, f: f}
		d.tasks[key] = t
		d.log.Trace("attach", "group", n.path.Display(), "id", id, "thread", thread)
		d.relocate(t, n)
		d.wg.Add(1)
		go d.watch(t)
	}
	if !thread {
		for _, t := range d.tasks {
			if t.thread && t.tgid == id {
				d.forget(t)
			}
		}
	}
}

// forget stops tracking t. Called with d.mu held.
func (d *Driver) forget(t *task) {
	if d.tasks[t.key()] == t {
		delete(d.tasks, t.key())
	}
	d.relocate(t, nil)
	t.f.Close()
}

// prune forgets the tasks of n's subtree (or of n alone) that have
// exited but whose watcher has not run yet, so that a task the caller has
// seen exit (reaped with wait, say) is gone from every answer, as the
// kernel takes a task out of its cgroup when it exits. Called with d.mu
// held.
func (d *Driver) prune(n *node, subtree bool) {
	nodes := []*node{n}
	if subtree {
		nodes = n.subtree()
	}
	for _, m := range nodes {
		for _, t := range m.tasks {
			if exited(t.f) {
				d.log.Trace("exited", "id", t.id, "group", m.path.Display())
				d.forget(t)
			}
		}
	}
}

// watch waits for t to exit and takes it out of its group.
func (d *Driver) watch(t *task) {
	defer d.wg.Done()
	if err := waitExit(t.f); err != nil {
		return // forgotten, or the driver closed
	}
	d.mu.Lock()
	if d.tasks[t.key()] == t {
		d.log.Trace("exited", "id", t.id, "group", t.node.path.Display())
		d.forget(t)
	}
	d.mu.Unlock()
}

// relocate moves t from its group to n (nil: out of every group), keeps
// the populated counts and fires populated/empty events on every group
// whose state flips. Called with d.mu held.
func (d *Driver) relocate(t *task, n *node) {
	from := t.node
	if from == n {
		return
	}
	var affected []*node
	before := map[*node]bool{}
	for _, side := range []*node{from, n} {
		if side == nil {
			continue
		}
		for _, a := range side.ancestry() {
			if _, seen := before[a]; !seen {
				before[a] = a.populated > 0
				affected = append(affected, a)
			}
		}
	}
	if from != nil {
		delete(from.tasks, t.key())
		for _, a := range from.ancestry() {
			a.populated--
		}
	}
	if n != nil {
		n.tasks[t.key()] = t
		for _, a := range n.ancestry() {
			a.populated++
		}
	}
	t.node = n
	for _, a := range affected {
		switch now := a.populated > 0; {
		case now && !before[a]:
			d.emit(a, semantic.EventPopulated, 0)
		case !now && before[a]:
			d.emit(a, semantic.EventEmpty, 0)
		}
	}
	d.bumpChanged()
}

// usage is what /proc says one process uses.
type usage struct {
	rss          uint64 // bytes resident
	user, system uint64 // clock ticks
}

// userHZ is the unit of /proc/<pid>/stat times; the kernel fixes it at
// 100 for every architecture's /proc ABI.
const userHZ = 100

// readUsage reads one process's resident memory and CPU times.
func readUsage(pid int) (usage, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	statm, err := os.ReadFile(dir + "/statm")
	if err != nil {
		return usage{}, err
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return usage{}, err
	}
	return parseUsage(statm, stat, uint64(os.Getpagesize()))
}

// parseUsage reads resident pages from statm (its second field) and utime
// and stime from stat (fields 14 and 15, counted after the command name,
// which may hold spaces and parentheses).
func parseUsage(statm, stat []byte, pageSize uint64) (usage, error) {
	var u usage
	f := strings.Fields(string(statm))
	if len(f) < 2 {
		return u, fmt.Errorf("statm %q: too few fields", statm)
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return u, fmt.Errorf("statm %q: %w", statm, err)
	}
	u.rss = pages * pageSize
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("stat %q: no command name", stat)
	}
	rest := strings.Fields(string(stat[i+1:]))
	// rest[0] is field 3 (state), so field k is rest[k-3].
	if len(rest) < 13 {
		return u, fmt.Errorf("stat %q: too few fields", stat)
	}
	if u.user, err = strconv.ParseUint(rest[11], 10, 64); err != nil {
		return u, fmt.Errorf("stat utime: %w", err)
	}
	if u.system, err = strconv.ParseUint(rest[12], 10, 64); err != nil {
		return u, fmt.Errorf("stat stime: %w", err)
	}
	return u, nil
}
