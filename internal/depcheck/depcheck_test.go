package depcheck

import (
	"testing"
)

func TestModuleImportDirection(t *testing.T) {
	vs, err := Check("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Error(v)
	}
}

func TestAllowed(t *testing.T) {
	cases := []struct {
		name, file, imp string
		ok              bool
	}{
		{"semantic stdlib", "semantic/path.go", "strings", true},
		{"semantic ours", "semantic/path.go", Module + "/registry", false},
		{"registry semantic", "registry/registry.go", Module + "/semantic", true},
		{"registry driver", "registry/registry.go", Module + "/drivers/v1", false},
		{"conformance internal", "conformance/run.go", Module + "/internal/cgroupfs", false},
		{"internal semantic", "internal/cgroupfs/fs.go", Module + "/semantic", true},
		{"internal registry", "internal/cgroupfs/fs.go", Module + "/registry", false},
		{"driver registry in register.go", "drivers/v1/register.go", Module + "/registry", true},
		{"driver registry elsewhere", "drivers/v1/driver.go", Module + "/registry", false},
		{"driver own subpackage", "drivers/v2/driver.go", Module + "/drivers/v2/devfilter", true},
		{"driver other driver", "drivers/v2/driver.go", Module + "/drivers/v1", false},
		{"driver internal", "drivers/v2/driver.go", Module + "/internal/cgroupfs", true},
		{"all real driver", "drivers/all/all.go", Module + "/drivers/v1", true},
		{"all fake", "drivers/all/all.go", Module + "/drivers/fake", false},
		{"cmd fake", "cmd/cgsem/main.go", Module + "/drivers/fake", true},
		{"other driver import", "examples/x.go", Module + "/drivers/v1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Allowed(c.file, c.imp)
			if (got == "") != c.ok {
				t.Errorf("Allowed(%q, %q) = %q, want ok=%v", c.file, c.imp, got, c.ok)
			}
		})
	}
}
