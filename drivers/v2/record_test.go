package v2

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestDevicesRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		devs semantic.Devices
	}{
		{"DenyNoRules", semantic.Devices{Default: semantic.DenyByDefault}},
		{"AllowWithDenies", semantic.Devices{Default: semantic.AllowByDefault, Rules: []semantic.DeviceRule{
			{Allow: false, Type: semantic.BlockDevice, Major: semantic.Wildcard, Minor: semantic.Wildcard, Access: semantic.Write},
		}}},
		{"Mixed", semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{
			{Allow: true, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.AllAccess},
			{Allow: true, Type: semantic.CharDevice, Major: 136, Minor: semantic.Wildcard, Access: semantic.Read | semantic.Write},
			{Allow: false, Type: semantic.CharDevice, Major: 1, Minor: 3, Access: semantic.Mknod},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := devicesRecord{Program: 4294967295, Devices: &tt.devs}
			out, err := parseRecord(in.marshal())
			require.NoError(t, err)
			require.Equal(t, in.Program, out.Program)
			require.Equal(t, tt.devs, *out.Devices)
		})
	}
}

func TestDevicesRecordRefusals(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"Empty", "", "too short"},
		{"NoProgram", "prog 1\ndefault deny\n", "want \"program ID\""},
		{"BadID", "program -1\ndefault deny\n", "program id"},
		{"IDOverflow", "program 4294967296\ndefault deny\n", "program id"},
		{"NoDefault", "program 1\nallow c 1:3 rwm\n", "want \"default POLICY\""},
		{"BadDefault", "program 1\ndefault maybe\n", "device default"},
		{"NodePath", "program 1\ndefault deny\nallow /dev/null\n", "want \"allow|deny"},
		{"BadVerb", "program 1\ndefault deny\npermit c 1:3 rwm\n", "want \"allow|deny"},
		{"BadRule", "program 1\ndefault deny\nallow c 1:3 rwx\n", "rwx"},
		{"JSON", `{"program":1,"devices":{"default":"deny"}}`, "too short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRecord([]byte(tt.text))
			require.ErrorContains(t, err, tt.want)
		})
	}
}
