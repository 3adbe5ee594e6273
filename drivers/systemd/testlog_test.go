package systemd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTestLogFailures checks that a failed run inside the container is
// reported with what explains it, on outputs shaped as go test -v writes
// them (parallel subtests interleave, naming the test that resumes).
func TestTestLogFailures(t *testing.T) {
	const head = `=== RUN   TestX
=== RUN   TestX/A
=== RUN   TestX/A/P
=== PAUSE TestX/A/P
=== RUN   TestX/A/Q
=== PAUSE TestX/A/Q
=== CONT  TestX/A/P
=== CONT  TestX/A/Q
    x_test.go:19: q log 1
=== NAME  TestX/A/P
    x_test.go:12: p log 1
=== NAME  TestX/A/Q
    x_test.go:21: q log 2
`
	const race = `==================
WARNING: DATA RACE
Write at 0x00c00008e058 by goroutine 13:
  x.TestX.func1.1.1()
==================
`
	for _, c := range []struct {
		name       string
		out        string
		summary    string
		want, not  []string
		wholeShown bool
	}{
		{
			name: "parallel leaf",
			out: head + `=== NAME  TestX/A/P
    x_test.go:14: p error
        second line
--- FAIL: TestX (0.06s)
    --- FAIL: TestX/A (0.00s)
        --- PASS: TestX/A/Q (0.06s)
        --- FAIL: TestX/A/P (0.06s)
FAIL
`,
			summary: "1 passed, 0 skipped, 1 failed",
			want:    []string{"--- FAIL: TestX/A/P\n", "x_test.go:12: p log 1\n", "x_test.go:14: p error\n", "second line\n"},
			not:     []string{"q log", "--- FAIL: TestX/A\n", "whole output"},
		},
		{
			name: "race",
			out: head + race + `    testing.go:1712: race detected during execution of test
=== NAME  TestX/A/P
    testing.go:1712: race detected during execution of test
--- FAIL: TestX (0.08s)
    --- FAIL: TestX/A (0.00s)
        --- FAIL: TestX/A/P (0.05s)
        --- FAIL: TestX/A/Q (0.08s)
FAIL
`,
			summary: "0 passed, 0 skipped, 2 failed",
			want:    []string{"--- FAIL: TestX/A/P\n", "--- FAIL: TestX/A/Q\n", race},
			not:     []string{"whole output"},
		},
		{
			name: "panic",
			out: head + `=== NAME  TestX/A/P
    x_test.go:14: p error
--- FAIL: TestX/A/P (0.01s)
panic: boom [recovered, repanicked]

goroutine 7 [running]:
testing.tRunner.func1.2({0x5a1f20, 0x6b2e40})
`,
			summary: "0 passed, 0 skipped, 1 failed",
			want:    []string{"x_test.go:14: p error\n", "panic: boom [recovered, repanicked]\n\ngoroutine 7 [running]:\ntesting.tRunner.func1.2("},
			not:     []string{"whole output"},
		},
		{
			name: "leaf without lines",
			out: `=== RUN   TestX
=== RUN   TestX/A
=== RUN   TestX/A/P
=== PAUSE TestX/A/P
=== RUN   TestX/A/Q
=== PAUSE TestX/A/Q
=== CONT  TestX/A/P
=== CONT  TestX/A/Q
    x_test.go:19: q log 1
--- FAIL: TestX (0.06s)
    --- FAIL: TestX/A (0.00s)
        --- PASS: TestX/A/Q (0.06s)
        --- FAIL: TestX/A/P (0.06s)
FAIL
`,
			summary:    "1 passed, 0 skipped, 1 failed",
			want:       []string{"--- FAIL: TestX/A/P\n        (no line of its own"},
			wholeShown: true,
		},
		{
			name: "parent lines",
			out: head + `=== NAME  TestX/A
    x_test.go:30: cleanup of A failed
--- FAIL: TestX (0.06s)
    --- FAIL: TestX/A (0.00s)
        --- PASS: TestX/A/Q (0.06s)
        --- PASS: TestX/A/P (0.06s)
FAIL
`,
			summary: "2 passed, 0 skipped, 0 failed",
			want:    []string{"--- FAIL: TestX/A\n        x_test.go:30: cleanup of A failed\n"},
			not:     []string{"--- FAIL: TestX\n", "whole output"},
		},
		{
			name: "crash before any result",
			out: head + `fatal error: concurrent map writes
`,
			summary:    "0 passed, 0 skipped, 0 failed",
			wholeShown: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := parseTestLog(c.out)
			assert.Contains(t, l.summarize(), c.summary)
			got := l.failures(c.out)
			for _, w := range c.want {
				assert.Contains(t, got, w)
			}
			for _, n := range c.not {
				assert.NotContains(t, got, n)
			}
			whole := strings.Contains(got, "--- the whole output of the run inside:\n"+c.out)
			assert.Equal(t, c.wholeShown, whole, "whole output appended:\n%s", got)
		})
	}
}
