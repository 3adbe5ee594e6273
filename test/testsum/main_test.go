package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		wantCode int
		wantLine string
	}{
		{"all pass", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA/sub"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}`, 0, "host: 1 passed, 0 failed, 1 skipped"},
		{"one fails", `{"Action":"output","Package":"p","Test":"TestA","Output":"boom\n"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p"}`, 1, "host: 1 passed, 1 failed, 0 skipped"},
		{"nothing ran", `{"Action":"skip","Package":"p"}`, 1, "host: 0 passed, 0 failed, 0 skipped"},
		{"build error text", "# p\nsyntax error\n" + `{"Action":"fail","Package":"p"}`, 1, "host: 0 passed, 0 failed, 0 skipped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			code := summarize(strings.NewReader(c.in), &out, "host", false)
			if code != c.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, c.wantCode, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if got := lines[len(lines)-1]; got != c.wantLine {
				t.Errorf("closing line %q, want %q", got, c.wantLine)
			}
			if c.name == "one fails" && !strings.Contains(out.String(), "boom") {
				t.Errorf("failing test's output not shown:\n%s", out.String())
			}
		})
	}
}
