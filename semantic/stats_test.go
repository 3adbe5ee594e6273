package semantic_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestEventKind(t *testing.T) {
	tests := []struct {
		kind semantic.EventKind
		name string
	}{
		{semantic.EventOOM, "oom"},
		{semantic.EventOOMKill, "oom_kill"},
		{semantic.EventPopulated, "populated"},
		{semantic.EventEmpty, "empty"},
		{semantic.EventFrozen, "frozen"},
		{semantic.EventThawed, "thawed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.name, tt.kind.String())
			var back semantic.EventKind
			require.NoError(t, back.UnmarshalText([]byte(tt.name)))
			assert.Equal(t, tt.kind, back)
		})
	}
	assert.Equal(t, "event(99)", semantic.EventKind(99).String())
	var k semantic.EventKind
	assert.ErrorIs(t, k.UnmarshalText([]byte("boom")), semantic.ErrInvalid)
}

func TestEventJSON(t *testing.T) {
	ev := semantic.Event{Kind: semantic.EventOOMKill, Group: semantic.MustPath("a/b"),
		Time: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Count: 2}
	assert.Equal(t, "2025-01-02T03:04:05.000000006Z a/b oom_kill count=2", ev.String())
	out, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.JSONEq(t, `{"kind":"oom_kill","group":"a/b","time":"2025-01-02T03:04:05.000000006Z","count":2}`, string(out))
	var back semantic.Event
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, ev.Kind, back.Kind)
	assert.True(t, ev.Group.Equal(back.Group))
	assert.True(t, ev.Time.Equal(back.Time))
	assert.Equal(t, ev.Count, back.Count)
}

func TestStatsAbsentIsNotZero(t *testing.T) {
	zero := uint64(0)
	s := semantic.Stats{Memory: &semantic.MemoryStats{Usage: &zero}}
	out, err := json.Marshal(s)
	require.NoError(t, err)
	assert.JSONEq(t, `{"memory":{"usage":0}}`, string(out), "a measured 0 is written; absent figures are left out")
}
