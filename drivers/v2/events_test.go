package v2

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestDiffEvents(t *testing.T) {
	kinds := func(evs []semantic.Event) []string {
		var out []string
		for _, e := range evs {
			s := e.Kind.String()
			if e.Count != 0 {
				s += "=" + string(rune('0'+e.Count))
			}
			out = append(out, s)
		}
		return out
	}
	for _, c := range []struct {
		name       string
		prev, next eventState
		want       []string
	}{
		{name: "NoChange", prev: eventState{populated: true}, next: eventState{populated: true}},
		{name: "Populated", next: eventState{populated: true}, want: []string{"populated"}},
		{name: "Empty", prev: eventState{populated: true}, want: []string{"empty"}},
		{name: "Frozen", prev: eventState{populated: true}, next: eventState{populated: true, frozen: true}, want: []string{"frozen"}},
		{name: "Thawed", prev: eventState{frozen: true}, want: []string{"thawed"}},
		{name: "OOMKill", prev: eventState{memory: true, populated: true, oom: 1}, next: eventState{memory: true, oom: 2, oomKill: 1},
			want: []string{"oom=2", "oom_kill=1", "empty"}},
		{name: "OOMWithoutKill", prev: eventState{memory: true}, next: eventState{memory: true, oom: 1}, want: []string{"oom=1"}},
		{name: "CountsBeforeTheWatchAreNotNews", prev: eventState{}, next: eventState{memory: true, oom: 3, oomKill: 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, kinds(diffEvents(c.prev, c.next)))
		})
	}
}
