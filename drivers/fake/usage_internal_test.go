package fake

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name    string
		statm   string
		stat    string
		want    usage
		wantErr bool
	}{
		{
			name:  "plain",
			statm: "2069 210 190 5 0 86 0\n",
			stat:  "4242 (sleep) S 1 4242 4242 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 123 8474624 210 18446744073709551615\n",
			want:  usage{rss: 210 * 4096, user: 7, system: 3},
		},
		{
			name:  "command with spaces and parentheses",
			statm: "1 2 3 4 5 6 7",
			stat:  "17 (a) b (c) R 1 17 17 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 5 0 0",
			want:  usage{rss: 2 * 4096, user: 11, system: 22},
		},
		{name: "short statm", statm: "1", stat: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 1", wantErr: true},
		{name: "no command", statm: "1 2", stat: "1 x S", wantErr: true},
		{name: "short stat", statm: "1 2", stat: "1 (x) S 1 1", wantErr: true},
		{name: "bad number", statm: "1 z", stat: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUsage([]byte(tt.statm), []byte(tt.stat), 4096)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
