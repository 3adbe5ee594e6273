package v2

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/statfile"
)

func TestParseIDs(t *testing.T) {
	tests := []struct {
		name, in string
		want     []int
		bad      bool
	}{
		{"Empty", "", []int{}, false},
		{"Lines", "12\n7\n", []int{12, 7}, false},
		// A task that lost its pid, or lives outside this pid namespace,
		// is listed as 0: nothing to name, and kill(0) would hit the
		// caller's own process group.
		{"ZeroSkipped", "12\n0\n7\n", []int{12, 7}, false},
		{"Negative", "-1\n", nil, true},
		{"NotANumber", "12\nx\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIDs([]byte(tt.in))
			if tt.bad {
				require.ErrorIs(t, err, statfile.ErrFormat)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
