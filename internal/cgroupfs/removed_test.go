package cgroupfs

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/testenv"
)

// TestReadRemovedGroup: a file opened before its group was removed reads
// as a missing file (kernfs says ENODEV), whether held open or reached by
// a read that raced the removal.
func TestReadRemovedGroup(t *testing.T) {
	testenv.RequireV1(t, "pids")
	s := testenv.NewScratch(t, "pids")
	root, err := OpenRoot(s.Dirs["pids"], Config{})
	require.NoError(t, err)
	defer root.Close()
	require.NoError(t, root.Mkdir("gone", 0o755))
	f, err := root.OpenFile("gone/pids.max", unix.O_RDONLY)
	require.NoError(t, err)
	defer f.Close()
	b, err := f.ReadInto(nil)
	require.NoError(t, err)
	require.Equal(t, "max\n", string(b))
	require.NoError(t, os.Remove(filepath.Join(s.Dirs["pids"], "gone")))

	_, err = f.ReadInto(nil)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorIs(t, err, unix.ENOENT)
	require.ErrorIs(t, err, unix.ENODEV)
	var errno unix.Errno
	require.ErrorAs(t, err, &errno)
	require.Equal(t, unix.ENOENT, errno, "the first errno is what classifiers see")
	require.ErrorContains(t, err, "gone/pids.max")
}
