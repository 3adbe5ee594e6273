package semantic_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.Bytes
		why  string // substring of the error; "" when valid
	}{
		{"plain bytes", "4096", 4096, ""},
		{"zero", "0", 0, ""},
		{"B suffix", "4096B", 4096, ""},
		{"MiB", "512MiB", 512 * semantic.MiB, ""},
		{"M is binary", "512M", 512 * semantic.MiB, ""},
		{"lower m is binary", "512m", 512 * semantic.MiB, ""},
		{"K", "4K", 4096, ""},
		{"k", "4k", 4096, ""},
		{"KiB", "4KiB", 4096, ""},
		{"G fraction", "1.5G", 3 * semantic.GiB / 2, ""},
		{"GiB fraction", "1.5GiB", 1610612736, ""},
		{"T", "2T", 2 * semantic.TiB, ""},
		{"P", "1P", semantic.PiB, ""},
		{"E", "15E", 15 * semantic.EiB, ""},
		{"leading zeros", "007K", 7 * semantic.KiB, ""},
		{"fraction truncates to a byte", "1.0001K", 1024, ""},
		{"fraction of a byte truncates", "0.5", 0, ""},
		{"fraction past 18 digits is cut", "1.9999999999999999999999K", 2047, ""},
		{"fraction up to just below 2^64", "15.99999999999999999999E", semantic.Unlimited - 1, ""},
		{"max", "max", semantic.Unlimited, ""},
		{"infinity", "infinity", semantic.Unlimited, ""},
		{"largest limited", "18446744073709551614", semantic.Unlimited - 1, ""},

		{"empty", "", 0, "want a number"},
		{"negative", "-1", 0, "want a number"},
		{"plus sign", "+1", 0, "want a number"},
		{"leading space", " 1G", 0, "want a number"},
		{"trailing space", "1G ", 0, `unknown suffix "G "`},
		{"space before suffix", "1 G", 0, `unknown suffix " G"`},
		{"MB ambiguous", "512MB", 0, `suffix "MB" is ambiguous`},
		{"kb ambiguous", "4kb", 0, `suffix "kb" is ambiguous`},
		{"GB ambiguous", "1GB", 0, "use G or GiB"},
		{"bad suffix", "5X", 0, `unknown suffix "X"`},
		{"iB alone", "5iB", 0, `unknown suffix "iB"`},
		{"Kib", "5Kib", 0, `unknown suffix "Kib"`},
		{"exponent", "1e9", 0, `unknown suffix "e9"`},
		{"hex", "0x10", 0, `unknown suffix "x10"`},
		{"MAX upper case", "MAX", 0, "want a number"},
		{"suffix only", "G", 0, "want a number"},
		{"dot only", ".", 0, "not a decimal number"},
		{"no integer part", ".5G", 0, "not a decimal number"},
		{"no fraction digits", "1.G", 0, "not a decimal number"},
		{"two dots", "1.2.3", 0, "not a decimal number"},
		{"overflow digits", "18446744073709551616", 0, "out of range"},
		{"overflow by suffix", "16E", 0, "out of range"},
		{"fraction reaching Unlimited", "16383.999999999999999999P", 0, "too large"},
		{"overflow of huge G", "17179869184G", 0, "out of range"},
		{"exactly Unlimited", "18446744073709551615", 0, `too large (use "max"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseBytes(tt.in)
			if tt.why != "" {
				require.Error(t, err, "parsed as %d", got)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestBytesString(t *testing.T) {
	tests := []struct {
		name   string
		in     semantic.Bytes
		want   string
		kernel string
	}{
		{"zero", 0, "0", "0"},
		{"odd", 4097, "4097", "4097"},
		{"below KiB", 1000, "1000", "1000"},
		{"KiB", 4096, "4KiB", "4096"},
		{"MiB", 512 * semantic.MiB, "512MiB", "536870912"},
		{"not a whole GiB", 3 * semantic.GiB / 2, "1536MiB", "1610612736"},
		{"EiB", 8 * semantic.EiB, "8EiB", "9223372036854775808"},
		{"max", semantic.Unlimited, "max", "max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.in.String())
			assert.Equal(t, tt.kernel, tt.in.KernelString())
			back, err := semantic.ParseBytes(tt.in.String())
			require.NoError(t, err)
			assert.Equal(t, tt.in, back)
			back, err = semantic.ParseBytes(tt.in.KernelString())
			require.NoError(t, err)
			assert.Equal(t, tt.in, back)
		})
	}
}

func TestBytesJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.Bytes
		out  string // what Marshal writes back
		bad  bool
	}{
		{"number", `4096`, 4096, `4096`, false},
		{"max string", `"max"`, semantic.Unlimited, `"max"`, false},
		{"suffix string", `"512MiB"`, 512 * semantic.MiB, `536870912`, false},
		{"largest number is max", `18446744073709551615`, semantic.Unlimited, `"max"`, false},
		{"negative", `-1`, 0, "", true},
		{"fraction number", `1.5`, 0, "", true},
		{"bad string", `"5MB"`, 0, "", true},
		{"bool", `true`, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := semantic.Bytes(77)
			err := json.Unmarshal([]byte(tt.in), &b)
			if tt.bad {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Equal(t, semantic.Bytes(77), b, "a failed decode must leave the value")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, b)
			out, err := json.Marshal(b)
			require.NoError(t, err)
			assert.Equal(t, tt.out, string(out))
		})
	}
	t.Run("null leaves the value", func(t *testing.T) {
		v := struct{ B semantic.Bytes }{B: 77}
		require.NoError(t, json.Unmarshal([]byte(`{"B":null}`), &v))
		assert.Equal(t, semantic.Bytes(77), v.B)
	})
}

func TestParseCount(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.Count
		bad  bool
	}{
		{"zero", "0", 0, false},
		{"number", "100", 100, false},
		{"max", "max", semantic.Unlimited, false},
		{"largest limited", "18446744073709551614", semantic.Unlimited - 1, false},
		{"empty", "", 0, true},
		{"negative", "-1", 0, true},
		{"plus", "+1", 0, true},
		{"suffix", "1K", 0, true},
		{"fraction", "1.5", 0, true},
		{"space", " 1", 0, true},
		{"exactly Unlimited", "18446744073709551615", 0, true},
		{"overflow", "18446744073709551616", 0, true},
		{"Max", "Max", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseCount(tt.in)
			if tt.bad {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			back, err := semantic.ParseCount(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back)
		})
	}
}

func TestCountJSON(t *testing.T) {
	tests := []struct {
		name, in, out string
		want          semantic.Count
	}{
		{"number", `12`, `12`, 12},
		{"max", `"max"`, `"max"`, semantic.Unlimited},
		{"string number", `"12"`, `12`, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c semantic.Count
			require.NoError(t, json.Unmarshal([]byte(tt.in), &c))
			assert.Equal(t, tt.want, c)
			out, err := json.Marshal(c)
			require.NoError(t, err)
			assert.Equal(t, tt.out, string(out))
		})
	}
	var c semantic.Count
	assert.ErrorIs(t, json.Unmarshal([]byte(`"lots"`), &c), semantic.ErrInvalid)
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want float64
		why  string
	}{
		{"one and a half", "1.5", 1.5, ""},
		{"whole", "4", 4, ""},
		{"fraction", "0.2", 0.2, ""},
		{"no integer part", ".5", 0.5, ""},
		{"smallest", "0.001", 0.001, ""},
		{"six decimals", "1.000001", 1.000001, ""},
		{"largest", "1048576", semantic.MaxCPUs, ""},
		{"max is no cap", "max", 0, ""},

		{"zero", "0", 0, "out of range"},
		{"below smallest", "0.0009", 0, "out of range"},
		{"above largest", "1048577", 0, "out of range"},
		{"seven decimals", "1.0000001", 0, "more than 6 decimals"},
		{"negative", "-1", 0, "want a number of CPUs"},
		{"empty", "", 0, "want a number of CPUs"},
		{"suffix", "2c", 0, "want a number of CPUs"},
		{"percent", "50%", 0, "want a number of CPUs"},
		{"exponent", "1e2", 0, "want a number of CPUs"},
		{"space", " 1", 0, "want a number of CPUs"},
		{"two dots", "1.2.3", 0, "not a number"},
		{"dot alone", ".", 0, "not a number"},
		{"infinity", "inf", 0, "want a number of CPUs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseCPUs(tt.in)
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
