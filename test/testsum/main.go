// Command testsum reads `go test -json` on stdin and prints what plain
// `go test` prints (a line per package, the output of failing tests), then
// a closing line "LABEL: N passed, N failed, N skipped" counting top-level
// tests. It exits 1 when any test or package failed, or no test ran.
//
//	go test -json ./... | go run ./test/testsum -label host
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	label := flag.String("label", "tests", "word before the closing counts")
	verbose := flag.Bool("v", false, "print every test's output, not only failures'")
	flag.Parse()
	os.Exit(summarize(os.Stdin, os.Stdout, *label, *verbose))
}

func summarize(in io.Reader, out io.Writer, label string, verbose bool) int {
	var passed, failed, skipped int
	pkgFailed := false
	logs := map[string][]string{} // package/test -> output lines
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(out, string(line)) // build errors arrive as plain text
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			pkgFailed = true
		case "output":
			if verbose {
				fmt.Fprint(out, e.Output)
			} else {
				logs[key] = append(logs[key], e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				status := map[string]string{"pass": "ok  ", "fail": "FAIL", "skip": "?   "}[e.Action]
				if e.Action == "fail" {
					pkgFailed = true
					if !verbose {
						// Package-level output holds panics and build failures.
						fmt.Fprint(out, strings.Join(logs[key], ""))
					}
				}
				fmt.Fprintf(out, "%s\t%s\t%.3fs\n", status, e.Package, e.Elapsed)
				delete(logs, key)
				continue
			}
			if e.Action == "fail" && !verbose {
				fmt.Fprint(out, strings.Join(logs[key], ""))
			}
			delete(logs, key)
			if strings.Contains(e.Test, "/") {
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
			case "skip":
				skipped++
			}
		}
	}
	fmt.Fprintf(out, "%s: %d passed, %d failed, %d skipped\n", label, passed, failed, skipped)
	if failed > 0 || pkgFailed || passed == 0 {
		return 1
	}
	return 0
}
