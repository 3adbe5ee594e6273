package systemd

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/sdns"
)

// TestCLIEndToEnd runs the cgsem tool, built from this module, with
// --driver systemd against the container's bus: it creates, shows,
// lists, plans, runs a command inside, refuses what hybrid systemd cannot
// do with exit code 3, and removes, leaving nothing.
func TestCLIEndToEnd(t *testing.T) {
	in := startContainer(t, sdns.ModeHybrid)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build cmd/cgsem with")
	}
	bin := filepath.Join(t.TempDir(), "cgsem")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/cgsem")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cgsem: %v\n%s", err, out)
	}
	conn := connect(t, in.BusAddress())
	root := newRootSlice(t, conn)
	global := []string{"--driver", "systemd", "--setting", "bus=" + in.BusAddress(), "--root", root}
	cgsem := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(append([]string{}, args...), global...)...)
		// A command line's "--" ends the flags, so globals go first there.
		if i := indexOf(args, "--"); i >= 0 {
			cmd = exec.Command(bin, append(append(append([]string{}, global...), args[:i]...), args[i:]...)...)
		}
		cmd.Env = append(os.Environ(), "CGSEM_DRIVER=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, wantCode, code, "cgsem %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), stdout.String(), stderr.String())
		return stdout.String() + stderr.String()
	}

	cgsem(0, "create", "web/app", "--memory", "64M", "--pids", "10", "--cpu-weight", "250", "--devices", "deny", "--allow-device", "/dev/null:rw")
	var shown struct {
		Driver    string `json:"driver"`
		Path      string `json:"path"`
		Resources struct {
			Memory struct {
				Max uint64 `json:"max"`
			} `json:"memory"`
			Pids struct {
				Max uint64 `json:"max"`
			} `json:"pids"`
		} `json:"resources"`
	}
	require.NoError(t, json.Unmarshal([]byte(cgsem(0, "show", "web/app", "--json")), &shown))
	assert.Equal(t, "systemd", shown.Driver)
	assert.Equal(t, uint64(64<<20), shown.Resources.Memory.Max)
	assert.Equal(t, uint64(10), shown.Resources.Pids.Max)
	assert.Contains(t, cgsem(0, "ls", "-r"), "web/app")
	assert.Contains(t, cgsem(0, "plan", "web/app", "--pids", "20"), "TasksMax")
	out := cgsem(3, "set", "web/app", "--memory-high", "1G")
	assert.Contains(t, out, "memory.high", "the refusal names the field")

	// run: the command's first act sees it in the group's scope, and the
	// devices the group denies stay shut.
	out = cgsem(0, "run", "--path", "web/app", "--", "/bin/sh", "-c", "cat /proc/self/cgroup; cat /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 || echo zero-denied")
	scope := `cgsem\x2dtest`
	assert.Contains(t, out, scope, "the command ran in a unit below the root slice")
	assert.Contains(t, out, "-web-app.scope", "in the group's scope")
	assert.Contains(t, out, "null-ok")
	assert.Contains(t, out, "zero-denied")

	cgsem(5, "rm", "web")
	cgsem(0, "rm", "web", "--recursive", "--kill")
	assert.NotContains(t, cgsem(0, "ls", "-r"), "web")
	cgsem(4, "show", "web/app")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
