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
//
// An argument is the whole rest of its line, so it may contain spaces;
// it cannot contain a newline (build.sh refuses those).
type manifest struct {
	controllers []string // nil: all available; empty: none
	modules     []module
	runs        []testRun
}

type module struct {
	path, params string
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
	if len(m.runs) == 0 {
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
