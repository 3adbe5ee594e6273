//go:build linux

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestMountFlags(t *testing.T) {
	cases := []struct {
		name      string
		options   string
		wantFlags uintptr
		wantData  string
	}{
		{name: "none", options: ""},
		{name: "rw is no flag", options: "rw"},
		{name: "ro", options: "ro", wantFlags: unix.MS_RDONLY},
		{name: "flags and filesystem data", options: "ro,noatime,errors=remount-ro,nosuid", wantFlags: unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NOSUID, wantData: "errors=remount-ro"},
		{name: "data only", options: "noinit_itable,commit=60", wantData: "noinit_itable,commit=60"},
		{name: "defaults and empty items dropped", options: "defaults,,nodev,noexec", wantFlags: unix.MS_NODEV | unix.MS_NOEXEC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags, data := mountFlags(tc.options)
			assert.Equal(t, tc.wantFlags, flags)
			assert.Equal(t, tc.wantData, data)
		})
	}
}
