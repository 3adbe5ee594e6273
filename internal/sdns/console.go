package sdns

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// console is the container's /dev/console: a pseudo-terminal whose
// terminal side is bind-mounted there, and whose output the host copies
// to a file. systemd logs to the console only when it is a terminal.
type console struct {
	master, tty *os.File // tty.Name() is its path in the host's /dev/pts
	done        chan struct{}
}

// openConsole makes the terminal pair and starts copying its output to
// path.
func openConsole(path string) (*console, error) {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The terminal is found by path from the container's copy of the
	// mount table (a bind from a descriptor would cross mount namespaces),
	// so the master comes from the devpts instance mounted at /dev/pts.
	mfd, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("sdns: console: open /dev/pts/ptmx: %w", err)
	}
	master := os.NewFile(uintptr(mfd), "ptmx")
	fail := func(err error) (*console, error) {
		master.Close()
		out.Close()
		return nil, fmt.Errorf("sdns: console: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail(err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return fail(err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	tfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	tty := os.NewFile(uintptr(tfd), name)
	// Raw output: no \r added to every line of the log.
	if t, err := unix.IoctlGetTermios(tfd, unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		_ = unix.IoctlSetTermios(tfd, unix.TCSETS, t)
	}
	c := &console{master: master, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer out.Close()
		// Ends with EIO once no process holds the terminal side open.
		_, _ = io.Copy(out, master)
	}()
	return c, nil
}

// close releases the host's hold on the terminal and waits until the
// copy has drained what the container wrote. Call it after the container
// is gone.
func (c *console) close() {
	c.tty.Close()
	<-c.done
	c.master.Close()
}
