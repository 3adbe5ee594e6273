package fake_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func TestTraceEveryChange(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Trace, Output: &buf, JSONFormat: true})
	d := newDriver(t, fake.Options{Options: semantic.Options{Logger: log}})
	_, err := d.Create(t.Context(), semantic.MustPath("a/b"), &semantic.Resources{
		Memory: &semantic.Memory{Max: new(semantic.MiB)},
		Pids:   &semantic.Pids{Max: new(semantic.Count(4))},
	})
	require.NoError(t, err)
	type entry struct {
		Level   string `json:"@level"`
		Module  string `json:"@module"`
		Message string `json:"@message"`
		Group   string `json:"group"`
		Value   string `json:"value"`
	}
	var got []entry
	for line := range strings.Lines(buf.String()) {
		var e entry
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		got = append(got, e)
	}
	require.Equal(t, []entry{
		{"trace", "test.fake", "mkdir", "a", ""},
		{"trace", "test.fake", "mkdir", "a/b", ""},
		{"trace", "test.fake", "set memory.max", "a/b", "1048576"},
		{"trace", "test.fake", "set pids.max", "a/b", "4"},
	}, got)
}
