package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))

	cases := []struct {
		name  string
		setup [][]string
		args  []string
		code  int
		// exist and gone are groups that must and must not exist afterwards.
		exist, gone []string
		stdout      string
		stderr      string
	}{
		{name: "true", args: []string{"--path", "a", "true"}, code: 0, exist: []string{"a"}},
		{name: "exit status", args: []string{"--path", "a", "--", "sh", "-c", "exit 3"}, code: 3, exist: []string{"a"}},
		{name: "killed by SIGKILL", args: []string{"--path", "a", "--", "sh", "-c", "kill -KILL $$"}, code: 128 + 9},
		{name: "killed by SIGTERM", args: []string{"--path", "a", "--", "sh", "-c", "kill -TERM $$"}, code: 128 + 15},
		{name: "output passes through", args: []string{"--path", "a", "echo", "hello"}, stdout: "hello\n"},
		{name: "flags after the command are the command's", args: []string{"--path", "a", "echo", "--json", "--memory", "1G"}, stdout: "--json --memory 1G\n"},
		{name: "rm removes the group and the levels it made", setup: [][]string{{"create", "keep"}},
			args: []string{"--path", "keep/x/y", "--rm", "true"}, exist: []string{"keep"}, gone: []string{"keep/x", "keep/x/y"}},
		{name: "rm after a failing command", args: []string{"--path", "a/b", "--rm", "--", "sh", "-c", "exit 4"}, code: 4, gone: []string{"a", "a/b"}},
		{name: "rm keeps a group that existed", setup: [][]string{{"create", "a"}}, args: []string{"--rm", "--path", "a", "true"}, exist: []string{"a"}},
		{name: "existing group", setup: [][]string{{"create", "a"}}, args: []string{"--path", "a", "--pids", "3", "true"}, exist: []string{"a"}},
		{name: "command not found", args: []string{"--path", "a", "--rm", "cgsem-test-no-such-command"}, code: 127, gone: []string{"a"}, stderr: "executable file not found"},
		{name: "command not executable", args: []string{"--path", "a/b", "--rm", notExec}, code: 126, gone: []string{"a", "a/b"}, stderr: "permission denied"},
		{name: "command not executable keeps the group without rm", args: []string{"--path", "a", notExec}, code: 126, exist: []string{"a"}},
		{name: "missing path", args: []string{"true"}, code: 2, stderr: "--path is required"},
		{name: "root path", args: []string{"--path", "", "true"}, code: 2},
		{name: "no command", args: []string{"--path", "a"}, code: 2, stderr: "no command given", gone: []string{"a"}},
		{name: "bad resource flag", args: []string{"--path", "a", "--pids", "many", "true"}, code: 2, gone: []string{"a"}},
		{name: "unsupported resource", args: []string{"--path", "a", "--rm", "--swap", "1G", "true"}, code: 3, gone: []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{Unsupported: []semantic.Feature{semantic.MemorySwap}})
			for _, s := range tc.setup {
				e.must(s...)
			}
			r := e.run(append([]string{"run"}, tc.args...)...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			for _, g := range tc.exist {
				assert.True(t, e.exists(g), "group %s exists", g)
			}
			for _, g := range tc.gone {
				assert.False(t, e.exists(g), "group %s does not exist", g)
			}
			if tc.stdout != "" {
				assert.Equal(t, tc.stdout, r.stdout)
			}
			if tc.stderr != "" {
				assert.Contains(t, r.stderr, tc.stderr)
			}
			if tc.code < 2 || tc.code > 5 && tc.code < 126 {
				assert.Empty(t, r.stderr, "the command's status is not cgsem's error")
			}
		})
	}
}

func TestRunAppliesToExistingGroup(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "a", "--pids", "5")
	e.must("run", "--path", "a", "--pids", "9", "true")
	assert.Equal(t, semantic.Count(9), *e.resources("a").Pids.Max)
}

// lineWriter collects output and reports each complete line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// Keep the partial line for the next write.
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.lines <- strings.TrimSuffix(line, "\n")
	}
}

// signalBox stands in for signal.Notify: the test delivers signals to the
// command without signalling the test binary.
type signalBox struct {
	mu    sync.Mutex
	chans []chan<- os.Signal
	// early, if set, is delivered as soon as a channel is registered.
	early os.Signal
	ready chan struct{}
}

func newSignalBox() *signalBox { return &signalBox{ready: make(chan struct{}, 10)} }

func (b *signalBox) notify(c chan<- os.Signal, _ ...os.Signal) {
	b.mu.Lock()
	b.chans = append(b.chans, c)
	b.mu.Unlock()
	if b.early != nil {
		c <- b.early
	}
	b.ready <- struct{}{}
}

func (b *signalBox) stop(c chan<- os.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chans = slices.DeleteFunc(b.chans, func(x chan<- os.Signal) bool { return x == c })
}

func (b *signalBox) send(s os.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.chans {
		c <- s
	}
}

func (b *signalBox) listening() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.chans)
}

// start runs a command line in the background on e's fake, with the
// given stdin, signals and stdout; the returned channel gives its code.
func (e *testEnv) start(ctx context.Context, args []string, stdin io.Reader, sigs *signalBox, stdout io.Writer) <-chan int {
	c := &cli{env: e.getenv, stdin: stdin, stdout: stdout, stderr: io.Discard, reg: e.reg,
		notify: sigs.notify, stopNotify: sigs.stop}
	done := make(chan int, 1)
	go func() { done <- c.main(ctx, append([]string{"--driver", "fake"}, args...)) }()
	return done
}

func TestRunForwardsSignals(t *testing.T) {
	cases := []struct {
		name   string
		script string
		sig    syscall.Signal
		code   int
	}{
		{"default action", "echo ready; exec sleep 3600", syscall.SIGTERM, 128 + 15},
		// The command handles the signal and picks its own status.
		// (The shell runs its trap between short sleeps; a sleep in the
		// background could be caught by the signal between fork and exec
		// and outlive the test.)
		{"handled", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done", syscall.SIGTERM, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{})
			sigs := newSignalBox()
			out := newLineWriter()
			done := e.start(context.Background(), []string{"run", "--path", "a", "--rm", "--", "sh", "-c", tc.script},
				strings.NewReader(""), sigs, out)
			require.Equal(t, "ready", <-out.lines)
			sigs.send(tc.sig)
			assert.Equal(t, tc.code, <-done)
			assert.False(t, e.exists("a"))
			assert.Zero(t, sigs.listening(), "run stopped listening for signals")
		})
	}
}

func TestRunInterruptedBeforeStart(t *testing.T) {
	e := newEnv(t, fake.Options{})
	sigs := newSignalBox()
	sigs.early = syscall.SIGTERM
	out := newLineWriter()
	code := <-e.start(context.Background(), []string{"run", "--path", "a/b", "--rm", "--", "sh", "-c", "echo ran"},
		strings.NewReader(""), sigs, out)
	assert.Equal(t, 128+15, code)
	assert.Zero(t, out.buf.Len(), "the command never ran")
	assert.False(t, e.exists("a"), "what run made is removed")
}

func TestRunStartsInsideTheGroup(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.must("create", "a")
	// The fake records the child just after it starts (a real driver
	// before its first instruction): wait for the record, not the output.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := e.group("a").Events(ctx)
	require.NoError(t, err)

	stdin, release := io.Pipe()
	out := newLineWriter()
	done := e.start(context.Background(), []string{"run", "--path", "a", "--", "sh", "-c", "echo $$; read x; exit 0"},
		stdin, newSignalBox(), out)
	pid, err := strconv.Atoi(<-out.lines)
	require.NoError(t, err)
	nextEvent(t, events, semantic.EventPopulated)
	pids, err := e.group("a").Processes(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []int{pid}, pids)
	require.NoError(t, release.Close())
	assert.Equal(t, 0, <-done)
	nextEvent(t, events, semantic.EventEmpty)
}

func TestEvents(t *testing.T) {
	cases := []struct {
		name string
		// stop ends the command the way a user would.
		stop func(sigs *signalBox, cancel context.CancelFunc)
	}{
		{"SIGINT", func(sigs *signalBox, _ context.CancelFunc) { sigs.send(syscall.SIGINT) }},
		{"SIGTERM", func(sigs *signalBox, _ context.CancelFunc) { sigs.send(syscall.SIGTERM) }},
		{"context ends", func(_ *signalBox, cancel context.CancelFunc) { cancel() }},
	}
	for _, tc := range cases {
		for _, asJSON := range []bool{false, true} {
			t.Run(tc.name+"/json="+strconv.FormatBool(asJSON), func(t *testing.T) {
				e := newEnv(t, fake.Options{})
				e.must("create", "web")
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				sigs := newSignalBox()
				out := newLineWriter()
				args := []string{"events", "web"}
				if asJSON {
					args = append(args, "--json")
				}
				done := e.start(ctx, args, strings.NewReader(""), sigs, out)
				<-sigs.ready

				// The subscription starts after the command opens the group,
				// which the test cannot see: poke until the first line shows.
				line := pokeUntilLine(t, e, out)
				if asJSON {
					var ev map[string]any
					require.NoError(t, json.Unmarshal([]byte(line), &ev), "line: %s", line)
					assert.Equal(t, []string{"count", "group", "kind", "time"}, keys(t, ev))
					assert.Equal(t, "web", ev["group"])
					assert.Contains(t, []any{"oom", "oom_kill"}, ev["kind"])
					_, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
					assert.NoError(t, err)
				} else {
					assert.Regexp(t, `^\S+ web oom(_kill)? count=\d+$`, line)
				}
				tc.stop(sigs, cancel)
				assert.Equal(t, 0, <-done, "interrupting events is how it ends")
			})
		}
	}
}

// pokeUntilLine injects OOM events into web until the command prints a
// line, and returns that line.
func pokeUntilLine(t *testing.T, e *testEnv, out *lineWriter) string {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		require.NoError(t, e.drv.InjectOOM(semantic.MustPath("web")))
		select {
		case line := <-out.lines:
			return line
		case <-tick.C:
		}
	}
}

func TestInterruptible(t *testing.T) {
	// A command other than events or run ends with 128+N when a signal
	// cancels what it waits for.
	sigs := newSignalBox()
	c := &cli{notify: sigs.notify, stopNotify: sigs.stop}
	ctx, stop := c.interruptible(context.Background())
	sigs.send(syscall.SIGINT)
	<-ctx.Done()
	err := withCause(ctx, &semantic.Error{Op: "freeze", Err: ctx.Err()})
	assert.Equal(t, 128+2, exitCode(err))
	assert.EqualError(t, err, "interrupted by interrupt")
	stop()
	assert.Zero(t, sigs.listening())
}
