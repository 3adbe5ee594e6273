package reliability

import (
	"os"
	"os/exec"
	"time"
)

// sleeperEnv makes a re-executed test binary a sleeper: it waits, doing
// nothing, until it is killed. The checks' processes are such sleepers,
// not sleep(1): the test binary is there wherever the test runs, a VM's
// initramfs included, where no sleep binary is.
const sleeperEnv = "CGSEM_RELIABILITY_SLEEPER"

// The sleeper's side runs at package initialization, before the testing
// package parses flags or runs any test, so it needs nothing from the
// test that started it.
func init() {
	if os.Getenv(sleeperEnv) == "" {
		return
	}
	for {
		time.Sleep(time.Hour)
	}
}

// sleeperCommand is a process that waits to be killed, not started.
func sleeperCommand() *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		// Linux always resolves /proc/self/exe for a running binary.
		exe = "/proc/self/exe"
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), sleeperEnv+"=1")
	cmd.Dir = "/"
	return cmd
}
