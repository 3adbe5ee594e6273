package devfilter

import (
	"context"
	"testing"
	"unsafe"

	"github.com/cgsem/cgsem/semantic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// attachOrphan loads d's program, attaches it to the cgroup open as fd
// and closes the descriptor: the state a process leaves behind when it
// attached a program and exited. It returns the program's id.
func attachOrphan(t *testing.T, fd int, d *semantic.Devices) uint32 {
	t.Helper()
	p, err := Compile(d)
	require.NoError(t, err)
	l, err := Load(context.Background(), p)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, Attach(fd, l))
	return l.ID()
}

func attached(t *testing.T, fd int) []uint32 {
	t.Helper()
	ids, err := Query(fd)
	require.NoError(t, err)
	return ids
}

// TestHostAdoptReplacesAndRemoves follows a program another process left
// attached: a Filter adopts it by id, reads its list back, replaces it
// with no window (both attached in between, the orphan freed after), and
// a second adoption is removed outright.
func TestHostAdoptReplacesAndRemoves(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	ctx := context.Background()
	first := devices(t, semantic.DenyByDefault, "allow /dev/null")
	orphan := attachOrphan(t, fd, first)
	assert.True(t, progLoaded(t, orphan), "an attached program outlives its loader's descriptor")

	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	defer f.Close()
	require.NoError(t, f.Adopt(orphan, first))
	assert.Equal(t, orphan, f.ProgramID())
	assert.Equal(t, first, f.Devices())
	require.NoError(t, f.Verify())
	assert.Equal(t, 0, cache.Len(), "an adopted program is not the cache's")
	require.NoError(t, f.Adopt(orphan, first), "adopting the Filter's own program again")
	assert.Equal(t, []uint32{orphan}, attached(t, fd), "adoption attaches and detaches nothing")
	runChild(t, fd, "adopted deny all but /dev/null",
		probe{"open /dev/null rw", 0}, probe{"open /dev/zero r", unix.EPERM})

	second := devices(t, semantic.DenyByDefault, "allow /dev/zero:r")
	sawBoth := false
	f.between = func() {
		sawBoth = true
		assert.Len(t, attached(t, fd), 2, "while replacing, both programs are attached")
		assert.Contains(t, attached(t, fd), orphan)
		runChild(t, fd, "during the replacement",
			probe{"open /dev/null r", unix.EPERM}, probe{"open /dev/zero r", unix.EPERM})
	}
	require.NoError(t, f.Set(ctx, second))
	f.between = nil
	assert.True(t, sawBoth, "the adopted program was replaced through the hook")
	assert.Equal(t, []uint32{f.ProgramID()}, attached(t, fd), "the adopted program is detached")
	checkProgsFreed(t, orphan)
	runChild(t, fd, "/dev/zero read only",
		probe{"open /dev/null r", unix.EPERM}, probe{"open /dev/zero r", 0}, probe{"open /dev/zero w", unix.EPERM})
	require.NoError(t, f.Remove())

	again := attachOrphan(t, fd, second)
	require.NoError(t, f.Adopt(again, second))
	require.NoError(t, f.Remove())
	assert.Empty(t, attached(t, fd), "Remove detaches an adopted program")
	assert.Nil(t, f.Devices())
	checkProgsFreed(t, again)
	assert.Equal(t, 0, cache.Len())
}

// loadSocketFilter loads "return 0" as a socket filter: a program that is
// not a device program. The caller closes it.
func loadSocketFilter(t *testing.T) *Loaded {
	t.Helper()
	code := string(appendInsn(appendInsn(nil, insn{op: opMOVK, dst: r0}), insn{op: opEXIT}))
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  2,
		insns:    ptr{p: unsafe.Pointer(unsafe.StringData(code))},
		license:  ptr{p: unsafe.Pointer(unsafe.StringData(license + "\x00"))},
	}
	fd, err := loadRetry(context.Background(), &attr)
	require.NoError(t, err)
	info, err := infoOf(fd)
	require.NoError(t, err)
	return &Loaded{fd: fd, id: info.id, len: 2}
}

// TestHostAdoptRefuses: a program that is not the recorded one, not a
// device program, not attached to the group, or gone is never taken over,
// and a refusal changes nothing.
func TestHostAdoptRefuses(t *testing.T) {
	null := devices(t, semantic.DenyByDefault, "allow /dev/null")
	zero := devices(t, semantic.DenyByDefault, "allow /dev/zero")
	tests := []struct {
		name string
		// setup prepares the group open as fd (and a Filter on it) and
		// returns the id to adopt.
		setup func(t *testing.T, fd int, f *Filter) uint32
		list  *semantic.Devices
		kind  error
		msg   string
	}{
		{
			name:  "other instructions than the recorded list's",
			setup: func(t *testing.T, fd int, _ *Filter) uint32 { return attachOrphan(t, fd, zero) },
			list:  null,
			kind:  semantic.ErrInvalid,
			msg:   "does not run the instructions",
		},
		{
			name: "attached to another group",
			setup: func(t *testing.T, _ int, _ *Filter) uint32 {
				_, other := testGroup(t)
				return attachOrphan(t, other, null)
			},
			list: null,
			kind: semantic.ErrNotExist,
			msg:  "not attached to the group",
		},
		{
			name: "not a device program",
			setup: func(t *testing.T, _ int, _ *Filter) uint32 {
				l := loadSocketFilter(t)
				t.Cleanup(func() { l.Close() })
				return l.ID()
			},
			list: null,
			kind: semantic.ErrInvalid,
			msg:  "not a device program",
		},
		{
			name: "gone",
			setup: func(t *testing.T, _ int, _ *Filter) uint32 {
				p, err := Compile(null)
				require.NoError(t, err)
				l, err := Load(context.Background(), p)
				require.NoError(t, err)
				require.NoError(t, l.Close())
				checkProgsFreed(t, l.ID())
				return l.ID()
			},
			list: null,
			kind: semantic.ErrNotExist,
			msg:  "BPF_PROG_GET_FD_BY_ID",
		},
		{
			name: "the Filter's own program still attached",
			setup: func(t *testing.T, fd int, f *Filter) uint32 {
				require.NoError(t, f.Set(context.Background(), zero))
				return attachOrphan(t, fd, null)
			},
			list: null,
			kind: semantic.ErrBusy,
			msg:  "still attached",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNoFDLeak(t)
			_, fd := testGroup(t)
			cache := NewCache(testLogger(t))
			t.Cleanup(func() { cache.Close() })
			f := cache.NewFilter(fd, "cgsem-test")
			t.Cleanup(func() { f.Close() })
			id := tt.setup(t, fd, f)
			ownBefore, listBefore, idsBefore := f.ProgramID(), f.Devices(), attached(t, fd)

			err := f.Adopt(id, tt.list)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.kind)
			assert.ErrorContains(t, err, tt.msg)
			assert.Equal(t, ownBefore, f.ProgramID(), "a refused adoption changed the Filter")
			assert.Equal(t, listBefore, f.Devices())
			assert.Equal(t, idsBefore, attached(t, fd), "a refused adoption changed the group's programs")
		})
	}
}

// TestHostAdoptAfterOwnDetached: a Filter whose program someone else
// detached (another process that adopted and replaced it, say) adopts the
// program now in force, giving its own back to the cache.
func TestHostAdoptAfterOwnDetached(t *testing.T) {
	checkNoFDLeak(t)
	_, fd := testGroup(t)
	cache := NewCache(testLogger(t))
	defer cache.Close()
	f := cache.NewFilter(fd, "cgsem-test")
	defer f.Close()
	require.NoError(t, f.Set(context.Background(), devices(t, semantic.DenyByDefault, "allow /dev/null")))
	f.mu.Lock()
	require.NoError(t, Detach(fd, f.prog))
	f.mu.Unlock()

	zero := devices(t, semantic.DenyByDefault, "allow /dev/zero")
	id := attachOrphan(t, fd, zero)
	require.NoError(t, f.Adopt(id, zero))
	assert.Equal(t, id, f.ProgramID())
	assert.Equal(t, zero, f.Devices())
	assert.Equal(t, 0, cache.Len(), "the detached program went back to the cache")
	require.NoError(t, f.Remove())
	assert.Empty(t, attached(t, fd))
}

// TestHostOpenProgramRefusesOtherTypes: OpenProgram checks the type on
// its own, and reads the tag Adopt and Runs compare.
func TestHostOpenProgramRefusesOtherTypes(t *testing.T) {
	hostCgroup2(t)
	checkNoFDLeak(t)
	l := loadSocketFilter(t)
	defer l.Close()
	_, err := OpenProgram(l.ID())
	require.ErrorIs(t, err, semantic.ErrInvalid)

	p, err := Compile(devices(t, semantic.DenyByDefault, "allow /dev/null"))
	require.NoError(t, err)
	dev, err := Load(context.Background(), p)
	require.NoError(t, err)
	defer dev.Close()
	o, err := OpenProgram(dev.ID())
	require.NoError(t, err)
	defer o.Close()
	assert.Equal(t, dev.ID(), o.ID())
	assert.Equal(t, dev.tag, o.tag)
	assert.Contains(t, tagsOf(p), o.tag, "the kernel's tag is one this package computes")

	other, err := Compile(devices(t, semantic.DenyByDefault, "allow /dev/zero"))
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		p    *Program
		want bool
	}{
		{"its own list", p, true},
		{"another list", other, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Runs(dev.ID(), tt.p)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ok)
		})
	}
	_, err = Runs(l.ID(), p)
	assert.ErrorIs(t, err, semantic.ErrInvalid, "Runs refuses another program type")
}
