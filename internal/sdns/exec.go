package sdns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Command is a process to run inside the container.
type Command struct {
	// Args is the command line; Args[0] is looked up in PATH inside.
	Args []string
	// Env is the environment; nil is a PATH of the usual directories.
	Env []string
	// Stdin, Stdout and Stderr as in os/exec; nil is /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Process is a command running inside the container. On the host it is
// nsenter (the host pid, a child of this process) with the command as its
// only child, which is what runs inside.
type Process struct {
	in   *Instance
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu        sync.Mutex
	hostChild int
	innerPID  int
}

// Exec starts c inside every namespace of the container and in the same
// groups as the container's PID 1 (which, on the unified hierarchy, is
// systemd's init.scope: a leaf, so a process may join it whatever
// controllers systemd enables). The command is in those groups before it
// runs its first instruction. ctx ends the process like
// exec.CommandContext, with Kill.
func (in *Instance) Exec(ctx context.Context, c Command) (*Process, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("sdns: exec: empty command line")
	}
	select {
	case <-in.exited:
		return nil, errors.New("sdns: exec: the container is not running")
	default:
	}
	env := c.Env
	if env == nil {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer gateW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		gateR.Close()
		return nil, err
	}
	defer statusR.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	p := &Process{in: in, cmd: cmd, done: make(chan struct{})}
	cmd.Cancel = p.Kill
	cmd.Args = []string{"cgsem-sdns-gate"}
	cmd.Env = append(append([]string{}, env...), stageEnv+"="+stageGate)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.ExtraFiles = []*os.File{gateR, statusW}
	// Apart from the test's process group: a terminal's ^C must not kill
	// nsenter before its child.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	gateR.Close()
	statusW.Close()
	if err != nil {
		return nil, fmt.Errorf("sdns: exec: %w", err)
	}
	in.mu.Lock()
	in.procs[p] = struct{}{}
	in.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		in.mu.Lock()
		delete(in.procs, p)
		in.mu.Unlock()
		close(p.done)
	}()
	fail := func(err error) (*Process, error) {
		_ = p.Kill()
		<-p.done
		return nil, err
	}
	if err := in.joinInit(ctx, cmd.Process.Pid); err != nil {
		return fail(fmt.Errorf("sdns: exec: %w", err))
	}
	argv := []string{in.nsenter}
	for _, n := range in.ns {
		argv = append(argv, n.option+"="+fdPath(n.f))
	}
	argv = append(argv, "--root="+fdPath(in.root), "--wd="+fdPath(in.root), "--")
	argv = append(argv, c.Args...)
	b, _ := json.Marshal(argv)
	if _, err := gateW.Write(b); err != nil {
		return fail(fmt.Errorf("sdns: exec: %w", err))
	}
	gateW.Close()
	msg, _ := io.ReadAll(statusR)
	if len(msg) > 0 {
		return fail(fmt.Errorf("sdns: exec: %s", msg))
	}
	in.log.Debug("exec", "args", c.Args, "host_pid", cmd.Process.Pid)
	return p, nil
}

// joinInit moves pid into the groups of the container's PID 1. systemd
// creates and removes PID 1's group in a v1 controller hierarchy as units
// start to need that controller or stop needing it, so a group read a
// moment ago may be gone: then it reads them again.
func (in *Instance) joinInit(ctx context.Context, pid int) error {
	for {
		dirs, err := in.initGroups()
		if err != nil {
			return err
		}
		err = in.moveInto(pid, dirs)
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		in.log.Debug("PID 1 changed groups, moving again", "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-in.exited:
			return err
		default:
		}
	}
}

// initGroups maps the groups of the container's PID 1 to host directories,
// all of which must lie in the container's own groups.
func (in *Instance) initGroups() ([]string, error) {
	cgs, err := readParse(fmt.Sprintf("/proc/%d/cgroup", in.initPID), parseProcCgroup)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range in.hier {
		for _, c := range cgs {
			if c.ID != h.ID {
				continue
			}
			d := h.hostPath(c.Path)
			if !in.owns(d) {
				return nil, fmt.Errorf("PID 1 is in %s, outside the container's groups", d)
			}
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// Run runs args inside and returns its combined output.
func (in *Instance) Run(ctx context.Context, args ...string) ([]byte, error) {
	var out bytes.Buffer
	p, err := in.Exec(ctx, Command{Args: args, Stdout: &out, Stderr: &out})
	if err != nil {
		return nil, err
	}
	err = p.Wait()
	return out.Bytes(), err
}

// Wait waits for the command to exit and returns its status as os/exec
// does.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Done is closed once the command has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL to the command inside; nsenter then reaps it and
// exits. Killing nsenter first would orphan the command to the host's init
// (the reaper of nsenter's pid namespace), and a zombie the container's
// init cannot reap stalls systemd's shutdown. Before nsenter has forked,
// Kill ends nsenter itself.
func (p *Process) Kill() error {
	proc := p.cmd.Process // signals go through a pidfd: no pid reuse
	// A pending SIGSTOP makes a fork in progress fail and restart, so
	// once it is sent the list of children cannot grow.
	if err := proc.Signal(unix.SIGSTOP); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return nil
		}
		return err
	}
	defer proc.Signal(unix.SIGCONT)
	if child := firstChild(proc.Pid); child != 0 {
		return signalChild(proc.Pid, child, unix.SIGKILL)
	}
	return proc.Kill()
}

// signalChild signals child if it still is parent's child: the pidfd pins
// the process, and the parent check rules out a reused pid.
func signalChild(parent, child int, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(child, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if parentOf(child) != parent {
		return unix.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// parentOf reads a process's parent pid; 0 when it is gone.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses; the fields
	// after the last ")" are state, then ppid.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// PID waits until the command's process exists inside and returns its pid
// in the container's pid namespace: the number systemd knows it by, for
// StartTransientUnit's PIDs. The process may still be nsenter's fork, just
// before it executes the command; the pid stays the same.
func (p *Process) PID(ctx context.Context) (int, error) {
	if err := p.resolve(ctx); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.innerPID, nil
}

// HostPID waits like PID and returns the command's pid as the host sees
// it: what cgroup.procs files read from the host list.
func (p *Process) HostPID(ctx context.Context) (int, error) {
	if err := p.resolve(ctx); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hostChild, nil
}

// Signal waits like PID and sends sig to the command inside.
func (p *Process) Signal(ctx context.Context, sig unix.Signal) error {
	pid, err := p.HostPID(ctx)
	if err != nil {
		return err
	}
	return signalChild(p.cmd.Process.Pid, pid, sig)
}

// resolve finds nsenter's child, which it forks once it has entered the
// pid namespace.
func (p *Process) resolve(ctx context.Context) error {
	p.mu.Lock()
	done := p.innerPID != 0
	p.mu.Unlock()
	if done {
		return nil
	}
	parent := p.cmd.Process.Pid
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if child := firstChild(parent); child != 0 {
			if inner := innermostPID(child); inner != 0 {
				p.mu.Lock()
				p.hostChild, p.innerPID = child, inner
				p.mu.Unlock()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("sdns: the command exited before its pid was read: %v", p.err)
		case <-tick.C:
		}
	}
}

func firstChild(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// innermostPID reads the last NSpid of a process: its pid in the deepest
// pid namespace it belongs to.
func innermostPID(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fs := strings.Fields(rest)
			if len(fs) < 2 {
				// Still in the host's pid namespace only: nsenter has
				// forked but this is not yet the namespaced child.
				return 0
			}
			n, _ := strconv.Atoi(fs[len(fs)-1])
			return n
		}
	}
	return 0
}
