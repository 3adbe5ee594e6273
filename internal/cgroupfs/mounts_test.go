package cgroupfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/internal/testenv"
)

const mountChildEnv = "CGSEM_CGROUPFS_MOUNT_CHILD"

// TestWritesRefuseMountedFiles: a file bind-mounted over an attribute
// file inside the tree is not written through, whether it is named by a
// path or, the common case, as one name in its group's directory. The
// mount is made in a private mount namespace of a child process.
func TestWritesRefuseMountedFiles(t *testing.T) {
	if os.Getenv(mountChildEnv) != "" {
		mountedFilesChild(t)
		return
	}
	testenv.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWritesRefuseMountedFiles$", "-test.v")
	cmd.Env = append(os.Environ(), mountChildEnv+"=1")
	cmd.SysProcAttr = &unix.SysProcAttr{Unshareflags: unix.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestWritesRefuseMountedFiles", "child:\n%s", out)
}

func mountedFilesChild(t *testing.T) {
	// Nothing mounted here may reach the parent's namespace.
	require.NoError(t, unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""))
	root := tree(t)
	outside := filepath.Join(filepath.Dir(root), "outside", "planted")
	require.NoError(t, os.WriteFile(outside, []byte("outside\n"), 0o644))
	value := filepath.Join(root, "a", "b", "value")
	require.NoError(t, unix.Mount(outside, value, "", unix.MS_BIND, ""))
	defer unix.Unmount(value, unix.MNT_DETACH)

	r, err := OpenRoot(root, Config{})
	require.NoError(t, err)
	defer r.Close()
	b, err := r.OpenDir("a/b")
	require.NoError(t, err)
	defer b.Close()
	assert.ErrorIs(t, r.Write("a/b/value", "2"), unix.EXDEV, "by path")
	assert.ErrorIs(t, b.Write("value", "2"), unix.EXDEV, "by name in its directory")
	_, err = b.Read("value")
	assert.ErrorIs(t, err, unix.EXDEV, "reads too")
	got, err := os.ReadFile(outside)
	require.NoError(t, err)
	assert.Equal(t, "outside\n", string(got), "the mounted file is untouched")
}
