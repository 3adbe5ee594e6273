package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// sizeProgram is a trivial program that uses one library: create a group,
// set a limit, delete it, through the library's usual entry point.
type sizeProgram struct {
	name    string
	require string // go.mod require lines
	replace string // go.mod replace lines
	source  string
	// fallback, tried when source does not build (a driver mid-edit), with
	// the note saying what it leaves out.
	fallback, fallbackNote string
}

func sizePrograms(mainDir string) []sizeProgram {
	const cgsemMain = `package main

import (
	"context"
	"fmt"
	"os"

	_ "github.com/cgsem/cgsem/drivers/all"
%s
	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func main() {
	ctx := context.Background()
	d, _, err := registry.Default.Auto(semantic.Options{Root: semantic.RootSelf})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer d.Close()
	n := semantic.Count(100)
	g, err := d.Create(ctx, semantic.MustPath("size-probe"), &semantic.Resources{Pids: &semantic.Pids{Max: &n}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g.Delete(ctx, nil)
}
`
	drivers := "\t_ \"github.com/cgsem/cgsem/drivers/v1\"\n\t_ \"github.com/cgsem/cgsem/drivers/v2\"\n"
	return []sizeProgram{
		{
			name:         "cgsem (v1, v2, systemd drivers)",
			require:      "github.com/cgsem/cgsem v0.0.0-00010101000000-000000000000",
			replace:      "github.com/cgsem/cgsem => " + mainDir,
			source:       fmt.Sprintf(cgsemMain, drivers+"\t_ \"github.com/cgsem/cgsem/drivers/systemd\"\n"),
			fallback:     fmt.Sprintf(cgsemMain, drivers),
			fallbackNote: "the systemd driver did not build, so this is v1 and v2 only: ",
		},
		{
			name:    "opencontainers/cgroups v0.1.0 (fs, fs2, systemd managers)",
			require: "github.com/opencontainers/cgroups v0.1.0",
			source: `package main

import (
	"fmt"
	"os"

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/cgroups/manager"
)

func main() {
	n := int64(100)
	m, err := manager.New(&cgroups.Cgroup{Name: "size-probe", Resources: &cgroups.Resources{PidsLimit: &n}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := m.Apply(-1); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	m.Set(&cgroups.Resources{PidsLimit: &n})
	m.Destroy()
}
`,
		},
		{
			name:    "containerd/cgroups v3.1.3 (cgroup1, cgroup2)",
			require: "github.com/containerd/cgroups/v3 v3.1.3\n\tgithub.com/opencontainers/runtime-spec v1.3.0",
			source: `package main

import (
	"fmt"
	"os"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	n := int64(100)
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", "/size-probe", &cgroup2.Resources{Pids: &cgroup2.Pids{Max: n}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		m.Delete()
		return
	}
	c, err := cgroup1.New(cgroup1.StaticPath("/size-probe"), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &n}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c.Delete()
}
`,
		},
	}
}

// sizeResult is what one program measured.
type sizeResult struct {
	bin, stripped int64
	graph, linked int
	note          string
	err           error
}

// sizeWorkloads builds each program in a temporary module and reports its
// binary size and the modules it pulls in.
func sizeWorkloads(ctx context.Context, b *bench) []section {
	s := section{
		Title: "binary size and module graph",
		Desc:  "A trivial program per library (auto-detect, create a group with a pids limit, delete it), built in a temporary module with -trimpath.",
	}
	s.Table = [][]string{{"library", "binary", "stripped (-s -w)", "modules in graph (go list -m all)", "modules linked (go version -m)", "note"}}
	goBin, err := exec.LookPath("go")
	if err != nil {
		s.Notes = append(s.Notes, "error: no go command: "+err.Error())
		return []section{s}
	}
	sum, _ := os.ReadFile("go.sum") // seeds the temporary modules' go.sum: no network for what this module has
	var rs []sizeResult
	progs := sizePrograms(b.mainDir)
	for _, p := range progs {
		if ctx.Err() != nil {
			return []section{s}
		}
		r := buildSize(ctx, goBin, p, p.source, sum)
		if r.err != nil && p.fallback != "" {
			first := r.err
			r = buildSize(ctx, goBin, p, p.fallback, sum)
			r.note = p.fallbackNote + firstLine(first.Error())
		}
		rs = append(rs, r)
		if r.err != nil {
			s.Table = append(s.Table, []string{p.name, "-", "-", "-", "-", "error: " + r.err.Error()})
			continue
		}
		s.Table = append(s.Table, []string{p.name, fmtBytes(r.bin), fmtBytes(r.stripped), fmt.Sprint(r.graph), fmt.Sprint(r.linked), r.note})
	}
	// The target: a smaller binary and module graph than either peer.
	if len(rs) == 3 && rs[0].err == nil {
		for i, peer := range rs[1:] {
			if peer.err != nil {
				continue
			}
			name := progs[i+1].name
			if rs[0].stripped >= peer.stripped {
				s.Over = append(s.Over, fmt.Sprintf("cgsem binary %s is not smaller than %s's %s", fmtBytes(rs[0].stripped), name, fmtBytes(peer.stripped)))
			}
			if rs[0].graph >= peer.graph {
				s.Over = append(s.Over, fmt.Sprintf("cgsem module graph %d is not smaller than %s's %d", rs[0].graph, name, peer.graph))
			}
		}
		verdict := "ok: cgsem's binary and module graph are smaller than both peers'"
		if len(s.Over) > 0 {
			verdict = "**OVER**: " + strings.Join(s.Over, "; ")
		}
		s.Notes = append(s.Notes, "budget (smaller binary and module graph than either peer): "+verdict)
	}
	s.Notes = append(s.Notes, "modules in graph counts every module go list -m all names but the program's own; modules linked counts the dep lines of go version -m, what the binary contains")
	b.progress(s)
	return []section{s}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

func buildSize(ctx context.Context, goBin string, p sizeProgram, source string, sum []byte) sizeResult {
	dir, err := os.MkdirTemp("", "cgsem-bench-size-")
	if err != nil {
		return sizeResult{err: err}
	}
	defer os.RemoveAll(dir)
	mod := "module sizeprobe\n\ngo 1.26\n\nrequire (\n\t" + p.require + "\n)\n"
	if p.replace != "" {
		mod += "\nreplace " + p.replace + "\n"
	}
	for name, content := range map[string][]byte{"go.mod": []byte(mod), "main.go": []byte(source), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return sizeResult{err: err}
		}
	}
	goCmd := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	if _, err := goCmd("mod", "tidy"); err != nil {
		return sizeResult{err: err}
	}
	var r sizeResult
	bin, stripped := filepath.Join(dir, "probe"), filepath.Join(dir, "probe-stripped")
	if _, err := goCmd("build", "-trimpath", "-o", bin, "."); err != nil {
		return sizeResult{err: err}
	}
	if _, err := goCmd("build", "-trimpath", "-ldflags=-s -w", "-o", stripped, "."); err != nil {
		return sizeResult{err: err}
	}
	for _, f := range []struct {
		path string
		n    *int64
	}{{bin, &r.bin}, {stripped, &r.stripped}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return sizeResult{err: err}
		}
		*f.n = st.Size()
	}
	out, err := goCmd("list", "-m", "all")
	if err != nil {
		return sizeResult{err: err}
	}
	r.graph = len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1
	out, err = goCmd("version", "-m", bin)
	if err != nil {
		return sizeResult{err: err}
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "dep") {
			r.linked++
		}
	}
	return r
}
