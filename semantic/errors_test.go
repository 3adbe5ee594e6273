package semantic_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *semantic.Error
		want string
	}{
		{"everything", &semantic.Error{Driver: "v2", Op: "set memory.max", Group: "libvirt/lxc/web1", Kind: semantic.ErrBusy, Err: unix.EBUSY},
			"cgsem/v2: set memory.max on libvirt/lxc/web1: device or resource busy"},
		{"no driver", &semantic.Error{Op: "parse path", Group: `"a/.."`, Kind: semantic.ErrInvalid, Err: errors.New("segment 2: bad")},
			`cgsem: parse path on "a/..": segment 2: bad`},
		{"no group", &semantic.Error{Driver: "v1", Op: "open", Err: unix.EACCES},
			"cgsem/v1: open: permission denied"},
		{"kind only", &semantic.Error{Driver: "fake", Op: "delete", Group: "a", Kind: semantic.ErrNotExist},
			"cgsem/fake: delete on a: does not exist"},
		{"op only", &semantic.Error{Op: "kill"}, "cgsem: kill"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func TestWrap(t *testing.T) {
	assert.NoError(t, semantic.Wrap("v2", "create", "a", nil))

	err := semantic.Wrap("v2", "set memory.max", "libvirt/lxc/web1", unix.EBUSY)
	assert.EqualError(t, err, "cgsem/v2: set memory.max on libvirt/lxc/web1: device or resource busy")
	assert.ErrorIs(t, err, semantic.ErrBusy, "the kind")
	assert.ErrorIs(t, err, unix.EBUSY, "the cause")
	assert.NotErrorIs(t, err, semantic.ErrInvalid)
	var e *semantic.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "v2", e.Driver)
	assert.Equal(t, "set memory.max", e.Op)
	assert.Equal(t, "libvirt/lxc/web1", e.Group)

	// A path error from os keeps its errno reachable.
	_, statErr := os.Stat("/nonexistent-cgsem-test")
	err = semantic.Wrap("v1", "open", "x", statErr)
	assert.ErrorIs(t, err, semantic.ErrNotExist)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.ErrorIs(t, err, unix.ENOENT)

	// An inner cgsem error keeps its kind; the outer adds context.
	inner := semantic.Wrap("v1", "write cpuset.cpus", "a/b", unix.ENOSPC)
	outer := semantic.Wrap("v1", "create", "a/b", semantic.Errorf(semantic.ErrInvalid, "validate", "a/b", "bad: %w", inner))
	assert.ErrorIs(t, outer, semantic.ErrInvalid)
	assert.ErrorIs(t, outer, unix.ENOSPC)

	// Cancellation is not a failure kind, but stays matchable.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = semantic.Wrap("v2", "freeze", "a", ctx.Err())
	assert.ErrorIs(t, err, context.Canceled)
	require.ErrorAs(t, err, &e)
	assert.Nil(t, e.Kind)
}

func TestKindsMatchStandardErrors(t *testing.T) {
	tests := []struct {
		name string
		kind error
		std  error // nil: matches no standard error
	}{
		{"not exist", semantic.ErrNotExist, fs.ErrNotExist},
		{"exist", semantic.ErrExist, fs.ErrExist},
		{"invalid", semantic.ErrInvalid, fs.ErrInvalid},
		{"permission", semantic.ErrPermission, fs.ErrPermission},
		{"not supported", semantic.ErrNotSupported, errors.ErrUnsupported},
		{"busy", semantic.ErrBusy, nil},
	}
	stds := []error{fs.ErrNotExist, fs.ErrExist, fs.ErrInvalid, fs.ErrPermission, errors.ErrUnsupported, fs.ErrClosed}
	kinds := []error{semantic.ErrNotExist, semantic.ErrExist, semantic.ErrInvalid, semantic.ErrBusy, semantic.ErrPermission, semantic.ErrNotSupported}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := &semantic.Error{Driver: "x", Op: "op", Kind: tt.kind, Err: errors.New("cause")}
			for _, std := range stds {
				assert.Equal(t, std == tt.std, errors.Is(tt.kind, std), "kind vs %v", std)
				assert.Equal(t, std == tt.std, errors.Is(wrapped, std), "wrapped vs %v", std)
			}
			for _, k := range kinds {
				assert.Equal(t, k == tt.kind, errors.Is(wrapped, k), "vs kind %v", k)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"plain error", errors.New("x"), nil},
		{"ENOENT", unix.ENOENT, semantic.ErrNotExist},
		{"ESRCH: no such process", unix.ESRCH, semantic.ErrNotExist},
		{"ENODEV", unix.ENODEV, semantic.ErrInvalid},
		{"ENXIO", unix.ENXIO, semantic.ErrNotExist},
		{"EEXIST", unix.EEXIST, semantic.ErrExist},
		{"EINVAL", unix.EINVAL, semantic.ErrInvalid},
		{"ERANGE", unix.ERANGE, semantic.ErrInvalid},
		{"ENAMETOOLONG", unix.ENAMETOOLONG, semantic.ErrInvalid},
		{"EBUSY", unix.EBUSY, semantic.ErrBusy},
		{"ENOTEMPTY: rmdir with children", unix.ENOTEMPTY, semantic.ErrBusy},
		{"EPERM", unix.EPERM, semantic.ErrPermission},
		{"EACCES", unix.EACCES, semantic.ErrPermission},
		{"EROFS", unix.EROFS, semantic.ErrPermission},
		{"ENOTSUP", unix.ENOTSUP, semantic.ErrNotSupported},
		{"EOPNOTSUPP", unix.EOPNOTSUPP, semantic.ErrNotSupported},
		{"ENOSYS", unix.ENOSYS, semantic.ErrNotSupported},
		{"EINTR is no kind", unix.EINTR, nil},
		{"ENOSPC is no kind", unix.ENOSPC, nil},
		{"errno inside a PathError", &fs.PathError{Op: "open", Path: "x", Err: unix.EACCES}, semantic.ErrPermission},
		{"errno wrapped by fmt", fmt.Errorf("write: %w", unix.EBUSY), semantic.ErrBusy},
		{"fs.ErrNotExist", fs.ErrNotExist, semantic.ErrNotExist},
		{"fs.ErrExist", fs.ErrExist, semantic.ErrExist},
		{"fs.ErrPermission", fs.ErrPermission, semantic.ErrPermission},
		{"fs.ErrInvalid", fs.ErrInvalid, semantic.ErrInvalid},
		{"errors.ErrUnsupported", errors.ErrUnsupported, semantic.ErrNotSupported},
		{"context.Canceled", context.Canceled, nil},
		{"context.DeadlineExceeded", context.DeadlineExceeded, nil},
		{"a kind", semantic.ErrBusy, semantic.ErrBusy},
		{"kind wins over its cause", &semantic.Error{Kind: semantic.ErrBusy, Err: unix.EINVAL}, semantic.ErrBusy},
		{"cause classifies a kindless error", &semantic.Error{Err: unix.EEXIST}, semantic.ErrExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, semantic.Classify(tt.err))
		})
	}
}

func TestErrorf(t *testing.T) {
	err := semantic.Errorf(semantic.ErrExist, "create", "a/b", "group %s exists", "a/b")
	assert.EqualError(t, err, "cgsem: create on a/b: group a/b exists")
	assert.ErrorIs(t, err, semantic.ErrExist)
	assert.ErrorIs(t, err, fs.ErrExist)
}

func TestNotSupported(t *testing.T) {
	err := semantic.NotSupported("systemd", semantic.DevicesFeature, "systemd cannot express b *:* w")
	assert.EqualError(t, err, "cgsem/systemd: use devices: systemd cannot express b *:* w")
	assert.ErrorIs(t, err, semantic.ErrNotSupported)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}
