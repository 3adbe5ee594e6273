package semantic_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestParseIOLimit(t *testing.T) {
	n := makeNodes(t)
	tests := []struct {
		name  string
		in    string
		want  semantic.IOLimit
		str   string
		kind  error
		why   string
		mknod bool
	}{
		{name: "read bytes and write IOs", in: "8:0:rbps=10M,wiops=100",
			want: semantic.IOLimit{Major: 8, Minor: 0, ReadBPS: 10 << 20, WriteIOPS: 100},
			str:  "8:0:rbps=10MiB,wbps=max,riops=max,wiops=100"},
		{name: "all four", in: "8:16:rbps=1048576,wbps=2G,riops=10,wiops=20",
			want: semantic.IOLimit{Major: 8, Minor: 16, ReadBPS: 1 << 20, WriteBPS: 2 << 30, ReadIOPS: 10, WriteIOPS: 20},
			str:  "8:16:rbps=1MiB,wbps=2GiB,riops=10,wiops=20"},
		{name: "max is no limit", in: "8:0:wbps=max,riops=max",
			want: semantic.IOLimit{Major: 8}, str: "8:0:rbps=max,wbps=max,riops=max,wiops=max"},
		{name: "zero is no limit", in: "8:0:rbps=0",
			want: semantic.IOLimit{Major: 8}, str: "8:0:rbps=max,wbps=max,riops=max,wiops=max"},
		{name: "infinity is no limit", in: "8:0:rbps=infinity",
			want: semantic.IOLimit{Major: 8}, str: "8:0:rbps=max,wbps=max,riops=max,wiops=max"},
		{name: "fraction of bytes", in: "259:1:rbps=1.5K",
			want: semantic.IOLimit{Major: 259, Minor: 1, ReadBPS: 1536}, str: "259:1:rbps=1536,wbps=max,riops=max,wiops=max"},
		{name: "block node", in: n.block + ":wbps=1G", mknod: true,
			want: semantic.IOLimit{Major: 7, Minor: 42, WriteBPS: 1 << 30}, str: "7:42:rbps=max,wbps=1GiB,riops=max,wiops=max"},

		{name: "no limits", in: "8:0", kind: semantic.ErrInvalid, why: "want DEVICE:KEY=VALUE"},
		{name: "no device", in: "rbps=1", kind: semantic.ErrInvalid, why: "missing DEVICE"},
		{name: "empty device", in: ":rbps=1", kind: semantic.ErrInvalid, why: "missing DEVICE"},
		{name: "major only", in: "8:rbps=1", kind: semantic.ErrInvalid, why: `device "8" is not MAJOR:MINOR`},
		{name: "wildcard device", in: "*:*:rbps=1", kind: semantic.ErrInvalid, why: "is not MAJOR:MINOR"},
		{name: "major out of range", in: "4096:0:rbps=1", kind: semantic.ErrInvalid, why: "is not MAJOR:MINOR"},
		{name: "signed major", in: "+8:0:rbps=1", kind: semantic.ErrInvalid, why: "is not MAJOR:MINOR"},
		{name: "key twice", in: "8:0:rbps=1,rbps=2", kind: semantic.ErrInvalid, why: "rbps given twice"},
		{name: "unknown key", in: "8:0:xbps=1", kind: semantic.ErrInvalid, why: `unknown key "xbps"`},
		{name: "ambiguous bytes", in: "8:0:rbps=5MB", kind: semantic.ErrInvalid, why: "ambiguous"},
		{name: "fractional IOs", in: "8:0:riops=1.5", kind: semantic.ErrInvalid, why: "whole number of IOs"},
		{name: "negative IOs", in: "8:0:wiops=-1", kind: semantic.ErrInvalid, why: "whole number of IOs"},
		{name: "IOs equal to Unlimited", in: "8:0:wiops=18446744073709551615", kind: semantic.ErrInvalid, why: "whole number of IOs"},
		{name: "empty value", in: "8:0:rbps=", kind: semantic.ErrInvalid, why: "want a number"},
		{name: "trailing comma", in: "8:0:rbps=1,", kind: semantic.ErrInvalid, why: `"" is not KEY=VALUE`},
		{name: "char node", in: "/dev/null:rbps=1", kind: semantic.ErrInvalid, why: `"/dev/null" is not a block device`},
		{name: "missing node", in: "/nonexistent-cgsem-test:rbps=1", kind: semantic.ErrNotExist, why: "stat device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mknod && n.block == "" {
				t.Skip("mknod is not permitted here (needs CAP_MKNOD)")
			}
			got, err := semantic.ParseIOLimit(tt.in)
			if tt.kind != nil {
				require.Error(t, err, "parsed as %+v", got)
				assert.ErrorIs(t, err, tt.kind)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.str, got.String())
			back, err := semantic.ParseIOLimit(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back)
			assert.NoError(t, (&semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{got}}}).Validate())
		})
	}
}

func TestParseHugeTLB(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.HugeTLBLimit
		why  string
	}{
		{"2MiB pages", "2MiB=1GiB", semantic.HugeTLBLimit{PageSize: 2 * semantic.MiB, Limit: semantic.GiB}, ""},
		{"short suffixes", "2M=512M", semantic.HugeTLBLimit{PageSize: 2 * semantic.MiB, Limit: 512 * semantic.MiB}, ""},
		{"unlimited", "1G=max", semantic.HugeTLBLimit{PageSize: semantic.GiB, Limit: semantic.Unlimited}, ""},
		{"zero limit", "1G=0", semantic.HugeTLBLimit{PageSize: semantic.GiB}, ""},
		{"smallest page", "64K=1M", semantic.HugeTLBLimit{PageSize: 64 * semantic.KiB, Limit: semantic.MiB}, ""},

		{"no limit given", "2MiB", semantic.HugeTLBLimit{}, "want PAGESIZE=LIMIT"},
		{"empty page size", "=1G", semantic.HugeTLBLimit{}, "want a number"},
		{"empty limit", "2M=", semantic.HugeTLBLimit{}, "want a number"},
		{"not a power of two", "3MiB=1G", semantic.HugeTLBLimit{}, "not a power of two"},
		{"page too small", "32K=1M", semantic.HugeTLBLimit{}, "of at least 64KiB"},
		{"zero page", "0=1M", semantic.HugeTLBLimit{}, "not a power of two"},
		{"max page", "max=1M", semantic.HugeTLBLimit{}, "not a power of two"},
		{"ambiguous limit", "2M=1GB", semantic.HugeTLBLimit{}, "ambiguous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseHugeTLB(tt.in)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
