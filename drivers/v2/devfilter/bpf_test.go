package devfilter

import (
	"errors"
	"strings"
	"testing"

	"github.com/cgsem/cgsem/semantic"
	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestLoadErrorReads(t *testing.T) {
	longLog := strings.Repeat("0: (b7) r0 = 0\n", 20) + "R0 !read_ok\nprocessed 1 insns\n"
	tests := []struct {
		name         string
		err          *LoadError
		contains     []string
		lacks        []string
		kind         error
		notSupported bool
	}{
		{
			name:     "no permission",
			err:      &LoadError{Errno: unix.EPERM},
			contains: []string{"operation not permitted", "CAP_BPF", "RLIMIT_MEMLOCK"},
			kind:     semantic.ErrPermission,
		},
		{
			name:         "verifier refusal",
			err:          &LoadError{Errno: unix.EACCES, Log: longLog},
			contains:     []string{"permission denied: verifier log:", "...", "R0 !read_ok", "processed 1 insns"},
			lacks:        []string{strings.Repeat("0: (b7) r0 = 0\n", 8)},
			kind:         semantic.ErrNotSupported,
			notSupported: true,
		},
		{
			name: "refusal without a log",
			err:  &LoadError{Errno: unix.EINVAL},
			kind: semantic.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			for _, s := range tt.contains {
				assert.Contains(t, msg, s)
			}
			for _, s := range tt.lacks {
				assert.NotContains(t, msg, s, "the message keeps only the log's end")
			}
			assert.True(t, errors.Is(tt.err, tt.err.Errno))
			assert.Equal(t, tt.notSupported, errors.Is(tt.err, semantic.ErrNotSupported))
			assert.Equal(t, tt.kind, semantic.Classify(tt.err))
		})
	}
}
