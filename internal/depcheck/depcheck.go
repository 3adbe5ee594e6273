// Package depcheck enforces cgsem's import direction (DESIGN.md, "Layout
// and import direction") over the module's source files. Its test is part
// of `make test` and `make lint`, so a wrong-way import fails the build.
//
// The rules, for non-test files:
//   - semantic imports nothing of ours;
//   - registry and conformance import only semantic;
//   - internal/... imports only semantic and internal/...;
//   - a driver (drivers/NAME/...) imports semantic, internal/... and its own
//     subpackages, and registry only from its register.go;
//   - drivers/all imports drivers (not fake) and nothing else of ours;
//   - nothing else imports a driver except cmd/..., test/... and tests.
//
// Test files may import drivers, registry and conformance.
package depcheck

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Module is the module path the rules speak of.
const Module = "github.com/cgsem/cgsem"

// Violation is one import that breaks a rule.
type Violation struct {
	File   string
	Import string
	Rule   string
}

func (v Violation) String() string { return fmt.Sprintf("%s imports %s: %s", v.File, v.Import, v.Rule) }

// Check walks the module rooted at dir and returns every violation.
// Directories holding their own go.mod (separate modules such as bench/)
// and testdata are skipped.
func Check(dir string) ([]Violation, error) {
	var out []Violation
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir {
				name := d.Name()
				if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rule := Allowed(rel, p); rule != "" {
				out = append(out, Violation{File: rel, Import: p, Rule: rule})
			}
		}
		return nil
	})
	return out, err
}

// Allowed returns "" when the non-test file at rel (slash-separated,
// relative to the module root) may import path, or the rule it breaks.
func Allowed(rel, path string) string {
	if path != Module && !strings.HasPrefix(path, Module+"/") {
		return ""
	}
	imp := strings.TrimPrefix(strings.TrimPrefix(path, Module), "/")
	pkg := filepath.ToSlash(filepath.Dir(rel))
	under := func(p, root string) bool { return p == root || strings.HasPrefix(p, root+"/") }
	switch {
	case under(pkg, "semantic"):
		return "semantic imports nothing of ours"
	case under(pkg, "registry"), under(pkg, "conformance"):
		if imp != "semantic" {
			return pkg + " imports only semantic"
		}
	case under(pkg, "internal"):
		if imp != "semantic" && !under(imp, "internal") {
			return "internal packages import only semantic and internal"
		}
	case pkg == "drivers/all":
		if !under(imp, "drivers") || under(imp, "drivers/fake") {
			return "drivers/all blank-imports the real drivers only"
		}
	case under(pkg, "drivers"):
		own := strings.Join(strings.SplitN(pkg, "/", 3)[:2], "/")
		switch {
		case imp == "semantic", under(imp, "internal"), under(imp, own):
		case imp == "registry" && filepath.Base(rel) == "register.go":
		case imp == "registry":
			return "a driver imports registry only from register.go"
		default:
			return "a driver imports semantic, internal and its own packages only"
		}
	case under(pkg, "cmd"), under(pkg, "test"):
	default:
		if under(imp, "drivers") {
			return "nothing imports a driver but drivers/all, cmd, tests and examples"
		}
	}
	return ""
}
