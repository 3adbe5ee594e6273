//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type entry struct {
	name             string
	mode, uid, gid   uint32
	rdevMaj, rdevMin uint32
	data             string
}

// readNewc decodes a newc archive the way the kernel's initramfs unpacker
// does, checking the alignment rules the writer must keep.
func readNewc(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		require.NoError(t, err)
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		require.GreaterOrEqual(t, len(b)-off, 110, "truncated header at %d", off)
		require.Equal(t, "070701", string(b[off:off+6]), "magic at %d", off)
		e := entry{mode: field(1), uid: field(2), gid: field(3), rdevMaj: field(9), rdevMin: field(10)}
		size, nameSize := int(field(6)), int(field(11))
		name := b[off+110 : off+110+nameSize]
		require.Equal(t, byte(0), name[nameSize-1], "name not NUL-terminated")
		e.name = string(name[:nameSize-1])
		off = align(off + 110 + nameSize)
		e.data = string(b[off : off+size])
		off = align(off + size)
		if e.name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "bytes after the trailer")
			return out
		}
		out = append(out, e)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a": "hello", "b": "", "c": "12345678"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	cases := []struct {
		name    string
		list    string
		want    []entry
		wantErr string
	}{
		{
			name: "every entry type with odd sizes",
			list: "# comment\n\ndir /dev 0755 0 0\nnod /dev/console 0600 0 5 c 5 1\n" +
				"nod /dev/ram0 0660 0 6 b 1 0\nfile /init " + dir + "/a 0755 0 0\n" +
				"file /empty " + dir + "/b 0644 1 2\nfile /x/eight " + dir + "/c 0600 0 0\n" +
				"slink /bin/sh /init 0777 0 0\n",
			want: []entry{
				{name: "dev", mode: 0o040755},
				{name: "dev/console", mode: 0o020600, gid: 5, rdevMaj: 5, rdevMin: 1},
				{name: "dev/ram0", mode: 0o060660, gid: 6, rdevMaj: 1},
				{name: "init", mode: 0o100755, data: "hello"},
				{name: "empty", mode: 0o100644, uid: 1, gid: 2},
				{name: "x/eight", mode: 0o100600, data: "12345678"},
				{name: "bin/sh", mode: 0o120777, data: "/init"},
			},
		},
		{name: "unknown type", list: "fifo /p 0644 0 0\n", wantErr: `line 1: unknown entry type "fifo"`},
		{name: "missing field", list: "dir /d 0755 0\n", wantErr: "line 1: dir needs 5 fields"},
		{name: "mode not octal", list: "dir /d 0799 0 0\n", wantErr: `bad mode "0799"`},
		{name: "mode with type bits", list: "dir /d 040755 0 0\n", wantErr: "bad mode"},
		{name: "device type", list: "nod /d 0600 0 0 x 1 1\n", wantErr: "neither c nor b"},
		{name: "missing source", list: "file /f " + dir + "/nope 0644 0 0\n", wantErr: "no such file"},
		{name: "directory as file", list: "file /f " + dir + " 0644 0 0\n", wantErr: "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := run(strings.NewReader(tc.list), &buf)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, readNewc(t, buf.Bytes()))
		})
	}
}
