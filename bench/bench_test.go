package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cgsem/cgsem/semantic"
)

// These tests check the harness itself; none needs root, and none times
// anything.

func us(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Microsecond
	}
	return out
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            []time.Duration
		med, p90, min time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", us(7), 7 * time.Microsecond, 7 * time.Microsecond, 7 * time.Microsecond},
		{"odd count, unsorted", us(5, 1, 3), 3 * time.Microsecond, 5 * time.Microsecond, time.Microsecond},
		{"even count averages the middle two", us(4, 1, 3, 2), 2500 * time.Nanosecond, 4 * time.Microsecond, time.Microsecond},
		{"p90 of ten is the ninth", us(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 5500 * time.Nanosecond, 9 * time.Microsecond, time.Microsecond},
		{"p90 of eleven is the tenth", us(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100), 6 * time.Microsecond, 10 * time.Microsecond, time.Microsecond},
		{"outlier moves p90, not the median", us(1, 1, 1, 1, 1, 1, 1, 1, 1000, 1000), time.Microsecond, time.Millisecond, time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.in...)
			s := summarize(tc.in)
			if s.N != len(tc.in) || s.Median != tc.med || s.P90 != tc.p90 || s.Min != tc.min {
				t.Errorf("summarize(%v) = %+v, want n=%d median=%v p90=%v min=%v", tc.in, s, len(tc.in), tc.med, tc.p90, tc.min)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("summarize reordered its input: %v, was %v", tc.in, in)
				}
			}
		})
	}
}

func TestMean(t *testing.T) {
	if got := mean(nil); got != 0 {
		t.Errorf("mean(nil) = %v", got)
	}
	if got := mean(us(1, 2, 6)); got != 3*time.Microsecond {
		t.Errorf("mean(1, 2, 6 us) = %v", got)
	}
}

func TestNearestRank(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, p, at int
	}{
		{"p90 of 1", 1, 90, 0},
		{"p90 of 10", 10, 90, 8},
		{"p90 of 100", 100, 90, 89},
		{"p90 of 101", 101, 90, 90},
		{"p50 of 4", 4, 50, 1},
		{"p100 of 5", 5, 100, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nearestRank(tc.n, tc.p); got != tc.at {
				t.Errorf("nearestRank(%d, %d) = %d, want %d", tc.n, tc.p, got, tc.at)
			}
		})
	}
}

func TestFmtDur(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{87 * time.Nanosecond, "87.0 ns"},
		{999 * time.Nanosecond, "999 ns"},
		{1500 * time.Nanosecond, "1.50 us"},
		{342 * time.Microsecond, "342 us"},
		{1690 * time.Microsecond, "1.69 ms"},
		{12345 * time.Millisecond, "12.3 s"},
		{999600 * time.Nanosecond, "1.00 ms"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := fmtDur(tc.in); got != tc.want {
				t.Errorf("fmtDur(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cells [][]string
		want  string
	}{
		{"empty", nil, ""},
		{"pads columns to the widest cell", [][]string{{"a", "bb"}, {"ccc", "d"}},
			"| a   | bb  |\n|-----|-----|\n| ccc | d   |\n"},
		{"escapes pipes", [][]string{{"x"}, {"a|b"}},
			"| x    |\n|------|\n| a\\|b |\n"},
		{"short rows get empty cells", [][]string{{"h1", "h2"}, {"only"}},
			"| h1   | h2  |\n|------|-----|\n| only |     |\n"},
		{"counts runes, not bytes", [][]string{{"≤ 1x"}, {"abcd"}},
			"| ≤ 1x |\n|------|\n| abcd |\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := markdown(tc.cells); got != tc.want {
				t.Errorf("markdown:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// fixed returns durations that summarize to the given median.
func fixed(d time.Duration) []time.Duration { return []time.Duration{d, d, d} }

func TestTimedSectionAndBudgets(t *testing.T) {
	res := []result{
		{name: "raw", times: fixed(100 * time.Microsecond)},
		{name: "cgsem", times: fixed(110 * time.Microsecond)},
		{name: "slow", times: fixed(300 * time.Microsecond)},
		{name: "skipped", skip: "not built yet: driver \"x\" is not registered"},
		{name: "broken", err: errors.New("boom")},
	}
	s := timedSection("w", "desc", "raw", res)
	for _, tc := range []struct {
		impl    string
		ratio   float64
		missing string
	}{
		{"raw", 1, ""},
		{"cgsem", 1.1, ""},
		{"slow", 3, ""},
		{"skipped", 0, "not built yet: driver \"x\" is not registered"},
		{"broken", 0, "error: boom"},
	} {
		t.Run(tc.impl, func(t *testing.T) {
			r := s.find(tc.impl)
			if r == nil {
				t.Fatal("row missing")
			}
			if d := r.Ratio - tc.ratio; d > 1e-9 || d < -1e-9 || r.Missing != tc.missing {
				t.Errorf("row = %+v, want ratio %v missing %q", r, tc.ratio, tc.missing)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		apply func(s *section)
		impl  string
		over  bool
	}{
		{"ratio met", func(s *section) { s.ratioBudget("cgsem", 1.15) }, "cgsem", false},
		{"ratio missed", func(s *section) { s.ratioBudget("cgsem", 1.05) }, "cgsem", true},
		{"faster than a slower rival", func(s *section) { s.fasterBudget("cgsem", 1, "slow") }, "cgsem", false},
		{"not 5x faster", func(s *section) { s.fasterBudget("cgsem", 5, "slow") }, "cgsem", true},
		{"rival without a figure is not held against it", func(s *section) { s.fasterBudget("cgsem", 5, "skipped", "broken") }, "cgsem", false},
		{"missing row is never over", func(s *section) { s.ratioBudget("skipped", 0.1) }, "skipped", false},
		{"absolute met", func(s *section) { s.absBudget("cgsem", 200*time.Microsecond) }, "cgsem", false},
		{"absolute missed", func(s *section) { s.absBudget("slow", 200*time.Microsecond) }, "slow", true},
		{"ratio to another floor met", func(s *section) { floorBudget(s, "cgsem", "slow", 0.5) }, "cgsem", false},
		{"ratio to another floor missed", func(s *section) { floorBudget(s, "slow", "cgsem", 1.15) }, "slow", true},
		{"a floor without a figure judges nothing", func(s *section) { floorBudget(s, "slow", "skipped", 0.1) }, "slow", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := timedSection("w", "", "raw", res)
			tc.apply(&c)
			r := c.find(tc.impl)
			if r.over() != tc.over || r.budgetText() == "" {
				t.Errorf("row = %+v, want over=%v and a budget text", r, tc.over)
			}
			lines := overBudget([]section{c})
			if (len(lines) > 0) != tc.over {
				t.Errorf("overBudget = %q, want over=%v", lines, tc.over)
			}
		})
	}
}

func TestOverBudgetNamesTheMissedCheckOnly(t *testing.T) {
	s := timedSection("w", "", "raw", []result{
		{name: "raw", times: fixed(100 * time.Microsecond)},
		{name: "cgsem", times: fixed(110 * time.Microsecond)},
		{name: "slow", times: fixed(300 * time.Microsecond)},
	})
	s.fasterBudget("cgsem", 2, "slow", "raw")
	lines := overBudget([]section{s})
	if len(lines) != 1 || !strings.Contains(lines[0], "≥ 2x faster than raw") {
		t.Errorf("overBudget = %q, want one line for raw only", lines)
	}
	if got := s.find("cgsem").budgetText(); got != "ok ≥ 2x faster than slow (2.7x); **OVER** ≥ 2x faster than raw (0.9x)" {
		t.Errorf("budget text = %q", got)
	}
}

func TestRenderMarksRows(t *testing.T) {
	s := timedSection("v1 lifecycle", "create, configure, delete", "raw", []result{
		{name: "raw", times: fixed(100 * time.Microsecond)},
		{name: "cgsem v1", times: fixed(200 * time.Microsecond)},
		{name: "cgsem v2", skip: "not built yet: driver \"v2\" is not registered"},
	})
	s.ratioBudget("cgsem v1", 1.15)
	s.ratioBudget("cgsem v2", 1.15)
	s.Notes = []string{"a note"}
	out := render([]section{s})
	for _, want := range []string{
		"### v1 lifecycle\n\ncreate, configure, delete\n\n",
		"| cgsem v1  | 3   | 200 us | 200 us | 2.00x  | **OVER** ≤ 1.15x raw |",
		"not built yet: driver \"v2\" is not registered",
		"\n- a note\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cgsem v2 | 3") {
		t.Errorf("a skipped row shows figures:\n%s", out)
	}
}

func TestRunHarness(t *testing.T) {
	ctx := context.Background()
	var order []string
	var tornDown []string
	mk := func(name string, failAt int) impl {
		return impl{
			name:     name,
			setup:    func(context.Context) error { order = append(order, name+":setup"); return nil },
			teardown: func() error { tornDown = append(tornDown, name); return nil },
			op: func(_ context.Context, i int) error {
				order = append(order, name)
				if i == failAt {
					return errors.New("failed")
				}
				return nil
			},
		}
	}
	panics := impl{name: "panics", op: func(context.Context, int) error { panic("nil map") }}
	skipped := impl{name: "skipped", skip: "n/a", op: func(context.Context, int) error { t.Error("a skipped contender ran"); return nil }}
	res := run(ctx, plan{warm: 1, rounds: 2, per: 2}, []impl{mk("a", -1), mk("b", 3), panics, skipped})

	if got := len(res[0].times); got != 4 {
		t.Errorf("a recorded %d timings, want rounds*per = 4 (warm-up not recorded)", got)
	}
	if res[1].err == nil || len(res[1].times) != 2 {
		t.Errorf("b: err %v with %d timings, want its failure at iteration 3 after 2 recorded", res[1].err, len(res[1].times))
	}
	if res[2].err == nil || !strings.Contains(res[2].err.Error(), "panic: nil map") {
		t.Errorf("panics: err %v, want the panic as an error", res[2].err)
	}
	if res[3].skip != "n/a" || res[3].times != nil {
		t.Errorf("skipped: %+v", res[3])
	}
	// Turns: warm-ups (iteration 0), a's round, b's round, a's round, then
	// b's, which fails on its first try (iteration 3) and ends there.
	want := "a:setup b:setup a b a a b b a a b"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order = %q, want %q", got, want)
	}
	if got := strings.Join(tornDown, " "); got != "a b" {
		t.Errorf("teardown ran for %q, want a and b", got)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	res := run(ctx, plan{warm: 0, rounds: 10, per: 10}, []impl{{name: "x", op: func(context.Context, int) error {
		n++
		if n == 5 {
			cancel()
		}
		return nil
	}}})
	if n != 5 || !errors.Is(res[0].err, context.Canceled) {
		t.Errorf("ran %d times with err %v, want 5 and context.Canceled", n, res[0].err)
	}
}

func TestParseHost(t *testing.T) {
	const mountinfo = `25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
30 25 0:27 /outer /sys/fs/cgroup/pids\040x rw,relatime - cgroup cgroup rw,pids
`
	const cgroup = `4:pids:/outer/me
3:memory:/process_api/abc
2:cpu,cpuacct:/
1:name=systemd:/user.slice
0::/user.slice/session-1.scope
`
	h, err := parseHost([]byte(mountinfo), []byte(cgroup))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ctrl, dir string
	}{
		{"memory", "/sys/fs/cgroup/memory/process_api/abc"},
		{"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
		{"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
		{"name=systemd", "/sys/fs/cgroup/systemd/user.slice"},
		{"pids", "/sys/fs/cgroup/pids x/me"},
	} {
		t.Run(tc.ctrl, func(t *testing.T) {
			if got := h.dir(tc.ctrl); got != tc.dir {
				t.Errorf("dir(%s) = %q, want %q", tc.ctrl, got, tc.dir)
			}
		})
	}
	if h.unified != "/sys/fs/cgroup/unified/user.slice/session-1.scope" || h.unifiedMount != "/sys/fs/cgroup/unified" {
		t.Errorf("unified = %q on %q", h.unified, h.unifiedMount)
	}
	if got := hierarchiesOf(h, []string{"memory", "cpu", "cpuacct"}); strings.Join(got, " ") != "memory cpu,cpuacct" {
		t.Errorf("hierarchiesOf = %q: a co-mounted pair is one hierarchy", got)
	}
}

func TestRawStatsParsers(t *testing.T) {
	var st rawStats
	for _, tc := range []struct {
		name string
		run  func() error
		ok   func() bool
	}{
		{"memory.stat keys", func() error {
			return scanKV([]byte("cache 1\nrss 2\ntotal_cache 30\ntotal_rss 40\ntotal_swap 5\n"), func(k []byte, v uint64) {
				switch string(k) {
				case "total_rss":
					st.anon = v
				case "total_cache":
					st.file = v
				}
			})
		}, func() bool { return st.anon == 40 && st.file == 30 }},
		{"usage_all sums columns", func() error {
			return scanUsageAll([]byte("cpu user system\n0 10 1\n1 20 2\n"), &st)
		}, func() bool { return st.user == 30 && st.system == 3 }},
		{"blkio sums read and write", func() error {
			return scanBlkio([]byte("8:0 Read 100\n8:0 Write 7\n8:0 Sync 0\n8:16 Read 1\nTotal 108\n"), false, &st)
		}, func() bool { return st.ioBytesR == 101 && st.ioBytesW == 7 && st.ioDevices == 2 }},
		{"empty blkio file", func() error { return scanBlkio([]byte("Total 0\n"), true, &st) }, func() bool { return st.ioOpsR == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
			if !tc.ok() {
				t.Errorf("parsed %+v", st)
			}
		})
	}
	for _, bad := range []string{"", "12a", "-1"} {
		if _, err := atou([]byte(bad)); err == nil {
			t.Errorf("atou(%q) succeeded", bad)
		}
	}
	if v, err := atou([]byte("18446744073709551615\n")); err != nil || v != 1<<64-1 {
		t.Errorf("atou(max) = %d, %v", v, err)
	}
}

// The v1 lifecycle asks for CPU weight 50 because cgsem turns it into the
// shares 512 the raw floor and the peers write.
func TestWeightMapsToShares512(t *testing.T) {
	if got := semantic.WeightToShares(v1Weight); got != 512 {
		t.Errorf("WeightToShares(%d) = %d, want 512", v1Weight, got)
	}
}

func TestNullOnlyProgramJumps(t *testing.T) {
	// Every conditional jump must land inside the program, on the deny
	// block, and the program must end in exit.
	p := nullOnlyProgram
	deny := len(p) - 2
	for i, in := range p {
		if in.code == bpfJneK {
			if to := i + 1 + int(in.off); to != deny {
				t.Errorf("insn %d jumps to %d, want the deny block at %d", i, to, deny)
			}
		}
	}
	if p[len(p)-1].code != bpfExit || p[deny-1].code != bpfExit {
		t.Error("both blocks must end in exit")
	}
}

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		name, list string
		want       string
		err        bool
	}{
		{"all by default", "", strings.Join(names(), ","), false},
		{"run order kept", "sizes,v1", "v1,sizes", false},
		{"unknown name", "v3", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := pick(tc.list)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for _, w := range ws {
				got = append(got, w.name)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("pick(%q) = %v, want %s", tc.list, got, tc.want)
			}
		})
	}
}

func TestOpenDriver(t *testing.T) {
	for _, tc := range []struct {
		name, driver string
		opened       bool
		skip         string
	}{
		{"registered driver opens", "fake", true, ""},
		{"unregistered driver is not built yet", "no-such-driver", false, `not built yet: driver "no-such-driver" is not registered`},
		{"a bad setting is an error, not a missing driver", "fake", false, "error: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := semantic.Options{}
			if strings.HasPrefix(tc.skip, "error") {
				opts.Settings = map[string]string{"no-such-setting": "x"}
			}
			d, skip := openDriver(tc.driver, opts)
			if (d != nil) != tc.opened || !strings.HasPrefix(skip, tc.skip) || (tc.skip == "") != (skip == "") {
				t.Errorf("openDriver(%q) = %v, %q; want opened=%v, reason starting %q", tc.driver, d, skip, tc.opened, tc.skip)
			}
			if d != nil {
				d.Close()
			}
		})
	}
}
