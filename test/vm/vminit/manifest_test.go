//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseManifest(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    *manifest
		wantErr string
	}{
		{
			name: "two runs with args and env",
			in: "controllers all\nmodule /modules/brd.ko rd_nr=1 rd_size=16384\n" +
				"run /test/bin/01-a.test\narg -test.v\narg -test.run=Test A B\nenv X=1\ndir /test/pkg/01\n" +
				"# comment\n\nrun /test/bin/02-b.test\n",
			want: &manifest{
				modules: []module{{path: "/modules/brd.ko", params: "rd_nr=1 rd_size=16384"}},
				runs: []testRun{
					{path: "/test/bin/01-a.test", args: []string{"-test.v", "-test.run=Test A B"}, env: []string{"X=1"}, dir: "/test/pkg/01"},
					{path: "/test/bin/02-b.test"},
				},
			},
		},
		{
			name: "no controllers",
			in:   "controllers none\nrun /t\n",
			want: &manifest{controllers: []string{}, runs: []testRun{{path: "/t"}}},
		},
		{
			name: "listed controllers",
			in:   "controllers memory pids\nrun /t\n",
			want: &manifest{controllers: []string{"memory", "pids"}, runs: []testRun{{path: "/t"}}},
		},
		{name: "empty argument kept", in: "run /t\narg \n", want: &manifest{runs: []testRun{{path: "/t", args: []string{""}}}}},
		{name: "arg before run", in: "arg -test.v\nrun /t\n", wantErr: "line 1: arg before any run"},
		{name: "env without value", in: "run /t\nenv X\n", wantErr: "line 2: env"},
		{name: "unknown directive", in: "rnu /t\n", wantErr: `unknown directive "rnu"`},
		{name: "no binary", in: "controllers all\n", wantErr: "names no test binary"},
		{name: "bare controllers", in: "controllers\nrun /t\n", wantErr: "line 1: controllers needs"},
		{
			name: "switch to a systemd root with a test disk",
			in: "module /modules/virtio_blk.ko\nswitchroot /dev/vda ext4 /lib/systemd/systemd\n" +
				"mount /dev/vdb /test ext4 rw\nmount /dev/vdc /data xfs\n",
			want: &manifest{
				modules: []module{{path: "/modules/virtio_blk.ko"}},
				root:    &newRoot{device: "/dev/vda", fstype: "ext4", init: "/lib/systemd/systemd"},
				mounts: []diskMount{
					{device: "/dev/vdb", dir: "/test", fstype: "ext4", options: "rw"},
					{device: "/dev/vdc", dir: "/data", fstype: "xfs"},
				},
			},
		},
		{name: "switchroot and runs", in: "switchroot /dev/vda ext4 /sbin/init\nrun /t\n", wantErr: "both switchroot and runs"},
		{name: "second switchroot", in: "switchroot /dev/vda ext4 /sbin/init\nswitchroot /dev/vdb ext4 /sbin/init\n", wantErr: "line 2: a second switchroot"},
		{name: "switchroot without init", in: "switchroot /dev/vda ext4\n", wantErr: "line 1: switchroot needs"},
		{name: "relative init", in: "switchroot /dev/vda ext4 sbin/init\n", wantErr: "not an absolute path"},
		{name: "mount without switchroot", in: "mount /dev/vdb /test ext4\nrun /t\n", wantErr: "no switchroot"},
		{name: "mount over the root", in: "switchroot /dev/vda ext4 /sbin/init\nmount /dev/vdb / ext4\n", wantErr: "line 2: mount directory"},
		{name: "mount with too many fields", in: "switchroot /dev/vda ext4 /sbin/init\nmount /dev/vdb /t ext4 ro x\n", wantErr: "line 2: mount needs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseManifest(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestTestTimeout(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want time.Duration
		ok   bool
	}{
		{name: "none", args: []string{"-test.v"}},
		{name: "equals form", args: []string{"-test.timeout=90s"}, want: 90 * time.Second, ok: true},
		{name: "separate value", args: []string{"-test.timeout", "2m"}, want: 2 * time.Minute, ok: true},
		{name: "double dash", args: []string{"--test.timeout=1h"}, want: time.Hour, ok: true},
		{name: "last one wins as in flag", args: []string{"-test.timeout=1m", "-test.timeout=3m"}, want: 3 * time.Minute, ok: true},
		{name: "zero disables", args: []string{"-test.timeout=0"}},
		{name: "unparsable ignored", args: []string{"-test.timeout=soon"}},
		{name: "flag at end without value", args: []string{"-test.timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := testRun{args: tc.args}.testTimeout()
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, tc.want, got)
			}
		})
	}
}
