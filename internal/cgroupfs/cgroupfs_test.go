package cgroupfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/testenv"
)

// tree makes root/{a/b, outside, a/link -> ../outside, a/abs -> /} in a
// temporary directory, with a file a/b/value.
func tree(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a", "b", "value"), []byte("1\n"), 0o644))
	require.NoError(t, os.Symlink("../../outside", filepath.Join(root, "a", "link")))
	require.NoError(t, os.Symlink("/", filepath.Join(root, "a", "abs")))
	require.NoError(t, os.Symlink("b", filepath.Join(root, "a", "inner")))
	return root
}

// resolvers runs a test with openat2 and with the openat walk used when
// the kernel has no openat2.
var resolvers = []struct {
	name  string
	walk  bool
	setup func(d *Dir)
}{
	{"openat2", false, func(*Dir) {}},
	{"walk", true, func(d *Dir) { d.sh.noOpen2.Store(true) }},
}

func TestOpenDirStaysBeneath(t *testing.T) {
	tests := []struct {
		name string
		rel  string
		want error // nil: opens
	}{
		{"nested", "a/b", nil},
		{"dot segments cleaned", "a/./b/", nil},
		{"parent escape", "..", unix.EINVAL},
		{"parent escape after clean", "a/../..", unix.EINVAL},
		{"absolute", "/etc", unix.EINVAL},
		{"empty", "", unix.EINVAL},
		{"symlink out of the root", "a/link", unix.ELOOP},
		{"symlink to /", "a/abs", unix.ELOOP},
		{"symlink inside the root", "a/inner", unix.ELOOP},
		{"missing", "a/nope", unix.ENOENT},
		{"a file", "a/b/value", unix.ENOTDIR},
	}
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			root, err := OpenRoot(tree(t), Config{})
			require.NoError(t, err)
			defer root.Close()
			r.setup(root)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					d, err := root.OpenDir(tt.rel)
					if tt.want == nil {
						require.NoError(t, err)
						defer d.Close()
						assert.Equal(t, "a/b", d.Name())
						v, err := d.ReadString("value")
						require.NoError(t, err)
						assert.Equal(t, "1", v)
						return
					}
					require.Error(t, err)
					// With openat2 a symlink fails with ELOOP; the walk's
					// O_NOFOLLOW|O_DIRECTORY open of a symlink fails with
					// ENOTDIR. Both refuse it.
					if tt.want == unix.ELOOP && r.walk {
						assert.ErrorIs(t, err, unix.ENOTDIR)
					} else {
						assert.ErrorIs(t, err, tt.want)
					}
					var e *Error
					require.ErrorAs(t, err, &e)
					assert.Equal(t, "open", e.Op)
				})
			}
		})
	}
}

func TestOpenRootNeedsAbsolutePath(t *testing.T) {
	_, err := OpenRoot("relative/dir", Config{})
	assert.ErrorIs(t, err, unix.EINVAL)
}

func TestNamesArePlainRelativePaths(t *testing.T) {
	root, err := OpenRoot(tree(t), Config{})
	require.NoError(t, err)
	defer root.Close()
	for _, name := range []string{"", ".", "..", "a/../b", "/abs", "a//b", "a/", "a/./b", "x\x00y"} {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			assert.ErrorIs(t, root.Write(name, "1"), unix.EINVAL)
			_, err := root.Read(name)
			assert.ErrorIs(t, err, unix.EINVAL)
			assert.ErrorIs(t, root.Mkdir(name, 0o755), unix.EINVAL)
			assert.ErrorIs(t, root.Rmdir(context.Background(), name), unix.EINVAL)
			assert.ErrorIs(t, root.TryRmdir(name), unix.EINVAL)
			_, err = root.OpenFile(name, unix.O_RDONLY)
			assert.ErrorIs(t, err, unix.EINVAL)
			_, err = root.Exists(name)
			assert.ErrorIs(t, err, unix.EINVAL)
		})
	}
}

func TestPathsBeneathRoot(t *testing.T) {
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			base := tree(t)
			root, err := OpenRoot(base, Config{})
			require.NoError(t, err)
			defer root.Close()
			r.setup(root)

			require.NoError(t, root.Write("a/b/value", "9"))
			v, err := root.ReadString("a/b/value")
			require.NoError(t, err)
			assert.Equal(t, "9", v)

			require.NoError(t, root.Mkdir("a/b/new", 0o755))
			ok, err := root.Exists("a/b/new")
			require.NoError(t, err)
			assert.True(t, ok)
			require.NoError(t, root.TryRmdir("a/b/new"))
			ok, err = root.Exists("a/b/new")
			require.NoError(t, err)
			assert.False(t, ok)

			// A symlinked directory on the way is refused, whatever it
			// points at: the outside directory stays untouched.
			for _, name := range []string{"a/link/x", "a/abs/tmp/x", "a/inner/value"} {
				assert.Error(t, root.Write(name, "1"), name)
				assert.Error(t, root.Mkdir(name, 0o755), name)
				_, err := root.Read(name)
				assert.Error(t, err, name)
			}
			ents, err := os.ReadDir(filepath.Join(base, "..", "outside"))
			require.NoError(t, err)
			assert.Empty(t, ents)
		})
	}
}

func TestFileSymlinkNotFollowed(t *testing.T) {
	base := tree(t)
	require.NoError(t, os.WriteFile(filepath.Join(base, "..", "outside", "target"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink("../../outside/target", filepath.Join(base, "a", "b", "evil")))
	root, err := OpenRoot(base, Config{})
	require.NoError(t, err)
	defer root.Close()
	d, err := root.OpenDir("a/b")
	require.NoError(t, err)
	defer d.Close()
	_, err = d.Read("evil")
	assert.ErrorIs(t, err, unix.ELOOP)
	assert.ErrorIs(t, d.Write("evil", "x"), unix.ELOOP)
	b, err := os.ReadFile(filepath.Join(base, "..", "outside", "target"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(b))
}

func TestWriteReadAndErrors(t *testing.T) {
	base := tree(t)
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
	root, err := OpenRoot(base, Config{Logger: log})
	require.NoError(t, err)
	defer root.Close()
	d, err := root.OpenDir("a/b")
	require.NoError(t, err)
	defer d.Close()

	require.NoError(t, d.Write("value", "42"))
	got, err := d.Read("value")
	require.NoError(t, err)
	assert.Equal(t, "42", string(got), "the write replaced the start of the file")
	assert.Contains(t, logs.String(), filepath.Join(base, "a/b/value"))
	assert.Contains(t, logs.String(), "value=42")

	err = d.Write("missing", "1")
	assert.ErrorIs(t, err, unix.ENOENT)
	assert.ErrorContains(t, err, filepath.Join(base, "a/b/missing"), "the error names the file")
	assert.ErrorContains(t, err, `"1"`, "the error names the value")
	_, err = d.Read("missing")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestReadIntoGrows(t *testing.T) {
	base := tree(t)
	big := strings.Repeat("0123456789abcdef", 1000) // 16000 bytes: several reads
	require.NoError(t, os.WriteFile(filepath.Join(base, "big"), []byte(big), 0o644))
	root, err := OpenRoot(base, Config{})
	require.NoError(t, err)
	defer root.Close()
	got, err := root.ReadInto("big", make([]byte, 0, 600))
	require.NoError(t, err)
	assert.Equal(t, big, string(got))

	f, err := root.OpenFile("big", unix.O_RDONLY)
	require.NoError(t, err)
	defer f.Close()
	for range 2 { // the second read starts at 0 again
		got, err = f.ReadInto(got)
		require.NoError(t, err)
		assert.Equal(t, big, string(got))
	}
}

func TestHeldFileSeesNewContent(t *testing.T) {
	base := tree(t)
	root, err := OpenRoot(base, Config{})
	require.NoError(t, err)
	defer root.Close()
	require.NoError(t, os.WriteFile(filepath.Join(base, "v"), []byte("first"), 0o644))
	f, err := root.OpenFile("v", unix.O_RDONLY)
	require.NoError(t, err)
	defer f.Close()
	b, err := f.ReadInto(nil)
	require.NoError(t, err)
	assert.Equal(t, "first", string(b))
	require.NoError(t, os.WriteFile(filepath.Join(base, "v"), []byte("second"), 0o644))
	b, err = f.ReadInto(b)
	require.NoError(t, err)
	assert.Equal(t, "second", string(b))
}

func TestFaultsHook(t *testing.T) {
	base := tree(t)
	boom := errors.New("injected")
	var mu sync.Mutex
	var seen []string
	cfg := Config{Faults: func(op Op, name, value string) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(op)+" "+name+" "+value)
		if value == "fail" || name == "a/failing" {
			return boom
		}
		return nil
	}}
	root, err := OpenRoot(base, cfg)
	require.NoError(t, err)
	defer root.Close()
	d, err := root.OpenDir("a/b")
	require.NoError(t, err)
	defer d.Close()

	require.NoError(t, d.Write("value", "7"))
	err = d.Write("value", "fail")
	assert.ErrorIs(t, err, boom)
	assert.True(t, IsInjected(err))
	assert.False(t, IsInjected(d.Write("missing", "1")), "a kernel error is not injected")
	assert.ErrorContains(t, err, "a/b/value")
	v, _ := d.ReadString("value")
	assert.Equal(t, "7", v, "a refused write changes nothing")

	a, err := root.OpenDir("a")
	require.NoError(t, err)
	defer a.Close()
	assert.ErrorIs(t, a.Mkdir("failing", 0o755), boom)
	_, err = os.Stat(filepath.Join(base, "a", "failing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, a.Mkdir("ok", 0o755))
	require.NoError(t, a.Rmdir(context.Background(), "ok"))

	f, err := d.OpenFile("value", unix.O_WRONLY)
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, f.Write("fail"), boom)

	u := d.Unhooked()
	require.NoError(t, u.Write("value", "fail"), "the unhooked view skips the hook")
	require.NoError(t, u.Close())
	v, _ = d.ReadString("value")
	assert.Equal(t, "fail", v, "and its Close left the descriptor open")

	assert.Equal(t, []string{
		"write a/b/value 7", "write a/b/value fail", "write a/b/missing 1", "mkdir a/failing ", "mkdir a/ok ", "rmdir a/ok ", "write a/b/value fail",
	}, seen)
}

func TestSubdirsAndExists(t *testing.T) {
	base := tree(t)
	require.NoError(t, os.Mkdir(filepath.Join(base, "a", "c"), 0o755))
	root, err := OpenRoot(base, Config{})
	require.NoError(t, err)
	defer root.Close()
	a, err := root.OpenDir("a")
	require.NoError(t, err)
	defer a.Close()
	names, err := a.Subdirs()
	require.NoError(t, err)
	assert.Equal(t, []string{"b", "c"}, names, "symlinks and files are not groups")

	for name, want := range map[string]bool{"b": true, "link": true, "nope": false} {
		ok, err := a.Exists(name)
		require.NoError(t, err)
		assert.Equal(t, want, ok, name)
	}
}

func TestAppendDirsManyEntries(t *testing.T) {
	base := t.TempDir()
	var want []string
	for i := range 600 { // more than one getdents buffer
		n := "group-" + strconv.Itoa(1000+i) + strings.Repeat("x", 20)
		want = append(want, n)
		require.NoError(t, os.Mkdir(filepath.Join(base, n), 0o755))
	}
	root, err := OpenRoot(base, Config{})
	require.NoError(t, err)
	defer root.Close()
	got, err := root.Subdirs()
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestRetryEINTR(t *testing.T) {
	calls := 0
	n, err := retryEINTR(func() (int, error) {
		calls++
		if calls < 3 {
			return -1, unix.EINTR
		}
		return 5, nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, 3, calls)
}

func TestCloseTwice(t *testing.T) {
	root, err := OpenRoot(t.TempDir(), Config{})
	require.NoError(t, err)
	require.NoError(t, root.Close())
	assert.ErrorIs(t, root.Close(), unix.EBADF)
}

// The tests below use the kernel's cgroup files.

func TestKernelRmdirRetriesBusy(t *testing.T) {
	testenv.RequireV1(t, "pids")
	s := testenv.NewScratch(t, "pids")
	root, err := OpenRoot(s.Dirs["pids"], Config{BusyTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer root.Close()

	tests := []struct {
		name string
		// act runs against the group "g" holding one sleeping process;
		// it returns the Rmdir error.
		act  func(t *testing.T, cmd *exec.Cmd) error
		want func(t *testing.T, err error)
	}{
		{"busy until the timeout", func(t *testing.T, _ *exec.Cmd) error {
			return root.Rmdir(context.Background(), "g")
		}, func(t *testing.T, err error) {
			assert.ErrorIs(t, err, unix.EBUSY)
		}},
		{"ctx ends the wait", func(t *testing.T, _ *exec.Cmd) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return root.Rmdir(ctx, "g")
		}, func(t *testing.T, err error) {
			assert.ErrorIs(t, err, context.Canceled)
			assert.ErrorIs(t, err, unix.EBUSY)
		}},
		{"succeeds once the process is gone", func(t *testing.T, cmd *exec.Cmd) error {
			long, err := OpenRoot(s.Dirs["pids"], Config{BusyTimeout: time.Minute})
			require.NoError(t, err)
			defer long.Close()
			go func() {
				time.Sleep(20 * time.Millisecond)
				_ = cmd.Process.Kill()
			}()
			return long.Rmdir(context.Background(), "g")
		}, func(t *testing.T, err error) {
			assert.NoError(t, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, root.Mkdir("g", 0o755))
			g, err := root.OpenDir("g")
			require.NoError(t, err)
			defer g.Close()
			cmd := exec.Command("sleep", "60")
			require.NoError(t, cmd.Start())
			waited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(waited) }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited; _ = root.Rmdir(context.Background(), "g") })
			require.NoError(t, g.Write("cgroup.procs", strconv.Itoa(cmd.Process.Pid)))

			tt.want(t, tt.act(t, cmd))
		})
	}
}

func TestKernelWriteAndHeldRead(t *testing.T) {
	testenv.RequireV1(t, "pids")
	s := testenv.NewScratch(t, "pids")
	root, err := OpenRoot(s.Dirs["pids"], Config{})
	require.NoError(t, err)
	defer root.Close()

	require.NoError(t, root.Write("pids.max", "7"))
	v, err := root.ReadString("pids.max")
	require.NoError(t, err)
	assert.Equal(t, "7", v)
	err = root.Write("pids.max", "-3")
	assert.ErrorIs(t, err, unix.EINVAL, "the kernel's refusal comes back as its errno")

	cur, err := root.OpenFile("pids.current", unix.O_RDONLY)
	require.NoError(t, err)
	defer cur.Close()
	b, err := cur.ReadInto(nil)
	require.NoError(t, err)
	assert.Equal(t, "0\n", string(b))

	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	procs, err := root.OpenFile("cgroup.procs", unix.O_WRONLY)
	require.NoError(t, err)
	defer procs.Close()
	require.NoError(t, procs.Write(strconv.Itoa(cmd.Process.Pid)))
	b, err = cur.ReadInto(b)
	require.NoError(t, err)
	assert.Equal(t, "1\n", string(b), "the held descriptor re-reads the current value")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}
