package hostinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Systemd reports whether the host whose root directory is root ("" is
// "/") runs systemd as PID 1 and was booted by it: PID 1's name
// (root/proc/1/comm) is "systemd", and root/run/systemd/system is a
// directory, which systemd creates early at boot and sd_booted(3) checks.
// Either alone is not enough: a container may run a systemd it did not
// boot the host with, or see the host's /run. why says what was found,
// in a form that reads after "because" or in a probe's verdict: "PID 1 is
// \"init\", not systemd".
func Systemd(root string) (ok bool, why string) {
	if root == "" {
		root = "/"
	}
	comm, err := os.ReadFile(filepath.Join(root, "proc/1/comm"))
	if err != nil {
		return false, fmt.Sprintf("cannot read PID 1's name: %v", err)
	}
	if c := strings.TrimSpace(string(comm)); c != "systemd" {
		return false, fmt.Sprintf("PID 1 is %q, not systemd", c)
	}
	run := filepath.Join(root, "run/systemd/system")
	st, err := os.Lstat(run)
	switch {
	case err != nil:
		return false, fmt.Sprintf("PID 1 is systemd but %s is missing: it did not boot the system", run)
	case !st.IsDir():
		return false, fmt.Sprintf("PID 1 is systemd but %s is not a directory: it did not boot the system", run)
	}
	return true, "PID 1 is systemd and booted the system"
}
