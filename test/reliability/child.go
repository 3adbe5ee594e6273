package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// childEnv carries a childSpec to a re-executed test binary.
const childEnv = "CGSEM_RELIABILITY_CHILD"

// resultMarker starts the one stdout line a child reports on.
const resultMarker = "cgsem-reliability-result "

// childSpec tells a child which scenario to run on which root.
type childSpec struct {
	Scenario string            `json:"scenario"`
	Root     string            `json:"root"`
	Settings map[string]string `json:"settings,omitempty"`
	// Args are the scenario's own parameters.
	Args map[string]string `json:"args,omitempty"`
}

func (s childSpec) options() semantic.Options {
	return semantic.Options{Root: s.Root, Settings: s.Settings}
}

// outcome is one call a child made: its name, and its error's text and
// kind ("ok" for none).
type outcome struct {
	Call  string `json:"call"`
	Kind  string `json:"kind"`
	Err   string `json:"err,omitempty"`
	Value string `json:"value,omitempty"`
}

func outcomeOf(call string, err error) outcome {
	o := outcome{Call: call, Kind: kindOf(err)}
	if err != nil {
		o.Err = err.Error()
	}
	return o
}

// asChild reports whether this process is a child of one of the checks,
// and if so runs the scenario it was started for, reports, and exits
// without running cleanups (a child that dies untidily is the point of
// Restart). Every check calls it first, before any gate: the child may
// run without the privileges the gates ask for.
func asChild(t *testing.T, tg Target) bool {
	raw, ok := os.LookupEnv(childEnv)
	if !ok {
		return false
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "reliability child: bad %s: %v\n", childEnv, err)
		os.Exit(2)
	}
	run := scenario(spec.Scenario)
	if run == nil {
		fmt.Fprintf(os.Stderr, "reliability child: no scenario %q\n", spec.Scenario)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	outs, err := run(ctx, &tg, spec)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reliability child %s: %v\n", spec.Scenario, err)
		os.Exit(1)
	}
	b, _ := json.Marshal(outs)
	fmt.Printf("%s%s\n", resultMarker, b)
	os.Exit(0)
	return true
}

// scenario returns a child side by name. A scenario returns the calls it
// made; an error means it could not even set up.
func scenario(name string) func(ctx context.Context, tg *Target, spec childSpec) ([]outcome, error) {
	switch name {
	case "restart":
		return restartChild
	case "symlinks":
		return symlinksChild
	case "denied":
		return deniedChild
	case "delegated":
		return delegatedChild
	}
	return nil
}

// runPattern is a -test.run pattern matching exactly t's top-level test:
// the child dispatches on childEnv there, before any subtest.
func runPattern(t *testing.T) string {
	top, _, _ := strings.Cut(t.Name(), "/")
	return "^" + regexp.QuoteMeta(top) + "$"
}

// childOpts are how a child is started.
type childOpts struct {
	exe  string               // the binary; "" is this test binary
	attr *syscall.SysProcAttr // credentials, namespaces
}

// runChild re-executes the test binary as a child running spec and
// returns what it reported. The test fails if the child does not report.
func runChild(t *testing.T, spec childSpec, co childOpts) []outcome {
	t.Helper()
	exe := co.exe
	if exe == "" {
		var err error
		exe, err = os.Executable()
		require.NoError(t, err)
	}
	raw, err := json.Marshal(spec)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run="+runPattern(t), "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Dir = "/"
	cmd.SysProcAttr = co.attr
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	for line := range strings.Lines(stdout.String()) {
		if rest, ok := strings.CutPrefix(line, resultMarker); ok {
			var outs []outcome
			require.NoError(t, json.Unmarshal([]byte(rest), &outs), "child report %q", rest)
			for _, o := range outs {
				t.Logf("child %s: %s -> %s %s %s", spec.Scenario, o.Call, o.Kind, o.Err, o.Value)
			}
			return outs
		}
	}
	t.Fatalf("child %s reported nothing (%v)\nstdout:\n%s\nstderr:\n%s", spec.Scenario, err, stdout.String(), stderr.String())
	return nil
}

// byCall indexes outcomes by call name.
func byCall(outs []outcome) map[string]outcome {
	m := map[string]outcome{}
	for _, o := range outs {
		m[o.Call] = o
	}
	return m
}

// publicCopy copies this test binary into a directory everyone can reach,
// for a child that runs as another user (go test builds in a private
// directory).
func publicCopy(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "cgsem-test-bin-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	dst := filepath.Join(dir, filepath.Base(exe))
	src, err := os.Open(exe)
	require.NoError(t, err)
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, src)
	require.NoError(t, errors.Join(err, out.Close()))
	return dst
}
