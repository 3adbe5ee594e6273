package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// testEnv is one fake driver shared by every command a test runs, as
// though the fake's in-memory state outlived each cgsem process.
type testEnv struct {
	t   *testing.T
	drv *fake.Driver
	reg *registry.Registry
	env map[string]string

	mu       sync.Mutex
	lastOpts semantic.Options // what the CLI asked the registry for
}

func newEnv(t *testing.T, opts fake.Options) *testEnv {
	t.Helper()
	drv := fake.New(opts)
	t.Cleanup(func() { drv.Close() })
	e := &testEnv{t: t, drv: drv, env: map[string]string{}}
	e.reg = &registry.Registry{Getenv: e.getenv}
	e.reg.Register(registry.Registration{Name: fake.Name, New: func(o semantic.Options) (semantic.Driver, error) {
		e.mu.Lock()
		e.lastOpts = o
		e.mu.Unlock()
		return keepOpen{drv}, nil
	}})
	return e
}

func (e *testEnv) getenv(k string) string { return e.env[k] }

func (e *testEnv) opts() semantic.Options {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastOpts
}

// keepOpen lets the CLI close its driver after each command while the
// test keeps the shared fake (closed in the test's cleanup).
type keepOpen struct{ semantic.Driver }

func (keepOpen) Close() error { return nil }

type result struct {
	code           int
	stdout, stderr string
}

// run runs one cgsem command line with --driver fake.
func (e *testEnv) run(args ...string) result {
	e.t.Helper()
	return e.runIn(context.Background(), append([]string{"--driver", "fake"}, args...)...)
}

// runIn runs a command line as given, under ctx.
func (e *testEnv) runIn(ctx context.Context, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, e.getenv, strings.NewReader(""), &out, &errb, e.reg)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// must runs a command that has to succeed.
func (e *testEnv) must(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	require.Equal(e.t, 0, r.code, "cgsem %q: stderr: %s", args, r.stderr)
	return r.stdout
}

// group opens a group on the fake directly, bypassing the CLI.
func (e *testEnv) group(path string) semantic.Group {
	e.t.Helper()
	g, err := e.drv.Open(context.Background(), semantic.MustPath(path))
	require.NoError(e.t, err)
	return g
}

// resources reads a group's settings on the fake directly.
func (e *testEnv) resources(path string) *semantic.Resources {
	e.t.Helper()
	r, err := e.group(path).Resources(context.Background())
	require.NoError(e.t, err)
	return r
}

func (e *testEnv) exists(path string) bool {
	_, err := e.drv.Open(context.Background(), semantic.MustPath(path))
	return err == nil
}

func pageSize() semantic.Bytes { return semantic.Bytes(os.Getpagesize()) }

func ptr[T any](v T) *T { return &v }
