package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// The suite's helper processes are the test binary itself, re-executed with
// helperEnv set to a JSON helperSpec. Run sees the variable before anything
// else, performs the mode and exits, so a driver's test needs no TestMain.
//
// Protocol: the helper talks in lines on stdout and listens on stdin. With
// Wait set it first says "ready" and acts only once it reads "go", so the
// suite can move it into a group before it does anything that counts. End
// of stdin tells a helper that waits for it to exit.
//
// Modes:
//
//	sleep            say "ready", then wait for end of stdin
//	print-cgroup     write /proc/self/cgroup and a "--" line as the very
//	                 first act, then wait for end of stdin
//	hog BYTES        allocate and touch BYTES of memory, saying "hog N" as it
//	                 goes and "hogged N" at the end, then wait for end of stdin
//	fork N           say "threads T" (its own thread count), then try to start
//	                 N children that only pause, saying "fork ok PID" or
//	                 "fork fail ERRNO" for each and "forked K" at the end; at
//	                 end of stdin, kill and reap the children and exit
//	open             for each stdin line "PATH r|w|rw", open PATH so and say
//	                 "errno E" (0 on success)
//	spin             burn CPU, saying "spin COUNT" about every 10ms, until end
//	                 of stdin
const helperEnv = "CGSEM_CONFORMANCE_HELPER"

// IsHelper reports whether this process is one of the suite's helper
// processes (a re-executed test binary), for a TestMain that must stay out
// of its way.
func IsHelper() bool {
	_, ok := os.LookupEnv(helperEnv)
	return ok
}

type helperSpec struct {
	Mode string   `json:"mode"`
	Args []string `json:"args,omitempty"`
	Wait bool     `json:"wait,omitempty"`
}

// runHelper is the child side. It returns the exit code.
func runHelper(raw string) int {
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "conformance helper: bad %s: %v\n", helperEnv, err)
		return 2
	}
	if spec.Mode == "print-cgroup" {
		// Before anything else: this is the membership the process started with.
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			fmt.Fprintf(os.Stderr, "conformance helper: %v\n", err)
			return 1
		}
		os.Stdout.Write(append(b, "--\n"...))
		io.Copy(io.Discard, os.Stdin)
		return 0
	}
	in := bufio.NewReader(os.Stdin)
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	if spec.Mode == "fork" {
		// One thread keeps the children's parent-death signal meaningful.
		runtime.LockOSThread()
		say("threads %d", threadCount())
	}
	if spec.Wait || spec.Mode == "sleep" || spec.Mode == "open" || spec.Mode == "spin" {
		say("ready")
	}
	if spec.Wait {
		if line, _ := in.ReadString('\n'); strings.TrimSpace(line) != "go" {
			return 3
		}
	}
	switch spec.Mode {
	case "sleep":
		io.Copy(io.Discard, in)
	case "hog":
		n, err := strconv.ParseInt(arg(spec, 0), 10, 64)
		if err != nil {
			return 2
		}
		hog(n, say, func() { io.Copy(io.Discard, in) })
	case "fork":
		n, err := strconv.Atoi(arg(spec, 0))
		if err != nil {
			return 2
		}
		var kids []int
		for range n {
			pid, errno := forkPause()
			if errno != 0 {
				say("fork fail %d", int(errno))
				continue
			}
			kids = append(kids, pid)
			say("fork ok %d", pid)
		}
		say("forked %d", len(kids))
		io.Copy(io.Discard, in)
		for _, pid := range kids {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	case "open":
		for {
			line, err := in.ReadString('\n')
			if err != nil {
				return 0
			}
			path, how, _ := strings.Cut(strings.TrimSpace(line), " ")
			say("errno %d", openErrno(path, how))
		}
	case "spin":
		go func() {
			io.Copy(io.Discard, in)
			os.Exit(0)
		}()
		spin(say)
	default:
		fmt.Fprintf(os.Stderr, "conformance helper: unknown mode %q\n", spec.Mode)
		return 2
	}
	return 0
}

func arg(spec helperSpec, i int) string {
	if i < len(spec.Args) {
		return spec.Args[i]
	}
	return ""
}

// hog allocates and touches n bytes, then holds them until done returns.
func hog(n int64, say func(string, ...any), done func()) {
	const chunk = 1 << 20
	page := os.Getpagesize()
	var held [][]byte
	var total int64
	for total < n {
		c := make([]byte, chunk)
		for i := 0; i < len(c); i += page {
			c[i] = 1
		}
		held = append(held, c)
		total += chunk
		if total%(16<<20) == 0 {
			say("hog %d", total)
		}
	}
	say("hogged %d", total)
	done()
	runtime.KeepAlive(held)
}

func spin(say func(string, ...any)) {
	var n uint64
	last := time.Now()
	for {
		n++
		if n&(1<<16-1) == 0 && time.Since(last) >= 10*time.Millisecond {
			say("spin %d", n)
			last = time.Now()
		}
	}
}

func openErrno(path, how string) int {
	flag := syscall.O_RDONLY
	switch how {
	case "w":
		flag = syscall.O_WRONLY
	case "rw":
		flag = syscall.O_RDWR
	}
	fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return int(errno)
		}
		return -1
	}
	syscall.Close(fd)
	return 0
}

func threadCount() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// proc is the parent's side of one helper process. Every started proc is
// killed and reaped in t.Cleanup.
type proc struct {
	f     *fixture
	mode  string
	cmd   *exec.Cmd
	stdin *os.File // our end of the child's stdin
	out   *os.File // our end of the child's stdout
	child []*os.File
	lines chan string
	last  atomic.Pointer[string]
	// exited is closed once the process has been waited for.
	exited chan struct{}
	stderr syncBuffer
}

// syncBuffer is a bytes.Buffer safe to read while exec copies into it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// helper prepares (does not start) a helper process.
func (f *fixture) helper(mode string, wait bool, args ...string) *proc {
	f.t.Helper()
	spec, err := json.Marshal(helperSpec{Mode: mode, Args: args, Wait: wait})
	require.NoError(f.t, err)
	inR, inW, err := os.Pipe()
	require.NoError(f.t, err)
	outR, outW, err := os.Pipe()
	require.NoError(f.t, err)
	p := &proc{f: f, mode: mode, stdin: inW, out: outR, child: []*os.File{inR, outW},
		lines: make(chan string, 4096), exited: make(chan struct{})}
	// The running binary itself, even if the test changed directory.
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	p.cmd = exec.Command(exe, "-test.run="+f.s.runPattern)
	p.cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	if mode == "fork" {
		// Fewer runtime threads leave more of a small pids limit to forks.
		p.cmd.Env = append(p.cmd.Env, "GOMAXPROCS=1")
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, &p.stderr
	// A helper's children may hold stderr after it died; do not wait for them.
	p.cmd.WaitDelay = 5 * time.Second
	return p
}

// start starts the helper outside any group of the driver.
func (p *proc) start() *proc {
	p.f.t.Helper()
	require.NoError(p.f.t, p.cmd.Start(), "start helper %s", p.mode)
	p.started()
	return p
}

// startIn starts the helper through g.Start. On failure nothing may have
// been started.
func (p *proc) startIn(g semantic.Group) error {
	p.f.t.Helper()
	err := g.Start(p.f.ctx, p.cmd)
	if err != nil {
		p.discard()
		if p.cmd.Process != nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			p.f.t.Errorf("Start into %s failed (%v) but started process %d", g.Path(), err, p.cmd.Process.Pid)
		}
		return err
	}
	require.NotNil(p.f.t, p.cmd.Process, "Start into %s returned nil but cmd.Process is nil", g.Path())
	p.started()
	return nil
}

// discard closes the pipes of a helper that was never started.
func (p *proc) discard() {
	for _, c := range append(p.child, p.stdin, p.out) {
		c.Close()
	}
}

func (p *proc) started() {
	for _, c := range p.child {
		c.Close()
	}
	go func() {
		sc := bufio.NewScanner(p.out)
		for sc.Scan() {
			line := sc.Text()
			p.last.Store(&line)
			select {
			case p.lines <- line:
			default: // only spin says this much, and it is read through last
			}
		}
		close(p.lines)
	}()
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	p.f.t.Cleanup(p.stop)
}

// pid is the helper's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop kills and reaps the helper.
func (p *proc) stop() {
	p.cmd.Process.Kill()
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(patience):
		p.f.t.Errorf("helper %s (pid %d) not reaped %v after SIGKILL", p.mode, p.pid(), patience)
	}
	p.out.Close()
}

// expect reads lines until one starts with prefix and returns it.
func (p *proc) expect(prefix string) string {
	p.f.t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.f.t.Fatalf("helper %s (pid %d) ended its output before saying %q; stderr: %s", p.mode, p.pid(), prefix, p.stderr.String())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timer.C:
			p.f.t.Fatalf("helper %s (pid %d) did not say %q within %v; stderr: %s", p.mode, p.pid(), prefix, patience, p.stderr.String())
		}
	}
}

// lineWith delivers the first line starting with prefix, read in the
// background; nothing else may read the helper's lines meanwhile.
func (p *proc) lineWith(prefix string) <-chan string {
	out := make(chan string, 1)
	go func() {
		for line := range p.lines {
			if strings.HasPrefix(line, prefix) {
				out <- line
				return
			}
		}
	}()
	return out
}

// send writes one line to the helper's stdin.
func (p *proc) send(line string) {
	p.f.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.f.t, err, "write to helper %s", p.mode)
}

// closeInput ends the helper's stdin, which tells most modes to exit.
func (p *proc) closeInput() { p.stdin.Close() }

// wait waits for the helper to exit and returns its state.
func (p *proc) wait() *os.ProcessState {
	p.f.t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	case <-time.After(patience):
		p.f.t.Fatalf("helper %s (pid %d) did not exit within %v", p.mode, p.pid(), patience)
		return nil
	}
}

// killedBySIGKILL reports whether a process died of SIGKILL.
func killedBySIGKILL(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// lastNumber is the number at the end of the helper's latest line (spin's
// counter), or -1 before the first.
func (p *proc) lastNumber() int64 {
	l := p.last.Load()
	if l == nil {
		return -1
	}
	f := strings.Fields(*l)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// sleeper starts a sleeping helper outside the driver's groups.
func (f *fixture) sleeper() *proc {
	f.t.Helper()
	p := f.helper("sleep", false).start()
	p.expect("ready")
	return p
}

// sleeperIn starts a sleeper and adds it to g.
func (f *fixture) sleeperIn(g semantic.Group) *proc {
	f.t.Helper()
	p := f.sleeper()
	require.NoError(f.t, g.AddProcess(f.ctx, p.pid()), "add sleeper %d to %s", p.pid(), g.Path())
	return p
}

// runIn starts a helper that acts inside g: through g.Start where the driver
// starts inside, otherwise started outside and added; either way it acts
// only once it is in the group.
func (f *fixture) runIn(g semantic.Group, mode string, args ...string) *proc {
	f.t.Helper()
	p := f.helper(mode, true, args...)
	if f.supports(semantic.StartInside) {
		require.NoError(f.t, p.startIn(g), "start helper %s in %s", mode, g.Path())
		p.expect("ready")
	} else {
		p.start()
		p.expect("ready")
		require.NoError(f.t, g.AddProcess(f.ctx, p.pid()), "add helper %s to %s", mode, g.Path())
	}
	p.send("go")
	return p
}
