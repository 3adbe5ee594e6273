package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func TestExitCodeMapping(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain error", errors.New("boom"), 1},
		{"exists", &semantic.Error{Op: "create", Kind: semantic.ErrExist}, 1},
		{"permission", &semantic.Error{Op: "set", Kind: semantic.ErrPermission}, 1},
		{"invalid", &semantic.Error{Op: "set", Kind: semantic.ErrInvalid}, 2},
		{"not supported", semantic.NotSupported("x", semantic.MemoryMax, "no"), 3},
		{"errors.ErrUnsupported", fmt.Errorf("op: %w", errors.ErrUnsupported), 3},
		{"not exist", &semantic.Error{Op: "open", Kind: semantic.ErrNotExist}, 4},
		{"fs.ErrNotExist", fmt.Errorf("read: %w", fs.ErrNotExist), 4},
		{"busy", &semantic.Error{Op: "delete", Kind: semantic.ErrBusy}, 5},
		{"bare EBUSY", fmt.Errorf("write: %w", syscall.EBUSY), 5},
		{"outermost kind decides", &semantic.Error{Op: "use", Kind: semantic.ErrNotSupported,
			Err: &semantic.Error{Op: "parse", Kind: semantic.ErrInvalid}}, 3},
		{"wrapped by fmt", fmt.Errorf("process 5: %w", &semantic.Error{Op: "add", Kind: semantic.ErrNotExist}), 4},
		{"usage", usagef("bad"), 2},
		{"interrupted by SIGINT", &interrupted{sig: syscall.SIGINT}, 130},
		{"interrupted by SIGTERM", &interrupted{sig: syscall.SIGTERM}, 143},
		{"cancelled without a signal", &semantic.Error{Op: "freeze", Err: context.Canceled}, 1},
		{"command status", &exitStatus{code: 42}, 42},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, exitCode(tc.err))
		})
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		name  string
		opts  fake.Options
		setup [][]string
		// fault, if set, is injected into the nth backend change after setup.
		fault error
		args  []string
		code  int
		msg   string
	}{
		{name: "ok", args: []string{"create", "a"}, code: 0},
		{name: "group exists", setup: [][]string{{"create", "a"}}, args: []string{"create", "a"}, code: 1, msg: "cgsem: create: fake: create on a: "},
		{name: "no such group", args: []string{"show", "nope"}, code: 4, msg: "cgsem: show: fake: "},
		{name: "no such group to set", args: []string{"set", "nope", "--pids", "1"}, code: 4},
		{name: "no such group to list", args: []string{"ls", "nope"}, code: 4},
		{name: "busy with children", setup: [][]string{{"create", "a/b"}}, args: []string{"rm", "a"}, code: 5, msg: "cgsem: rm: fake: "},
		{name: "not supported", opts: fake.Options{Unsupported: []semantic.Feature{semantic.MemoryMax}},
			args: []string{"create", "a", "--memory", "1G"}, code: 3, msg: "memory.max"},
		{name: "operation not supported", opts: fake.Options{Unsupported: []semantic.Feature{semantic.Freeze}},
			setup: [][]string{{"create", "a"}}, args: []string{"freeze", "a"}, code: 3, msg: "freeze"},
		{name: "invalid path", args: []string{"show", "a/../b"}, code: 2, msg: `".."`},
		{name: "invalid path segment", args: []string{"create", "memory.max"}, code: 2, msg: "kernel attribute files"},
		{name: "value the driver refuses", opts: fake.Options{HostCPUs: semantic.CPUSet{0}},
			setup: [][]string{{"create", "a"}}, args: []string{"set", "a", "--cpuset", "5"}, code: 2},
		{name: "injected EBUSY", setup: [][]string{{"create", "a"}}, fault: syscall.EBUSY, args: []string{"set", "a", "--pids", "3"}, code: 5},
		{name: "injected EACCES", setup: [][]string{{"create", "a"}}, fault: syscall.EACCES, args: []string{"set", "a", "--pids", "3"}, code: 1, msg: "permission denied"},
		{name: "injected EINVAL", setup: [][]string{{"create", "a"}}, fault: syscall.EINVAL, args: []string{"set", "a", "--pids", "3"}, code: 2},
		{name: "injected ENOTSUP on create", fault: syscall.ENOTSUP, args: []string{"create", "a"}, code: 3},
		{name: "nothing to set", setup: [][]string{{"create", "a"}}, args: []string{"set", "a"}, code: 2, msg: "no resource flags"},
		{name: "missing path", args: []string{"show"}, code: 2, msg: "missing PATH"},
		{name: "two paths", args: []string{"show", "a", "b"}, code: 2, msg: "want one PATH"},
		{name: "bad pid", setup: [][]string{{"create", "a"}}, args: []string{"attach", "a", "12x"}, code: 2, msg: `"12x" is not a process id`},
		{name: "attach without pids", args: []string{"attach", "a"}, code: 2},
		{name: "drivers takes no arguments", args: []string{"drivers", "x"}, code: 2},
		{name: "bad log level", args: []string{"--log-level", "loud", "show", "a"}, code: 2, msg: `--log-level "loud"`},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, msg: `unknown command "frobnicate"`},
		{name: "unknown global flag", args: []string{"--nope", "ls"}, code: 2, msg: "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			for _, s := range tc.setup {
				e.must(s...)
			}
			if tc.fault != nil {
				e.drv.InjectFault(1, tc.fault)
			}
			r := e.run(tc.args...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			if tc.code == 0 {
				assert.Empty(t, r.stderr)
				return
			}
			assert.True(t, strings.HasPrefix(r.stderr, "cgsem: "), "stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, tc.msg)
		})
	}
}

func TestUnknownDriver(t *testing.T) {
	e := newEnv(t, fake.Options{})
	r := e.runIn(context.Background(), "--driver", "nope", "ls")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "forgotten import?")
	assert.Contains(t, r.stderr, `"nope"`)
	assert.Contains(t, r.stderr, "registered: fake")

	e.env[registry.EnvDriver] = "nope"
	r = e.runIn(context.Background(), "ls")
	assert.Equal(t, exitUsage, r.code, "CGSEM_DRIVER is checked the same way")
	assert.Contains(t, r.stderr, "forgotten import?")
}

func TestNoDriverFits(t *testing.T) {
	// The fake has no probe: without --driver nothing fits.
	e := newEnv(t, fake.Options{})
	r := e.runIn(context.Background(), "ls")
	assert.Equal(t, exitNotSupported, r.code)
	assert.Contains(t, r.stderr, "no driver fits this host")
	assert.Contains(t, r.stderr, "fake (priority 0): no, never auto-selected")
}

func TestGlobalOptions(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, o semantic.Options)
	}{
		{"defaults", nil, []string{"--driver", "fake", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.Empty(t, o.Root)
			assert.Nil(t, o.Logger, "logging is off by default")
			assert.False(t, o.AllowApproximate)
			assert.Nil(t, o.Settings)
		}},
		{"root self", nil, []string{"--driver", "fake", "--root", "self", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.Equal(t, semantic.RootSelf, o.Root)
		}},
		{"root from the environment", map[string]string{EnvRoot: "/machine.slice/x"}, []string{"--driver", "fake", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.Equal(t, "/machine.slice/x", o.Root)
		}},
		{"flag beats environment", map[string]string{EnvRoot: "/x"}, []string{"--driver", "fake", "--root", "self", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.Equal(t, "self", o.Root)
		}},
		{"driver from the environment", map[string]string{registry.EnvDriver: "fake"}, []string{"ls"}, func(t *testing.T, o semantic.Options) {}},
		{"global flags after the command", nil, []string{"ls", "--root", "self", "--driver", "fake", "--approximate"}, func(t *testing.T, o semantic.Options) {
			assert.Equal(t, "self", o.Root)
			assert.True(t, o.AllowApproximate)
		}},
		{"approximate", nil, []string{"--driver", "fake", "--approximate", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.True(t, o.AllowApproximate)
		}},
		{"settings", nil, []string{"--driver", "fake", "--setting", "bus=unix:path=/x", "--setting", "a=b=c", "ls"}, func(t *testing.T, o semantic.Options) {
			assert.Equal(t, map[string]string{"bus": "unix:path=/x", "a": "b=c"}, o.Settings)
		}},
		{"log level", nil, []string{"--driver", "fake", "--log-level", "trace", "ls"}, func(t *testing.T, o semantic.Options) {
			require.NotNil(t, o.Logger)
			assert.True(t, o.Logger.IsTrace())
		}},
		{"log level warn", nil, []string{"--driver", "fake", "--log-level", "WARN", "ls"}, func(t *testing.T, o semantic.Options) {
			require.NotNil(t, o.Logger)
			assert.True(t, o.Logger.IsWarn())
			assert.False(t, o.Logger.IsInfo())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{})
			for k, v := range tc.env {
				e.env[k] = v
			}
			r := e.runIn(context.Background(), tc.args...)
			require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
			tc.check(t, e.opts())
		})
	}
}

// realFake is a registry whose "fake" is the fake package's own
// registration (read from the default registry, never changed), opened
// afresh per command with the options the CLI gives.
func realFake() *registry.Registry {
	reg := &registry.Registry{Getenv: func(string) string { return "" }}
	reg.Register(registry.Registration{Name: fake.Name, New: func(o semantic.Options) (semantic.Driver, error) {
		return registry.Default.Open(fake.Name, o)
	}})
	return reg
}

func TestOptionsReachTheDriver(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"trace log of each write", []string{"--log-level", "trace", "create", "a", "--pids", "9"}, 0, []string{"[TRACE]", "cgsem.fake", "pids.max"}},
		{"a driver setting", []string{"--setting", "unsupported=pids.max", "create", "a", "--pids", "9"}, 3, []string{"pids.max"}},
		{"a setting the driver refuses", []string{"--setting", "colour=blue", "ls"}, 2, []string{"colour"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"--driver", "fake"}, tc.args...), func(string) string { return "" },
				strings.NewReader(""), &out, &errb, realFake())
			assert.Equal(t, tc.code, code, "stderr: %s", errb.String())
			for _, s := range tc.stderr {
				assert.Contains(t, errb.String(), s)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   []string
		noStdout bool
	}{
		{name: "--help", args: []string{"--help"}, stdout: append(commandNames(), "Exit codes", "--driver NAME", "--root PATH")},
		{name: "help", args: []string{"help"}, stdout: []string{"Usage: cgsem [global flags] COMMAND"}},
		{name: "help command", args: []string{"help", "rm"}, stdout: []string{"Usage: cgsem rm PATH", "--kill", "--recursive"}},
		{name: "help unknown command", args: []string{"help", "nope"}, code: 2, stderr: []string{`unknown command "nope"`}},
		{name: "command --help", args: []string{"create", "--help"}, stdout: []string{"Usage: cgsem create PATH", "Resource flags", "--memory BYTES", "--allow-device RULE", "--hugetlb SIZE=BYTES", "Global flags", "--json"}},
		{name: "command -h after arguments", args: []string{"show", "a", "-h"}, stdout: []string{"Usage: cgsem show PATH"}},
		{name: "run --help", args: []string{"run", "--help"}, stdout: []string{"--path PATH", "--rm", "128+N"}},
		{name: "no command", args: nil, code: 2, stderr: []string{"Usage: cgsem"}, noStdout: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{})
			r := e.runIn(context.Background(), tc.args...)
			assert.Equal(t, tc.code, r.code)
			for _, s := range tc.stdout {
				assert.Contains(t, r.stdout, s)
			}
			for _, s := range tc.stderr {
				assert.Contains(t, r.stderr, s)
			}
			if tc.noStdout {
				assert.Empty(t, r.stdout)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	// Errors read "cgsem: COMMAND: driver: ..." with no doubled prefix.
	e := newEnv(t, fake.Options{})
	r := e.run("rm", "nope")
	require.Equal(t, exitNotExist, r.code)
	assert.Regexp(t, `^cgsem: rm: fake: [^\n]*nope[^\n]*\n$`, r.stderr)
	assert.NotContains(t, r.stderr, "cgsem: cgsem")
}

func TestDefaultRegistry(t *testing.T) {
	// main hands run the default registry, into which the fake registers
	// itself through main's import; this reads it and changes nothing.
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--driver", "fake", "drivers", "--json"}, func(string) string { return "" },
		strings.NewReader(""), &out, &errb, registry.Default)
	require.Equal(t, 0, code, "stderr: %s", errb.String())
	assert.Contains(t, out.String(), `"name": "fake"`)

	out.Reset()
	code = run(context.Background(), []string{"--driver", "fake", "run", "--path", "cgsem-test", "--rm", "--", "sh", "-c", "exit 6"},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb, registry.Default)
	assert.Equal(t, 6, code, "stderr: %s", errb.String())
}
