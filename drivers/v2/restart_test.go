package v2_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	v2 "github.com/cgsem/cgsem/drivers/v2"
	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// restartFixture is a scratch group beneath the test's own cgroup2 group
// and what opens drivers on it: drivers other than the test's, or in
// other processes, stand for earlier runs of the cgsem command.
type restartFixture struct {
	dir, root, mount string
}

func newRestartFixture(t *testing.T) *restartFixture {
	t.Helper()
	h := newHarness(t, nil)
	s := testenv.NewScratch(t, "")
	return &restartFixture{dir: s.Dirs[""], root: filepath.Join(h.cgroup, s.Name), mount: h.mount}
}

// open opens a driver on the scratch group, closed when the test ends.
func (f *restartFixture) open(t *testing.T) *v2.Driver {
	t.Helper()
	d, err := v2.New(semantic.Options{Root: f.root, Settings: map[string]string{"mount": f.mount}})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// createInClosedDriver creates group with list through a driver that is
// closed at once: this process then holds no descriptor of its program.
func (f *restartFixture) createInClosedDriver(t *testing.T, group string, list *semantic.Devices) {
	t.Helper()
	d, err := v2.New(semantic.Options{Root: f.root, Settings: map[string]string{"mount": f.mount}})
	require.NoError(t, err)
	_, err = d.Create(t.Context(), semantic.MustPath(group), &semantic.Resources{Devices: list})
	require.NoError(t, err)
	require.NoError(t, d.Close())
}

// createInProcess creates group with list ("deny"/"allow" and rules as
// devs takes them) from a helper process that then exits, as a cgsem
// command does.
func (f *restartFixture) createInProcess(t *testing.T, group string, list ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{f.root, f.mount, group}, list...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=create")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "create helper")
	require.Contains(t, string(out), "created")
}

// opens runs a helper in g that opens each "r|w|rw:PATH", and returns the
// errno of each (0: opened) once the helper has exited.
func opens(t *testing.T, g semantic.Group, specs ...string) []unix.Errno {
	t.Helper()
	h := newHelper(t, "open", specs...)
	require.NoError(t, g.Start(t.Context(), h.cmd))
	fields := strings.Fields(strings.TrimPrefix(h.started().expect("opened"), "opened"))
	// Gone before it returns, so the group can be deleted.
	<-h.done
	require.Len(t, fields, len(specs))
	out := make([]unix.Errno, len(fields))
	for i, s := range fields {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		out[i] = unix.Errno(n)
	}
	return out
}

// waitFreed waits until the kernel has freed the programs: it frees a
// detached program from a workqueue once no descriptor holds it.
func waitFreed(t *testing.T, ids ...uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			l, err := devfilter.OpenProgram(id)
			if errors.Is(err, unix.ENOENT) {
				break
			}
			require.NoError(t, err)
			l.Close()
			if time.Now().After(deadline) {
				t.Errorf("leak: device program %d is still loaded", id)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDevicesRestart: a group whose device list an earlier driver set
// (one since closed, or one in a process that has exited) is taken over by
// a new driver: it reads the list back, replaces it with no window, and
// deletes the group, leaving no program and no group behind.
func TestDevicesRestart(t *testing.T) {
	for _, tt := range []struct {
		name   string
		create func(t *testing.T, f *restartFixture)
	}{
		{"ClosedDriver", func(t *testing.T, f *restartFixture) {
			f.createInClosedDriver(t, "web", devs(semantic.DenyByDefault, "c 1:3 rwm"))
		}},
		{"ExitedProcess", func(t *testing.T, f *restartFixture) {
			f.createInProcess(t, "web", "deny", "c 1:3 rwm")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newRestartFixture(t)
			ctx := t.Context()
			web := filepath.Join(f.dir, "web")
			tt.create(t, f)
			first := programs(t, web)
			require.Len(t, first, 1, "the earlier driver's program")

			d := f.open(t)
			g, err := d.Open(ctx, semantic.MustPath("web"))
			require.NoError(t, err)
			r, err := g.Resources(ctx)
			require.NoError(t, err)
			sameDevices(t, devs(semantic.DenyByDefault, "c 1:3 rwm"), r.Devices)
			require.Equal(t, []unix.Errno{0, unix.EPERM}, opens(t, g, "rw:/dev/null", "r:/dev/zero"),
				"the earlier list (deny all but /dev/null) is in force")

			zeroRead := devs(semantic.DenyByDefault, "c 1:5 r")
			require.NoError(t, g.Apply(ctx, &semantic.Resources{Devices: zeroRead}))
			now := programs(t, web)
			require.Len(t, now, 1, "the earlier program was replaced, not joined")
			require.NotEqual(t, first, now)
			waitFreed(t, first...)
			r, err = g.Resources(ctx)
			require.NoError(t, err)
			sameDevices(t, zeroRead, r.Devices)
			require.Equal(t, []unix.Errno{0, unix.EPERM, unix.EPERM}, opens(t, g, "r:/dev/zero", "w:/dev/zero", "r:/dev/null"),
				"the new list (/dev/zero read only) is in force")

			// A later driver reads the new list back from the record the
			// taking-over driver wrote.
			later, err := f.open(t).Open(ctx, semantic.MustPath("web"))
			require.NoError(t, err)
			r, err = later.Resources(ctx)
			require.NoError(t, err)
			sameDevices(t, zeroRead, r.Devices)

			require.Equal(t, now, programs(t, web), "before removal the group holds exactly the new program")
			require.NoError(t, g.Delete(ctx, nil))
			require.NoDirExists(t, web)
			require.NoError(t, d.Close())
			waitFreed(t, now...)
		})
	}
}

// TestDevicesTakeOverRefused: a new driver adopts only the program the
// record names, attached to the group and running the recorded list; where
// it cannot, the change is refused with ErrBusy and the group keeps its
// programs. A recorded program gone from a group with no program at all
// narrows nothing, and the change goes ahead.
func TestDevicesTakeOverRefused(t *testing.T) {
	nullOnly := devs(semantic.DenyByDefault, "c 1:3 rwm")
	for _, tt := range []struct {
		name string
		// tamper changes the group at dir, whose recorded program is id,
		// and returns the programs then attached.
		tamper func(t *testing.T, dir string, id uint32) []uint32
		// busy is what the refusal says; "" means the change succeeds.
		busy string
		// readBack is the list read back after tampering: nil for
		// "unknown".
		readBack *semantic.Devices
	}{
		{
			name: "RecordedProgramReplacedByAnUnrecordedOne",
			tamper: func(t *testing.T, dir string, id uint32) []uint32 {
				detachByID(t, dir, id)
				p, err := devfilter.Compile(devs(semantic.AllowByDefault, "!c 1:7 rwm"))
				require.NoError(t, err)
				l, err := devfilter.Load(t.Context(), p)
				require.NoError(t, err)
				t.Cleanup(func() { l.Close() })
				require.NoError(t, devfilter.Attach(cgroupFD(t, dir), l))
				return []uint32{l.ID()}
			},
			busy: "is no longer attached",
		},
		{
			name: "RecordNamesAnotherList",
			tamper: func(t *testing.T, dir string, id uint32) []uint32 {
				b := fmt.Appendf(nil, "program %d\ndefault allow\n", id)
				require.NoError(t, unix.Setxattr(dir, "trusted.cgsem.devices", b, 0))
				return []uint32{id}
			},
			busy: "does not run the instructions",
		},
		{
			name: "RecordedProgramGoneNothingAttached",
			tamper: func(t *testing.T, dir string, id uint32) []uint32 {
				detachByID(t, dir, id)
				return nil
			},
			readBack: devs(semantic.AllowByDefault),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newRestartFixture(t)
			ctx := t.Context()
			web := filepath.Join(f.dir, "web")
			f.createInClosedDriver(t, "web", nullOnly)
			ids := programs(t, web)
			require.Len(t, ids, 1)
			want := tt.tamper(t, web, ids[0])
			require.ElementsMatch(t, want, programs(t, web))

			d := f.open(t)
			g, err := d.Open(ctx, semantic.MustPath("web"))
			require.NoError(t, err)
			r, err := g.Resources(ctx)
			require.NoError(t, err)
			if tt.readBack == nil {
				require.Nil(t, r.Devices, "a list the group may not enforce is not read back")
			} else {
				sameDevices(t, tt.readBack, r.Devices)
			}

			zero := devs(semantic.DenyByDefault, "c 1:5 rwm")
			err = g.Apply(ctx, &semantic.Resources{Devices: zero})
			if tt.busy == "" {
				require.NoError(t, err)
				require.Len(t, programs(t, web), 1)
				r, err = g.Resources(ctx)
				require.NoError(t, err)
				sameDevices(t, zero, r.Devices)
			} else {
				require.ErrorIs(t, err, semantic.ErrBusy)
				require.ErrorContains(t, err, tt.busy)
				require.ElementsMatch(t, want, programs(t, web), "the refused change touched the programs")
			}
			require.NoError(t, g.Delete(ctx, nil))
			require.NoDirExists(t, web)
			require.NoError(t, d.Close())
			waitFreed(t, ids...)
		})
	}
}

// detachByID detaches the program id from the group at dir, as someone
// who is not cgsem would, through a descriptor opened by id.
func detachByID(t *testing.T, dir string, id uint32) {
	t.Helper()
	l, err := devfilter.OpenProgram(id)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, devfilter.Detach(cgroupFD(t, dir), l))
}

// TestDevicesDetachedBehindTheDriver: the driver's own program detached
// by someone who is not cgsem reads back as gone, and the next change
// attaches the new list rather than failing to detach the old one.
func TestDevicesDetachedBehindTheDriver(t *testing.T) {
	d, dir := hostDriver(t, nil)
	ctx := t.Context()
	web := filepath.Join(dir, "web")
	g := create(t, d, "web", &semantic.Resources{Devices: devs(semantic.DenyByDefault, "c 1:3 rwm")})
	ids := programs(t, web)
	require.Len(t, ids, 1)
	detachByID(t, web, ids[0])

	_, err := g.Resources(ctx)
	require.ErrorIs(t, err, semantic.ErrNotExist)
	require.ErrorContains(t, err, "no longer attached")

	zero := devs(semantic.DenyByDefault, "c 1:5 rwm")
	require.NoError(t, g.Apply(ctx, &semantic.Resources{Devices: zero}))
	require.Len(t, programs(t, web), 1)
	r, err := g.Resources(ctx)
	require.NoError(t, err)
	sameDevices(t, zero, r.Devices)
}
