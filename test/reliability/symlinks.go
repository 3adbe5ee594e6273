package reliability

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// Tampering modes of Symlinks.
const (
	// tamperSymlink hides a with a tmpfs holding a symlink b that leads
	// outside (a cgroup filesystem cannot hold a symlink itself).
	tamperSymlink = "symlink"
	// tamperBind bind-mounts an outside directory over a/b.
	tamperBind = "bind"
)

// outsideFiles are planted outside the root, each in the directory a
// tampered path leads to and in its subdirectory c: every name a driver
// might write or remove there.
func outsideFiles() []string {
	return []string{
		"cgroup.procs", "tasks", "cgroup.threads", "cgroup.event_control", "cgroup.subtree_control",
		"cgroup.freeze", "cgroup.kill", "freezer.state", "devices.allow", "devices.deny",
		"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.max",
		"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.max", "cpu.weight",
		"cpuset.cpus", "cpuset.mems", "pids.max", "io.max", "blkio.bfq.weight",
		"blkio.throttle.read_bps_device", "memory.oom_control",
	}
}

// Symlinks replaces, between operations, a directory inside the driver's
// root with a path that leads outside it, and checks that every operation
// through it is refused and that nothing outside changes. A child process
// in a private mount namespace (so the host's mounts are untouched) holds
// handles on a/b and a/b/c, then tampers in every directory Dirs gives:
//
//   - symlink: a tmpfs over a holding a symlink b to an outside directory;
//   - bind: the outside directory bind-mounted over a/b.
//
// The outside directories hold files named like attribute files, and a
// subdirectory c with the same files; afterwards their names, modes,
// contents and times must be exactly as before. In the parent's mount
// namespace the real groups must be intact.
func Symlinks(t *testing.T, tg Target) {
	if asChild(t, tg) {
		return
	}
	tg.require(t)
	if tg.NewRoot == nil || tg.Open == nil || tg.Dirs == nil {
		t.Skip("the target has no NewRoot, Open and Dirs: there is no directory to tamper with")
	}
	for _, mode := range []string{tamperSymlink, tamperBind} {
		t.Run(mode, func(t *testing.T) {
			ctx := testContext(t)
			opts := tg.NewRoot(t)
			d, err := tg.Open(opts)
			require.NoError(t, err)
			t.Cleanup(func() { d.Close() })
			t.Cleanup(func() { tidy(t, d) })
			_, setting, _ := tg.fullPair(d.Capabilities())
			_, err = d.Create(ctx, semantic.MustPath("a/b/c"), setting)
			require.NoError(t, err)
			before, err := d.Open(ctx, semantic.MustPath("a/b/c"))
			require.NoError(t, err)
			was, err := before.Resources(ctx)
			require.NoError(t, err)

			n := len(tg.Dirs(d, semantic.Root))
			outside := t.TempDir()
			var targets []string
			for i := range n {
				dir := filepath.Join(outside, "h"+strconv.Itoa(i))
				targets = append(targets, dir)
				for _, sub := range []string{"", "c"} {
					require.NoError(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
					for _, f := range outsideFiles() {
						require.NoError(t, os.WriteFile(filepath.Join(dir, sub, f), []byte("sentinel "+f+"\n"), 0o644))
					}
				}
			}
			snap := snapshotTree(t, outside)

			outs := runChild(t, childSpec{
				Scenario: "symlinks", Root: opts.Root, Settings: opts.Settings,
				Args: map[string]string{"mode": mode, "outside": strings.Join(targets, "\n")},
			}, childOpts{attr: &syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWNS}})

			calls := byCall(outs)
			require.Equal(t, "ok", calls["tamper"].Kind, "the child could not tamper: %s", calls["tamper"].Err)
			for _, o := range outs {
				if strings.HasPrefix(o.Call, "change ") && o.Kind == "ok" {
					t.Errorf("%s: %s went through a path that leads outside the root", mode, o.Call)
				}
			}
			if after := snapshotTree(t, outside); after != snap {
				t.Fatalf("%s: the outside directory changed:\n%s", mode, lineDiff(snap, after))
			}
			// Here, outside the child's namespace, the groups are as they were.
			got, err := before.Resources(ctx)
			require.NoError(t, err)
			if dd := diffResources(was, got, setting.Fields()); dd != "" {
				t.Fatalf("a/b/c changed: %s", dd)
			}
		})
	}
}

// lineDiff lists the lines only one side has.
func lineDiff(before, after string) string {
	was, is := map[string]bool{}, map[string]bool{}
	for l := range strings.Lines(before) {
		was[l] = true
	}
	for l := range strings.Lines(after) {
		is[l] = true
	}
	var b strings.Builder
	for l := range strings.Lines(before) {
		if !is[l] {
			b.WriteString("- " + l)
		}
	}
	for l := range strings.Lines(after) {
		if !was[l] {
			b.WriteString("+ " + l)
		}
	}
	return b.String()
}

// snapshotTree renders every entry below dir with its mode, size, times
// and content.
func snapshotTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %o %d mtime=%d.%d ctime=%d.%d", rel, st.Mode, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		if e.Type().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteString("\n")
		return nil
	})
	require.NoError(t, err)
	return b.String()
}

// symlinksChild runs in a private mount namespace: it takes handles, then
// tampers, then tries everything through the handles.
func symlinksChild(ctx context.Context, tg *Target, spec childSpec) ([]outcome, error) {
	d, err := tg.Open(spec.options())
	if err != nil {
		return nil, err
	}
	ab, err := d.Open(ctx, semantic.MustPath("a/b"))
	if err != nil {
		return nil, err
	}
	abc, err := d.Open(ctx, semantic.MustPath("a/b/c"))
	if err != nil {
		return nil, err
	}
	a, err := d.Open(ctx, semantic.MustPath("a"))
	if err != nil {
		return nil, err
	}
	targets := strings.Split(spec.Args["outside"], "\n")
	var outs []outcome
	outs = append(outs, outcomeOf("tamper", tamper(tg, d, spec.Args["mode"], targets)))
	if outs[0].Kind != "ok" {
		return outs, nil
	}
	_, full, _ := tg.fullPair(d.Capabilities())
	add := func(call string, err error) { outs = append(outs, outcomeOf(call, err)) }
	// Changes: each must be refused.
	add("change apply a/b", ab.Apply(ctx, full))
	add("change apply a/b/c", abc.Apply(ctx, full))
	_, err = d.Create(ctx, semantic.MustPath("a/b/new"), nil)
	add("change create a/b/new", err)
	_, err = d.Create(ctx, semantic.MustPath("a/b/c/new"), full)
	add("change create a/b/c/new", err)
	_, err = d.Create(ctx, semantic.MustPath("a/b"), nil)
	add("change create a/b", err)
	add("change add process to a/b", ab.AddProcess(ctx, os.Getpid()))
	add("change add thread to a/b/c", abc.AddThread(ctx, unix.Gettid()))
	cmd := exec.Command("true")
	err = ab.Start(ctx, cmd)
	if err == nil {
		cmd.Wait()
	}
	add("change start in a/b", err)
	add("change freeze a/b", ab.Freeze(ctx))
	add("change thaw a/b/c", abc.Thaw(ctx))
	add("change kill a/b", ab.Kill(ctx))
	add("change delete a/b/c", abc.Delete(ctx, nil))
	add("change delete a/b recursive", ab.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true}))
	add("change delete a recursive", a.Delete(ctx, &semantic.DeleteOptions{Kill: true, Recursive: true}))
	// Reads: refused or not, they must not reach outside either; the
	// snapshot's times show a write, and their results are reported.
	_, err = ab.Resources(ctx)
	add("read resources a/b", err)
	_, err = ab.Processes(ctx)
	add("read processes a/b", err)
	_, err = ab.Stats(ctx)
	add("read stats a/b", err)
	_, err = d.Children(ctx, semantic.MustPath("a/b"))
	add("read children a/b", err)
	evCtx, stop := context.WithCancel(ctx)
	_, err = ab.Events(evCtx)
	stop()
	add("read events a/b", err)
	_, err = d.Open(ctx, semantic.MustPath("a/b/c"))
	add("read open a/b/c", err)
	return outs, nil
}

// tamper makes a/b lead to the outside directories, one per hierarchy,
// in this process's mount namespace.
func tamper(tg *Target, d semantic.Driver, mode string, targets []string) error {
	switch mode {
	case tamperSymlink:
		for i, dir := range tg.Dirs(d, semantic.MustPath("a")) {
			if err := unix.Mount("cgsem-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
				return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
			}
			if err := os.Symlink(targets[i], filepath.Join(dir, "b")); err != nil {
				return err
			}
		}
	case tamperBind:
		for i, dir := range tg.Dirs(d, semantic.MustPath("a/b")) {
			if err := unix.Mount(targets[i], dir, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind %s on %s: %w", targets[i], dir, err)
			}
		}
	default:
		return fmt.Errorf("no tampering mode %q", mode)
	}
	return nil
}
