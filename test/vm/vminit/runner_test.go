//go:build linux

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsUnitName(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want bool
	}{
		{name: "scope", in: "cgsem-test-0123456789ab.scope", want: true},
		{name: "slice", in: "libvirt-lxc.slice", want: true},
		{name: "service", in: "cgsem-vmtest.service", want: true},
		{name: "group a program made", in: "cgsem-test-sub", want: false},
		{name: "runner's leaf", in: "test-01", want: false},
		{name: "suffix alone", in: ".scope", want: false},
		{name: "suffix inside the name", in: "a.scope.d", want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isUnitName(tc.in))
		})
	}
}
