//go:build linux

package main

import (
	"bytes"
	"fmt"
)

// tally counts the top-level test results in a `go test -v` stream: the
// lines that start with "--- PASS: ", "--- FAIL: " or "--- SKIP: " in the
// first column. Subtests are indented and so are not counted, which keeps
// one number per Test function whatever the suite's depth. Output arrives
// in arbitrary chunks; a line split across writes is joined first.
type tally struct {
	passed, failed, skipped int
	partial                 []byte // an unterminated last line, at most maxLine bytes
	lastByte                byte
}

// A result line is short; a longer unterminated run is output of no
// interest and is dropped rather than buffered without bound.
const maxLine = 4096

func (t *tally) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.lastByte = p[len(p)-1]
	}
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(t.partial)+len(rest) <= maxLine {
				t.partial = append(t.partial, rest...)
			} else {
				t.partial = append(t.partial[:0], "(long line)"...)
			}
			break
		}
		line := rest[:i]
		if len(t.partial) > 0 {
			line = append(t.partial, line...)
			t.partial = t.partial[:0]
		}
		t.line(line)
		rest = rest[i+1:]
	}
	return len(p), nil
}

func (t *tally) line(l []byte) {
	l = bytes.TrimSuffix(l, []byte("\r"))
	switch {
	case bytes.HasPrefix(l, []byte("--- PASS: ")):
		t.passed++
	case bytes.HasPrefix(l, []byte("--- FAIL: ")):
		t.failed++
	case bytes.HasPrefix(l, []byte("--- SKIP: ")):
		t.skipped++
	}
}

// flush counts an unterminated last line, once the stream has ended.
func (t *tally) flush() {
	if len(t.partial) > 0 {
		t.line(t.partial)
		t.partial = t.partial[:0]
	}
}

// endsLine reports whether the stream so far ends at a line boundary, so
// a protocol line written after it starts in the first column.
func (t *tally) endsLine() bool {
	return t.lastByte == 0 || t.lastByte == '\n'
}

func (t *tally) String() string {
	return fmt.Sprintf("passed=%d failed=%d skipped=%d", t.passed, t.failed, t.skipped)
}
