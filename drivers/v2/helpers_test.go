package v2_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/semantic"
)

// helperEnv makes the test binary one of this package's helper processes
// instead of running tests (the conformance suite has its own, named by
// its own variable).
const helperEnv = "CGSEM_V2_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runHelper is the child side:
//
//	sleep              say "ready", then wait for the end of stdin
//	write DEV BYTES    say "ready", wait for a line, then write BYTES to
//	                   the block device DEV with O_DIRECT in 64KiB writes
//	                   and say "wrote N in NS"
//	open r|w|rw:PATH.. say "ready", open each PATH so, and say "opened"
//	                   and the errno of each open (0 for success)
//	create ROOT MOUNT GROUP DEFAULT RULE..
//	                   say "ready", open a v2 driver on ROOT through
//	                   MOUNT, create GROUP with the device list DEFAULT
//	                   ("allow" or "deny") and RULEs (as devs takes them),
//	                   say "created" and exit, leaving the group behind
func runHelper(mode string, args []string) int {
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	switch mode {
	case "sleep":
		io.Copy(io.Discard, in)
		return 0
	case "open":
		fmt.Println(openAll(args))
		return 0
	case "create":
		if err := createGroup(args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("created")
		return 0
	case "write":
		in.ReadString('\n')
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		start := time.Now()
		written, err := directWrite(args[0], n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("wrote %d in %d\n", written, time.Since(start).Nanoseconds())
		io.Copy(io.Discard, in)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// openAll opens each "r|w|rw:PATH" and returns "opened" and the errno of
// each, 0 for success.
func openAll(specs []string) string {
	out := "opened"
	for _, spec := range specs {
		how, path, _ := strings.Cut(spec, ":")
		flags := map[string]int{"r": unix.O_RDONLY, "w": unix.O_WRONLY, "rw": unix.O_RDWR}[how]
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		var errno unix.Errno
		switch {
		case err == nil:
			unix.Close(fd)
		case !errors.As(err, &errno):
			errno = unix.EINVAL
		}
		out += " " + strconv.Itoa(int(errno))
	}
	return out
}

// createGroup is the create helper: a driver in a process of its own,
// which ends without deleting what it made, as a cgsem command does.
func createGroup(args []string) error {
	if len(args) < 4 {
		return fmt.Errorf("create: want ROOT MOUNT GROUP DEFAULT RULE..., got %q", args)
	}
	d, err := v2.New(semantic.Options{Root: args[0], Settings: map[string]string{"mount": args[1]}})
	if err != nil {
		return err
	}
	defer d.Close()
	list := devs(semantic.DevicePolicy(args[3]), args[4:]...)
	_, err = d.Create(context.Background(), semantic.MustPath(args[2]), &semantic.Resources{Devices: list})
	return err
}

// directWrite writes n bytes to dev, bypassing the page cache, so each
// write is a bio that io.max sees when it is issued.
func directWrite(dev string, n int64) (int64, error) {
	const chunk = 64 << 10
	fd, err := unix.Open(dev, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	// O_DIRECT wants an aligned buffer; an anonymous mapping is page
	// aligned.
	buf, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(buf)
	if uintptr(unsafe.Pointer(&buf[0]))%4096 != 0 {
		return 0, fmt.Errorf("buffer not aligned")
	}
	var done int64
	for done < n {
		w, err := unix.Pwrite(fd, buf, done)
		if err != nil {
			return done, err
		}
		done += int64(w)
	}
	return done, nil
}

// helper is the parent's side of one helper process; it is killed and
// reaped when the test ends.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// read is closed once stdout is read to its end: only then may
	// cmd.Wait run, as it closes the pipe, dropping what a helper that
	// exits at once wrote and no one had read yet.
	read chan struct{}
	done chan struct{}
}

// newHelper prepares a helper process, not started.
func newHelper(t *testing.T, mode string, args ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 64),
		read: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.read)
		defer close(h.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	return h
}

// started registers the kill and reap of a helper started by someone
// (cmd.Start or a group's Start), and waits for it to say "ready".
func (h *helper) started() *helper {
	h.t.Helper()
	go func() {
		<-h.read
		h.cmd.Wait()
		close(h.done)
	}()
	h.t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.stdin.Close()
		<-h.done
	})
	h.expect("ready")
	return h
}

// start starts the helper outside any group of a driver.
func (h *helper) start() *helper {
	h.t.Helper()
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	return h.started()
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

// expect returns the next line starting with prefix.
func (h *helper) expect(prefix string) string {
	h.t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				h.t.Fatalf("helper %d ended before saying %q", h.cmd.Process.Pid, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			h.t.Fatalf("helper %d did not say %q", h.cmd.Process.Pid, prefix)
		}
	}
}

func (h *helper) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

// threads lists the thread ids of pid.
func threads(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}
