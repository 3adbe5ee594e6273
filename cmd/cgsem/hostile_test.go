package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/internal/testenv"
	"github.com/cgsem/cgsem/semantic"
)

// Hostile input: every case is a command line built around one bad input
// (a path that escapes or collides, a control character, a value out of
// range or in the wrong form, a device that is not a device). Each must
// exit 2 with a message that quotes the input and says why, and change
// nothing: no group appears, the existing group "victim" and the root
// keep their settings, no process moves, the command of run never runs.
// The table runs in-process against the fake and, as root, through the
// real binary against the v1 driver.

// hostileCase is one refused command line. Its args and value may hold
// the placeholders of hostileFixture.expand.
type hostileCase struct {
	name string
	args []string
	// value is the bad input the message must quote (as %q does); empty
	// when the mistake is a combination of flags.
	value string
	// why is what the message must say about it.
	why string
	// inProcessOnly marks input that cannot pass through execve (NUL).
	inProcessOnly bool
	// v1Only marks input only a real driver judges (the root, the host's
	// CPUs).
	v1Only bool
}

// victimFlags configure the group every case could harm.
var victimFlags = []string{"--memory", "64MiB", "--pids", "10", "--devices", "deny", "--allow-device", "/dev/null"}

func hostileCases() []hostileCase {
	var cases []hostileCase

	paths := []struct{ name, path, why string }{
		{"parent", "..", `".." is not allowed`},
		{"traversal", "../x", `".." is not allowed`},
		{"deep traversal", "../../../../x", `".." is not allowed`},
		{"traversal inside", "a/../b", `".." is not allowed`},
		{"traversal out of the victim", "victim/../../x", `".." is not allowed`},
		{"dot", ".", `"." is not allowed`},
		{"dot inside", "a/./b", `"." is not allowed`},
		{"absolute", "/x", "absolute"},
		{"slash", "/", "absolute"},
		{"absolute cgroupfs", "/sys/fs/cgroup/memory", "absolute"},
		{"empty", "", "empty path"},
		{"empty segment", "a//b", "empty segment"},
		{"trailing slash", "a/", "empty segment"},
		{"newline", "a\nb", "control character U+000A"},
		{"carriage return", "a\rb", "control character U+000D"},
		{"tab", "a\tb", "control character U+0009"},
		{"escape sequence", "a\x1b[31mb", "control character U+001B"},
		{"delete", "a\x7fb", "control character U+007F"},
		{"C1 control", "a\u0085b", "control character U+0085"},
		{"invalid UTF-8", "a\xffb", "not valid UTF-8"},
		{"leading space", " x", "leading or trailing space"},
		{"trailing space", "x ", "leading or trailing space"},
		{"cgroup.procs", "cgroup.procs", "kernel attribute file"},
		{"tasks", "tasks", "kernel attribute file"},
		{"memory.limit_in_bytes", "memory.limit_in_bytes", "kernel attribute file"},
		{"release_agent", "release_agent", "kernel attribute file"},
		{"notify_on_release", "notify_on_release", "kernel attribute file"},
		{"cgroup.event_control", "cgroup.event_control", "kernel attribute file"},
		{"devices.allow", "devices.allow", "kernel attribute file"},
		{"attribute file of the victim", "victim/cgroup.procs", "kernel attribute file"},
		{"tasks of the victim", "victim/tasks", "kernel attribute file"},
		{"too long", strings.Repeat("x", 256), "256 bytes; at most 255"},
		{"too deep", strings.Repeat("a/", 32) + "a", "33 levels deep"},
	}
	pathCommands := []struct {
		name string
		args func(p string) []string
	}{
		{"create", func(p string) []string { return []string{"create", p} }},
		{"set", func(p string) []string { return []string{"set", p, "--pids", "5"} }},
		{"plan", func(p string) []string { return []string{"plan", p, "--pids", "5"} }},
		{"show", func(p string) []string { return []string{"show", p} }},
		{"ls", func(p string) []string { return []string{"ls", p} }},
		{"rm", func(p string) []string { return []string{"rm", "--kill", "--recursive", p} }},
		{"freeze", func(p string) []string { return []string{"freeze", p} }},
		{"thaw", func(p string) []string { return []string{"thaw", p} }},
		{"kill", func(p string) []string { return []string{"kill", p} }},
		{"attach", func(p string) []string { return []string{"attach", p, "{pid}"} }},
		{"events", func(p string) []string { return []string{"events", p} }},
		{"run", func(p string) []string { return []string{"run", "--path", p, "--rm", "--", "touch", "{marker}"} }},
	}
	for _, c := range pathCommands {
		for _, p := range paths {
			tc := hostileCase{name: c.name + "/path " + p.name, args: c.args(p.path), value: p.path, why: p.why}
			if c.name == "run" && p.path == "" {
				// run takes an empty --path for a missing one.
				tc.value, tc.why = "", "--path is required"
			}
			cases = append(cases, tc)
		}
		cases = append(cases, hostileCase{name: c.name + "/path NUL", args: c.args("a\x00b"), value: "a\x00b", why: "contains NUL", inProcessOnly: true})
	}

	roots := []struct{ name, root, why string }{
		{"traversal below self", "self/../x", `".." is not allowed`},
		{"relative", "../x", `want "", "self", "self/PATH" or an absolute cgroup path`},
		{"almost self", "selfish", `want "", "self", "self/PATH" or an absolute cgroup path`},
		{"absolute traversal", "/../x", "no empty, . or .. segment"},
		{"absolute dot", "/a/./b", "no empty, . or .. segment"},
		{"absolute empty segment", "/a//b", "no empty, . or .. segment"},
		{"self with a newline", "self/a\nb", "control character U+000A"},
		{"self with an attribute file", "self/tasks", "kernel attribute file"},
		{"self with an empty path", "self/", "empty path"},
	}
	for _, r := range roots {
		for _, args := range [][]string{{"ls"}, {"create", "x"}, {"rm", "--kill", "--recursive", "victim"}} {
			cases = append(cases, hostileCase{name: args[0] + "/root " + r.name, args: append([]string{"--root", r.root}, args...),
				value: r.root, why: r.why, v1Only: true})
		}
	}

	values := []struct {
		name  string
		flags []string // the bad value last
		why   string
	}{
		{"memory negative", []string{"--memory", "-1"}, "want a number"},
		{"memory 2^64", []string{"--memory", "18446744073709551616"}, "out of range"},
		{"memory 16EiB overflows", []string{"--memory", "16EiB"}, "out of range"},
		{"memory 2^64-1 is max's spelling", []string{"--memory", "18446744073709551615"}, `too large (use "max"`},
		{"memory two dots", []string{"--memory", "1.5.5G"}, "not a decimal number"},
		{"memory hex", []string{"--memory", "0x10"}, "unknown suffix"},
		{"memory empty", []string{"--memory", ""}, "want a number"},
		{"memory max with a space", []string{"--memory", "max "}, "want a number"},
		{"memory with a newline", []string{"--memory", "1G\n"}, "unknown suffix"},
		{"swap negative", []string{"--swap", "-5"}, "want a number"},
		{"memory low negative", []string{"--memory-low", "-1"}, "want a number"},
		{"pids negative", []string{"--pids", "-1"}, "non-negative whole number"},
		{"pids 2^64", []string{"--pids", "18446744073709551616"}, "non-negative whole number"},
		{"pids fraction", []string{"--pids", "1.5"}, "non-negative whole number"},
		{"pids plus sign", []string{"--pids", "+3"}, "non-negative whole number"},
		{"cpu weight max", []string{"--cpu-weight", "max"}, "whole number 1..10000"},
		{"cpu weight zero", []string{"--cpu-weight", "0"}, "out of range 1..10000"},
		{"cpu weight too big", []string{"--cpu-weight", "10001"}, "out of range 1..10000"},
		{"cpu weight negative", []string{"--cpu-weight", "-1"}, "whole number 1..10000"},
		{"cpu weight 2^64", []string{"--cpu-weight", "18446744073709551616"}, "whole number 1..10000"},
		{"io weight max", []string{"--io-weight", "max"}, "whole number 1..10000"},
		{"io weight zero", []string{"--io-weight", "0"}, "out of range 1..10000"},
		{"cpus negative", []string{"--cpus", "-1"}, "number of CPUs"},
		{"cpus zero", []string{"--cpus", "0"}, "out of range"},
		{"cpus NaN", []string{"--cpus", "NaN"}, "number of CPUs"},
		{"cpus Inf", []string{"--cpus", "Inf"}, "number of CPUs"},
		{"cpus overflow", []string{"--cpus", "1e400"}, "number of CPUs"},
		{"cpus too small", []string{"--cpus", "0.0001"}, "out of range"},
		{"cpus too many", []string{"--cpus", "1048577"}, "out of range"},
		{"cpu period zero", []string{"--cpus", "1", "--cpu-period", "0"}, "positive"},
		{"cpu period negative", []string{"--cpus", "1", "--cpu-period", "-1s"}, "positive"},
		{"cpu period too long", []string{"--cpus", "1", "--cpu-period", "5s"}, "out of range 1ms..1s"},
		{"cpu period too short", []string{"--cpus", "1", "--cpu-period", "1ns"}, "out of range 1ms..1s"},
		{"cpu period overflow", []string{"--cpus", "1", "--cpu-period", "999999999999999999999"}, "want a duration"},
		{"cpuset max", []string{"--cpuset", "max"}, "not a number"},
		{"cpuset backwards", []string{"--cpuset", "3-1"}, "runs backwards"},
		{"cpuset beyond any CPU", []string{"--cpuset", "0-99999"}, "not a number 0..8191"},
		{"cpuset empty", []string{"--cpuset", ""}, "empty"},
		{"cpuset empty item", []string{"--cpuset", "0,,1"}, "not a number"},
		{"cpuset negative", []string{"--cpuset", "-1"}, "not a number"},
		{"mems max", []string{"--mems", "max"}, "not a number"},
		{"devices policy", []string{"--devices", "maybe"}, `want "deny" or "allow"`},
		{"devices policy empty", []string{"--devices", ""}, `want "deny" or "allow"`},
		{"devices policy upper case", []string{"--devices", "DENY"}, `want "deny" or "allow"`},
		{"device major too big", []string{"--devices", "deny", "--allow-device", "c 4096:1 r"}, "0..4095"},
		{"device major negative", []string{"--devices", "deny", "--allow-device", "c -1:3 r"}, "0..4095"},
		{"device major 2^64", []string{"--devices", "deny", "--allow-device", "c 18446744073709551616:1 r"}, "0..4095"},
		{"device minor too big", []string{"--devices", "deny", "--allow-device", "c 1:1048576 r"}, "0..1048575"},
		{"device access x", []string{"--devices", "deny", "--allow-device", "c 1:3 rwx"}, "not one of r, w, m"},
		{"device type", []string{"--devices", "deny", "--allow-device", "x 1:3 r"}, "is not a, b or c"},
		{"device without minor", []string{"--devices", "deny", "--allow-device", "c 1 r"}, "is not MAJOR:MINOR"},
		{"device extra field", []string{"--devices", "deny", "--allow-device", "c 1:3 r extra"}, "TYPE MAJOR:MINOR"},
		{"device empty", []string{"--devices", "deny", "--allow-device", ""}, "TYPE MAJOR:MINOR"},
		{"device regular file", []string{"--devices", "deny", "--allow-device", "{reg}"}, "not a character or block device node"},
		{"device symlink to a regular file", []string{"--devices", "deny", "--allow-device", "{regLink}"}, "not a character or block device node"},
		{"device symlink to a directory", []string{"--devices", "deny", "--allow-device", "{dirLink}"}, "not a character or block device node"},
		{"device dangling symlink", []string{"--devices", "deny", "--allow-device", "{dangling}"}, "no such file"},
		{"device symlink with bad access", []string{"--devices", "deny", "--allow-device", "{nullLink}:rwx"}, "not one of r, w, m"},
		{"deny device major too big", []string{"--devices", "allow", "--deny-device", "c 4096:1 r"}, "0..4095"},
		{"deny device symlink to a regular file", []string{"--devices", "allow", "--deny-device", "{regLink}"}, "not a character or block device node"},
		{"io limit garbage", []string{"--io-limit", "garbage"}, "DEVICE:KEY=VALUE"},
		{"io limit without keys", []string{"--io-limit", "8:0"}, "DEVICE:KEY=VALUE"},
		{"io limit bad number", []string{"--io-limit", "8:0:rbps=x"}, "want a number"},
		{"io limit unknown key", []string{"--io-limit", "8:0:foo=1"}, `unknown key "foo"`},
		{"io limit negative", []string{"--io-limit", "8:0:rbps=-1"}, "want a number"},
		{"io limit 2^64", []string{"--io-limit", "8:0:rbps=18446744073709551616"}, "out of range"},
		{"io limit major too big", []string{"--io-limit", "4096:0:rbps=1"}, "not MAJOR:MINOR"},
		{"io limit regular file", []string{"--io-limit", "{reg}:rbps=1"}, "not a character or block device node"},
		{"io limit symlink to a regular file", []string{"--io-limit", "{regLink}:rbps=1"}, "not a character or block device node"},
		{"io limit char device", []string{"--io-limit", "/dev/null:rbps=1"}, "not a block device"},
		{"io limit symlink to a char device", []string{"--io-limit", "{nullLink}:rbps=1"}, "not a block device"},
		{"device path with a newline", []string{"--devices", "deny", "--allow-device", "/dev/null\nforged"}, "no such file"},
		{"device symlink with a newline to a char device", []string{"--io-limit", "{nlLink}:rbps=1"}, "not a block device"},
		{"io limit path with an escape sequence", []string{"--io-limit", "/dev/\x1b[2Jx:rbps=1"}, "no such file"},
		{"hugetlb odd page size", []string{"--hugetlb", "3MiB=1G"}, "power of two"},
		{"hugetlb negative", []string{"--hugetlb", "2MiB=-1"}, "want a number"},
		{"hugetlb garbage", []string{"--hugetlb", "garbage"}, "PAGESIZE=LIMIT"},
	}
	// Values no parser can judge: only the host knows its CPUs and memory
	// nodes. The v1 driver passes the kernel's refusal on, naming the
	// value and the file.
	hostValues := []struct {
		name  string
		flags []string
		why   string
	}{
		{"cpuset beyond this host", []string{"--cpuset", "8191"}, "numerical result out of range"},
		{"cpuset range beyond this host", []string{"--cpuset", "0-8191"}, "numerical result out of range"},
		{"mems beyond this host", []string{"--mems", "63"}, "invalid argument"},
	}
	for _, v := range hostValues {
		for _, args := range [][]string{append([]string{"create", "x"}, v.flags...), append([]string{"set", "victim"}, v.flags...)} {
			cases = append(cases, hostileCase{name: args[0] + "/" + v.name, args: args, value: v.flags[len(v.flags)-1], why: v.why, v1Only: true})
		}
	}

	valueCommands := []struct {
		name string
		args func(flags []string) []string
	}{
		{"create", func(f []string) []string { return append([]string{"create", "x"}, f...) }},
		{"set", func(f []string) []string { return append([]string{"set", "victim"}, f...) }},
		{"plan", func(f []string) []string { return append([]string{"plan", "victim"}, f...) }},
		{"run", func(f []string) []string {
			return append(append([]string{"run", "--path", "x", "--rm"}, f...), "--", "touch", "{marker}")
		}},
	}
	for _, c := range valueCommands {
		for _, v := range values {
			cases = append(cases, hostileCase{name: c.name + "/" + v.name, args: c.args(v.flags), value: v.flags[len(v.flags)-1], why: v.why})
		}
		cases = append(cases,
			hostileCase{name: c.name + "/period without cpus", args: c.args([]string{"--cpu-period", "100ms"}), why: "--cpu-period needs --cpus"},
			hostileCase{name: c.name + "/device rule without a policy", args: c.args([]string{"--allow-device", "/dev/null"}), why: "device rules need --devices"},
			hostileCase{name: c.name + "/memory with NUL", args: c.args([]string{"--memory", "1\x00G"}), value: "1\x00G", why: "unknown suffix", inProcessOnly: true},
			hostileCase{name: c.name + "/device with NUL", args: c.args([]string{"--devices", "deny", "--allow-device", "/dev/null\x00/x"}), value: "/dev/null\x00/x", why: "invalid argument", inProcessOnly: true},
		)
	}

	for _, id := range []string{"-5", "0", "99999999999999999999", "12x", "1.5", " 7", "{pid}x", ""} {
		// "--" so that "-5" is an argument, not a flag.
		cases = append(cases,
			hostileCase{name: "attach/pid " + strconv.Quote(id), args: []string{"attach", "victim", "--", id}, value: id, why: "is not a process id"},
			hostileCase{name: "attach/tid " + strconv.Quote(id), args: []string{"attach", "--thread", "victim", "--", id}, value: id, why: "is not a process id"},
		)
	}
	cases = append(cases, hostileCase{name: "attach/pid that looks like a flag", args: []string{"attach", "victim", "-5"}, why: "flag provided but not defined: -5"})
	cases = append(cases,
		hostileCase{name: "global/log level", args: []string{"--log-level", "loud", "show", "victim"}, value: "loud", why: "want off, error"},
		hostileCase{name: "global/setting", args: []string{"--setting", "noequals", "show", "victim"}, value: "noequals", why: "want KEY=VALUE"},
		hostileCase{name: "global/driver traversal", args: []string{"--driver", "../v1", "show", "victim"}, value: "../v1", why: "forgotten import"},
	)
	return cases
}

// hostileFixture holds what the cases point at: files that are not
// devices, symlinks, a marker run must never create, a process that must
// not move.
type hostileFixture struct {
	marker string
	pid    int
	r      *strings.Replacer
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	dir := t.TempDir()
	reg := filepath.Join(dir, "regular")
	require.NoError(t, os.WriteFile(reg, []byte("not a device\n"), 0o644))
	links := map[string]string{"regLink": reg, "dirLink": dir, "dangling": filepath.Join(dir, "nothing"), "nullLink": "/dev/null",
		"nlLink": "/dev/null"}
	pairs := []string{"{reg}", reg}
	for name, target := range links {
		l := filepath.Join(dir, name)
		if name == "nlLink" {
			// A name that would forge a line if echoed raw.
			l = filepath.Join(dir, "null\ncgsem: forged")
		}
		require.NoError(t, os.Symlink(target, l))
		pairs = append(pairs, "{"+name+"}", l)
	}
	sleeper := startProc(t, "sleep", "3600")
	t.Cleanup(func() {
		_ = sleeper.cmd.Process.Kill()
		sleeper.wait(t)
	})
	f := &hostileFixture{marker: filepath.Join(dir, "ran"), pid: sleeper.pid()}
	pairs = append(pairs, "{marker}", f.marker, "{pid}", strconv.Itoa(f.pid))
	f.r = strings.NewReplacer(pairs...)
	return f
}

func (f *hostileFixture) expand(tc hostileCase) ([]string, string) {
	args := make([]string, len(tc.args))
	for i, a := range tc.args {
		args[i] = f.r.Replace(a)
	}
	return args, f.r.Replace(tc.value)
}

func (f *hostileFixture) cgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(f.pid) + "/cgroup")
	require.NoError(t, err)
	return string(b)
}

// checkHostile runs every case through run and asserts its refusal;
// unchanged asserts that the case touched nothing.
func checkHostile(t *testing.T, f *hostileFixture, cases []hostileCase, run func(args []string) result, unchanged func(t *testing.T)) {
	procCgroup := f.cgroup(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, value := f.expand(tc)
			r := run(args)
			assert.Equal(t, exitUsage, r.code, "stderr: %s", r.stderr)
			assert.Empty(t, r.stdout)
			assert.True(t, strings.HasPrefix(r.stderr, "cgsem: "), "stderr: %s", r.stderr)
			if tc.value != "" {
				assert.Contains(t, r.stderr, strconv.Quote(value), "the message quotes the input")
			}
			assert.Contains(t, r.stderr, tc.why)
			// The input is quoted, never echoed raw: it cannot forge lines
			// or drive a terminal. The message is one line; a mistake the
			// CLI itself finds adds a hint at --help.
			assert.Regexp(t, `^cgsem: [^\n]+\n(run 'cgsem( [a-z]+)? --help' for usage\n)?$`, r.stderr, "one line of message")
			assert.True(t, utf8.ValidString(r.stderr), "stderr is UTF-8: %q", r.stderr)
			for _, c := range r.stderr {
				if unicode.IsControl(c) && c != '\n' {
					t.Errorf("stderr holds control character %U: %q", c, r.stderr)
					break
				}
			}
			unchanged(t)
			_, err := os.Stat(f.marker)
			assert.ErrorIs(t, err, os.ErrNotExist, "run's command never ran")
			assert.Equal(t, procCgroup, f.cgroup(t), "no process moved")
		})
	}
}

func TestHostileInputFake(t *testing.T) {
	e := newEnv(t, fake.Options{})
	f := newHostileFixture(t)
	e.must(append([]string{"create", "victim"}, victimFlags...)...)
	want := e.resources("victim")

	var cases []hostileCase
	for _, tc := range hostileCases() {
		if !tc.v1Only {
			cases = append(cases, tc)
		}
	}
	checkHostile(t, f, cases, func(args []string) result { return e.run(args...) }, func(t *testing.T) {
		groups, err := listGroups(context.Background(), e.drv, semantic.Root, true)
		require.NoError(t, err)
		assert.Equal(t, []string{"victim"}, pathStrings(groups), "no group appeared or went")
		assert.Equal(t, want, e.resources("victim"), "the victim's settings are as they were")
		pids, err := e.group("victim").Processes(context.Background())
		require.NoError(t, err)
		assert.Empty(t, pids)
	})
}

func TestHostileInputV1(t *testing.T) {
	testenv.RequireV1(t, e2eControllers...)
	c := newV1CLI(t, buildCLI(t))
	f := newHostileFixture(t)
	c.must(append([]string{"create", "victim"}, victimFlags...)...)
	victim, root := c.settings("victim"), c.settings(".")

	var cases []hostileCase
	for _, tc := range hostileCases() {
		if !tc.inProcessOnly {
			cases = append(cases, tc)
		}
	}
	checkHostile(t, f, cases, func(args []string) result { return c.run(args...) }, func(t *testing.T) {
		for _, h := range c.hiers {
			groups, err := testenv.Leaks(h.dir)
			require.NoError(t, err)
			assert.Equal(t, []string{"victim"}, groups, "no directory appeared or went in %s", h.key)
		}
		assert.Equal(t, victim, c.settings("victim"), "the victim's files are as they were")
		assert.Equal(t, root, c.settings("."), "the root's files are as they were")
	})
	c.must("rm", "victim")
}

// A symlink to a device node names the device (as /dev/stdin style links
// do); only a link to something else is refused, above.
func TestDeviceRuleThroughSymlink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "null")
	require.NoError(t, os.Symlink("/dev/null", link))
	args := []string{"create", "ok", "--devices", "deny", "--allow-device", link + ":rw"}
	want := []string{"allow c 1:3 rw"}

	t.Run("fake", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		e.must(args...)
		assert.Equal(t, want, ruleStrings(e.resources("ok").Devices.Rules))
	})
	t.Run("v1", func(t *testing.T) {
		testenv.RequireV1(t, e2eControllers...)
		c := newV1CLI(t, buildCLI(t))
		c.must(args...)
		assert.Equal(t, want, ruleStrings(c.show("ok").Resources.Devices.Rules))
		assert.Equal(t, "c 1:3 rw", c.read("devices", "ok", "devices.list"))
		c.must("rm", "ok")
	})
}
