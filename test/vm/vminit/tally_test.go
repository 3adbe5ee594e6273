//go:build linux

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTally(t *testing.T) {
	const stream = "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n" +
		"=== RUN   TestB/sub\n    --- FAIL: TestB/sub (0.01s)\n--- FAIL: TestB (0.01s)\n" +
		"--- SKIP: TestC (0.00s)\n    x_test.go:9: --- PASS: not a result\n" +
		"--- PASS: TestD (1.00s)\r\nFAIL\n"
	cases := []struct {
		name   string
		chunks func() []string
	}{
		{name: "one write", chunks: func() []string { return []string{stream} }},
		{name: "byte by byte", chunks: func() []string {
			var c []string
			for i := range len(stream) {
				c = append(c, stream[i:i+1])
			}
			return c
		}},
		{name: "split inside a result line", chunks: func() []string {
			return []string{stream[:30], stream[30:140], stream[140:]}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var y tally
			for _, c := range tc.chunks() {
				y.Write([]byte(c))
			}
			y.flush()
			assert.Equal(t, "passed=2 failed=1 skipped=1", y.String())
			assert.True(t, y.endsLine())
		})
	}
}

func TestTallyUnterminated(t *testing.T) {
	var y tally
	y.Write([]byte("ok\n--- PASS: TestA (0.00s)"))
	assert.False(t, y.endsLine())
	assert.Equal(t, 0, y.passed)
	y.flush()
	assert.Equal(t, 1, y.passed)
}

func TestTallyLongLine(t *testing.T) {
	var y tally
	long := make([]byte, 3*maxLine)
	for i := range long {
		long[i] = 'x'
	}
	y.Write(long)
	y.Write(long)
	assert.LessOrEqual(t, len(y.partial), maxLine)
	y.Write([]byte("\n--- FAIL: TestZ (0.00s)\n"))
	assert.Equal(t, 1, y.failed)
}
