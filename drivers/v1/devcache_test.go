package v1

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// TestDevCache: the cache answers only for the list it compiled last,
// compares lists by value, keeps its own copy, and remembers no failure.
func TestDevCache(t *testing.T) {
	var dc devCache
	nullOnly := list(t, semantic.DenyByDefault, "c 1:3 rwm")
	first, err := dc.compile(nullOnly)
	require.NoError(t, err)
	sameAsReference(t, first.state, nullOnly)
	assert.Equal(t, transition(nil, first.state, false), first.fresh)

	again, err := dc.compile(list(t, semantic.DenyByDefault, "c 1:3 rwm"))
	require.NoError(t, err)
	assert.Same(t, first, again, "an equal list is served from the cache")

	// The caller's list changing afterwards is a new list, not the cached one.
	nullOnly.Rules[0].Access = semantic.Read
	changed, err := dc.compile(nullOnly)
	require.NoError(t, err)
	assert.NotSame(t, first, changed)
	sameAsReference(t, changed.state, nullOnly)

	for _, tt := range []struct {
		name string
		d    *semantic.Devices
	}{
		{"another default", list(t, semantic.AllowByDefault, "!c 1:3 rwm")},
		{"another rule", list(t, semantic.DenyByDefault, "c 1:5 rwm")},
		{"one more rule", list(t, semantic.DenyByDefault, "c 1:3 r", "c 1:5 rwm")},
		{"no rules", list(t, semantic.DenyByDefault)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dc.compile(tt.d)
			if err != nil {
				assert.ErrorIs(t, err, semantic.ErrNotSupported)
				return
			}
			sameAsReference(t, c.state, tt.d)
		})
	}

	unsupported := list(t, semantic.DenyByDefault, "c *:* rw", "!c 1:5 w")
	last, err := dc.compile(list(t, semantic.DenyByDefault))
	require.NoError(t, err)
	_, err = dc.compile(unsupported)
	require.ErrorIs(t, err, semantic.ErrNotSupported)
	_, err = dc.compile(unsupported)
	require.ErrorIs(t, err, semantic.ErrNotSupported, "a refusal is made again, not remembered as a success")
	kept, err := dc.compile(list(t, semantic.DenyByDefault))
	require.NoError(t, err)
	assert.Same(t, last, kept, "a refusal leaves the cache as it was")
}
