//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// manifest is what build.sh tells /init to do, read from /test/manifest.
// One directive per line, a keyword and the rest of the line:
//
//	controllers all|none|<name>...   root subtree_control (default all)
//	module <path.ko> [params...]     loaded with finit_module, in order
//	run <path>                       a test binary; the lines below it
//	arg <one argument>               until the next run belong to it
//	env <NAME=value>
//	dir <path>                       its working directory (default: its
//	                                 TMPDIR), as go test's package directory
//	switchroot <dev> <fstype> <init> instead of runs: mount dev as the new
//	                                 root and hand PID 1 over to its init
//	mount <dev> <dir> <fstype> [opts]  with switchroot: also mount dev at
//	                                 dir of the new root first (opts: ro or
//	                                 rw, then data for the filesystem)
//
// An argument is the whole rest of its line, so it may contain spaces;
// it cannot contain a newline (build.sh refuses those).
//
// The systemd lane has two manifests at the same path: the initramfs's
// (modules, switchroot, mount) for PID 1, and the test disk's (controllers
// and runs) for the runner that systemd starts once the VM is up.
type manifest struct {
	controllers []string // nil: all available; empty: none
	modules     []module
	runs        []testRun
	root        *newRoot
	mounts      []diskMount
}

type module struct {
	path, params string
}

type newRoot struct {
	device, fstype, init string
}

type diskMount struct {
	device, dir, fstype, options string
}

type testRun struct {
	path string
	args []string
	env  []string
	dir  string
}

func parseManifest(r io.Reader) (*manifest, error) {
	m := &manifest{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, rest, _ := strings.Cut(line, " ")
		var err error
		switch key {
		case "controllers":
			switch f := strings.Fields(rest); {
			case len(f) == 1 && f[0] == "all":
				m.controllers = nil
			case len(f) == 1 && f[0] == "none":
				m.controllers = []string{}
			case len(f) == 0:
				err = fmt.Errorf("controllers needs all, none or names")
			default:
				m.controllers = f
			}
		case "module":
			path, params, _ := strings.Cut(strings.TrimSpace(rest), " ")
			if path == "" {
				err = fmt.Errorf("module needs a path")
			}
			m.modules = append(m.modules, module{path: path, params: strings.TrimSpace(params)})
		case "run":
			if rest == "" {
				err = fmt.Errorf("run needs a path")
			}
			m.runs = append(m.runs, testRun{path: rest})
		case "switchroot":
			f := strings.Fields(rest)
			switch {
			case len(f) != 3:
				err = fmt.Errorf("switchroot needs a device, a filesystem type and an init")
			case m.root != nil:
				err = fmt.Errorf("a second switchroot")
			case !strings.HasPrefix(f[2], "/"):
				err = fmt.Errorf("switchroot init %q is not an absolute path", f[2])
			default:
				m.root = &newRoot{device: f[0], fstype: f[1], init: f[2]}
			}
		case "mount":
			f := strings.Fields(rest)
			switch {
			case len(f) != 3 && len(f) != 4:
				err = fmt.Errorf("mount needs a device, a directory, a filesystem type and maybe options")
			case !strings.HasPrefix(f[1], "/") || f[1] == "/":
				err = fmt.Errorf("mount directory %q is not an absolute path below the root", f[1])
			default:
				d := diskMount{device: f[0], dir: f[1], fstype: f[2]}
				if len(f) == 4 {
					d.options = f[3]
				}
				m.mounts = append(m.mounts, d)
			}
		case "arg", "env", "dir":
			if len(m.runs) == 0 {
				err = fmt.Errorf("%s before any run", key)
				break
			}
			r := &m.runs[len(m.runs)-1]
			switch {
			case key == "arg":
				r.args = append(r.args, rest)
			case key == "dir":
				r.dir = rest
			case !strings.Contains(rest, "="):
				err = fmt.Errorf("env %q is not NAME=value", rest)
			default:
				r.env = append(r.env, rest)
			}
		default:
			err = fmt.Errorf("unknown directive %q", key)
		}
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case m.root != nil && len(m.runs) > 0:
		return nil, fmt.Errorf("manifest has both switchroot and runs: the runs belong on the new root")
	case m.root == nil && len(m.mounts) > 0:
		return nil, fmt.Errorf("manifest mounts disks but has no switchroot")
	case m.root == nil && len(m.runs) == 0:
		return nil, fmt.Errorf("manifest names no test binary")
	}
	return m, nil
}

// testTimeout returns the -test.timeout a run was given, so /init can kill
// a binary whose own timeout did not fire (a hung exit, a wedged child).
func (r testRun) testTimeout() (time.Duration, bool) {
	var d time.Duration
	found := false
	for i, a := range r.args {
		var v string
		switch {
		case strings.HasPrefix(a, "-test.timeout="), strings.HasPrefix(a, "--test.timeout="):
			_, v, _ = strings.Cut(a, "=")
		case (a == "-test.timeout" || a == "--test.timeout") && i+1 < len(r.args):
			v = r.args[i+1]
		default:
			continue
		}
		if t, err := time.ParseDuration(v); err == nil {
			d, found = t, true
		}
	}
	return d, found && d > 0
}
