package semantic_test

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"

	"github.com/cgsem/cgsem/semantic"
)

func TestNamedLogger(t *testing.T) {
	// No logger: a null logger, never the global one.
	l := semantic.Options{}.NamedLogger("v2")
	assert.NotNil(t, l)
	l.Error("dropped")

	var out bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Name: "app", Output: &out, Level: hclog.Trace})
	semantic.Options{Logger: base}.NamedLogger("v2").Trace("write", "file", "memory.max")
	assert.Contains(t, out.String(), "app.v2: write: file=memory.max")
}

func TestPlanString(t *testing.T) {
	p := &semantic.Plan{Steps: []semantic.PlanStep{
		{Action: "mkdir", Target: "a/b"},
		{Action: "write", Target: "a/b/memory.max", Value: "536870912", Feature: semantic.MemoryMax},
	}}
	assert.Equal(t, "mkdir a/b\nwrite a/b/memory.max 536870912\n", p.String())
}

func TestDeviceTypeString(t *testing.T) {
	assert.Equal(t, "a", semantic.AnyDevice.String())
	assert.Equal(t, "b", semantic.BlockDevice.String())
	assert.Equal(t, "c", semantic.CharDevice.String())
}
