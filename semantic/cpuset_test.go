package semantic_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestParseCPUSet(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want semantic.CPUSet
		str  string // canonical String of the result
		why  string
	}{
		{"empty", "", semantic.CPUSet{}, "", ""},
		{"kernel's empty line", "\n", semantic.CPUSet{}, "", ""},
		{"single", "3", semantic.CPUSet{3}, "3", ""},
		{"range and single", "0-3,7", semantic.CPUSet{0, 1, 2, 3, 7}, "0-3,7", ""},
		{"kernel newline", "0-3,7\n", semantic.CPUSet{0, 1, 2, 3, 7}, "0-3,7", ""},
		{"unsorted", "7,0-1", semantic.CPUSet{0, 1, 7}, "0-1,7", ""},
		{"duplicates", "1,1,0-2", semantic.CPUSet{0, 1, 2}, "0-2", ""},
		{"adjacent singles merge", "0,1,2,4", semantic.CPUSet{0, 1, 2, 4}, "0-2,4", ""},
		{"one-element range", "5-5", semantic.CPUSet{5}, "5", ""},
		{"two-element range", "5-6", semantic.CPUSet{5, 6}, "5-6", ""},
		{"largest id", "8191", semantic.CPUSet{8191}, "8191", ""},

		{"backwards", "3-1", nil, "", "runs backwards"},
		{"too big", "8192", nil, "", "not a number 0..8191"},
		{"negative", "-1", nil, "", "not a number"},
		{"minus zero", "0--0", nil, "", `"-0" is not a number`},
		{"plus", "+1", nil, "", "not a number"},
		{"leading zero", "01", nil, "", "not a number"},
		{"empty element", "1,,2", nil, "", "not a number"},
		{"trailing comma", "1,", nil, "", "not a number"},
		{"open range", "1-", nil, "", "not a number"},
		{"space inside", "1, 2", nil, "", "not a number"},
		{"letters", "a-b", nil, "", "not a number"},
		{"double range", "1-2-3", nil, "", "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := semantic.ParseCPUSet(tt.in)
			if tt.why != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, semantic.ErrInvalid)
				assert.Contains(t, err.Error(), tt.why)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.NoError(t, got.Validate())
			assert.Equal(t, tt.str, got.String())
			back, err := semantic.ParseCPUSet(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back)
		})
	}
}

func TestCPUSetValidate(t *testing.T) {
	tests := []struct {
		name string
		set  semantic.CPUSet
		ok   bool
	}{
		{"nil", nil, true},
		{"sorted", semantic.CPUSet{0, 2, 5}, true},
		{"unsorted", semantic.CPUSet{2, 0}, false},
		{"duplicate", semantic.CPUSet{1, 1}, false},
		{"negative", semantic.CPUSet{-1}, false},
		{"too big", semantic.CPUSet{semantic.MaxCPUSetID + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.set.Validate()
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, semantic.ErrInvalid)
			}
		})
	}
}

func TestCPUSetJSON(t *testing.T) {
	set := semantic.CPUSet{0, 1, 2, 3, 7}
	out, err := json.Marshal(set)
	require.NoError(t, err)
	assert.Equal(t, `"0-3,7"`, string(out))
	var back semantic.CPUSet
	require.NoError(t, json.Unmarshal(out, &back))
	assert.Equal(t, set, back)
	assert.ErrorIs(t, json.Unmarshal([]byte(`"3-1"`), &back), semantic.ErrInvalid)
	assert.Error(t, json.Unmarshal([]byte(`[0,1]`), &back), "the list format is a string")
}
