package v2

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/internal/mountinfo"
	"github.com/cgsem/cgsem/semantic"
)

func mustMounts(t *testing.T, text string) []mountinfo.Mount {
	t.Helper()
	ms, err := mountinfo.Parse(strings.NewReader(text))
	require.NoError(t, err)
	return ms
}

func mustCgroup(t *testing.T, text string) []mountinfo.CgroupEntry {
	t.Helper()
	es, err := mountinfo.ParseCgroup(strings.NewReader(text))
	require.NoError(t, err)
	return es
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(b)
}

func TestLocate(t *testing.T) {
	const (
		pure = "24 22 0:21 / /sys/fs/cgroup rw,nosuid,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
		// A pure v2 host that also shows the hierarchy at a second place.
		twice = "24 22 0:21 / /mnt/cg rw - cgroup2 cgroup2 rw\n" + pure
		// A container's view: the mount shows only /ctr/abc.
		container = "30 29 0:21 /ctr/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
		v1only    = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
	)
	hybrid := readTestdata(t, "host-hybrid.mountinfo")
	for _, c := range []struct {
		name       string
		mounts     string
		self       string
		root       string
		mount      string
		want       location
		wantErr    error
		errContain string
	}{
		{name: "PureTop", mounts: pure, want: location{mount: "/sys/fs/cgroup", cgroup: "/", dir: "/sys/fs/cgroup"}},
		{name: "PureSelf", mounts: pure, self: "0::/user.slice/app\n", root: "self",
			want: location{mount: "/sys/fs/cgroup", cgroup: "/user.slice/app", dir: "/sys/fs/cgroup/user.slice/app"}},
		{name: "PurePath", mounts: pure, root: "/machine.slice/x",
			want: location{mount: "/sys/fs/cgroup", cgroup: "/machine.slice/x", dir: "/sys/fs/cgroup/machine.slice/x"}},
		{name: "PathWithoutLeadingSlash", mounts: pure, root: "machine.slice/x/",
			want: location{mount: "/sys/fs/cgroup", cgroup: "/machine.slice/x", dir: "/sys/fs/cgroup/machine.slice/x"}},
		{name: "HybridPrefersUnified", mounts: hybrid, self: readTestdata(t, "host-hybrid.cgroup"), root: "self",
			want: location{mount: "/sys/fs/cgroup/unified", cgroup: "/", dir: "/sys/fs/cgroup/unified"}},
		{name: "PreferredOverFirst", mounts: twice, want: location{mount: "/sys/fs/cgroup", cgroup: "/", dir: "/sys/fs/cgroup"}},
		{name: "MountSetting", mounts: twice, mount: "/mnt/cg/", root: "/a",
			want: location{mount: "/mnt/cg", cgroup: "/a", dir: "/mnt/cg/a"}},
		{name: "ContainerTopIsItsView", mounts: container,
			want: location{mount: "/sys/fs/cgroup", cgroup: "/ctr/abc", dir: "/sys/fs/cgroup"}},
		{name: "ContainerSelf", mounts: container, self: "0::/ctr/abc/app\n", root: "self",
			want: location{mount: "/sys/fs/cgroup", cgroup: "/ctr/abc/app", dir: "/sys/fs/cgroup/app"}},
		{name: "ContainerOutside", mounts: container, root: "/other", wantErr: semantic.ErrNotExist, errContain: "not visible"},
		{name: "ContainerSibling", mounts: container, root: "/ctr/abcd", wantErr: semantic.ErrNotExist},
		{name: "NoCgroup2", mounts: v1only, wantErr: semantic.ErrNotSupported},
		{name: "SelfWithoutV2Line", mounts: pure, self: "4:memory:/x\n", root: "self", wantErr: semantic.ErrNotExist},
		{name: "UnknownMountSetting", mounts: pure, mount: "/sys/fs/cgroup/unified", wantErr: semantic.ErrInvalid, errContain: "not a cgroup2 mount point"},
		{name: "DotDot", mounts: pure, root: "/a/../b", wantErr: semantic.ErrInvalid},
		{name: "Dot", mounts: pure, root: "/a/./b", wantErr: semantic.ErrInvalid},
		{name: "NUL", mounts: pure, root: "/a\x00b", wantErr: semantic.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			var self []mountinfo.CgroupEntry
			if c.self != "" {
				self = mustCgroup(t, c.self)
			}
			got, err := locate(mustMounts(t, c.mounts), self, c.root, c.mount)
			if c.wantErr != nil {
				require.Error(t, err)
				require.True(t, errors.Is(err, c.wantErr), "error %v is not %v", err, c.wantErr)
				require.Contains(t, err.Error(), c.errContain)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

func TestLocateCapturedVM(t *testing.T) {
	got, err := locate(mustMounts(t, readTestdata(t, "vm-mountinfo")), mustCgroup(t, readTestdata(t, "vm-cgroup")), "self", "")
	require.NoError(t, err)
	require.Equal(t, location{mount: "/sys/fs/cgroup", cgroup: "/", dir: "/sys/fs/cgroup"}, got)
}
