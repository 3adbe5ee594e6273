package main

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// row is one contender's line in a timed workload's table.
type row struct {
	Impl string
	Sum  summary
	// Ratio is Sum.Median over the reference contender's median (the raw
	// floor); 0 when either is missing.
	Ratio float64
	// Checks are the budgets this row is held to, each with its verdict.
	Checks []check
	// Missing says why there is no figure ("not built yet: ...", "n/a:
	// ...", "error: ..."); "" for a measured row.
	Missing string
	Note    string
}

// check is one budget and whether the figures miss it. A row without a
// figure is never over: it has nothing to judge.
type check struct {
	Text string
	Over bool
}

// over reports whether any budget of the row is missed.
func (r *row) over() bool {
	for _, c := range r.Checks {
		if c.Over {
			return true
		}
	}
	return false
}

// budgetText renders the checks: "ok ≤ 1.15x raw; **OVER** ≥ 5x faster
// than containerd", or just the texts for a row without a figure.
func (r *row) budgetText() string {
	var parts []string
	for _, c := range r.Checks {
		switch {
		case r.Missing != "":
			parts = append(parts, c.Text)
		case c.Over:
			parts = append(parts, "**OVER** "+c.Text)
		default:
			parts = append(parts, "ok "+c.Text)
		}
	}
	return strings.Join(parts, "; ")
}

// section is one workload: a title, its rows, and notes under the table.
type section struct {
	Title string
	// Desc says what the workload does, under the title.
	Desc string
	// Ref names the contender the ratios divide by.
	Ref   string
	Rows  []row
	Notes []string
	// Table replaces the timed rows for workloads whose figures do not
	// fit them (binary sizes, scale): a header and rows of cells.
	Table [][]string
	// Over lists, for a Table, the budgets missed, one line each.
	Over []string
}

// timedSection turns results into rows with ratios against ref.
func timedSection(title, desc, ref string, res []result) section {
	s := section{Title: title, Desc: desc, Ref: ref}
	var refMed time.Duration
	for _, r := range res {
		if r.name == ref && r.err == nil && r.skip == "" && len(r.times) > 0 {
			refMed = summarize(r.times).Median
		}
	}
	for _, r := range res {
		rw := row{Impl: r.name, Note: r.note}
		switch {
		case r.skip != "":
			rw.Missing = r.skip
		case r.err != nil:
			rw.Missing = "error: " + r.err.Error()
		case len(r.times) == 0:
			rw.Missing = "no sample"
		default:
			rw.Sum = summarize(r.times)
			if refMed > 0 {
				rw.Ratio = float64(rw.Sum.Median) / float64(refMed)
			}
		}
		s.Rows = append(s.Rows, rw)
	}
	return s
}

// find returns the row for impl, or nil.
func (s *section) find(impl string) *row {
	for i := range s.Rows {
		if s.Rows[i].Impl == impl {
			return &s.Rows[i]
		}
	}
	return nil
}

// ratioBudget holds impl to at most max times the reference median.
func (s *section) ratioBudget(impl string, max float64) {
	r := s.find(impl)
	if r == nil {
		return
	}
	r.Checks = append(r.Checks, check{
		Text: fmt.Sprintf("≤ %.2fx %s", max, s.Ref),
		Over: r.Missing == "" && r.Ratio > max,
	})
}

// absBudget holds impl's median under a fixed time.
func (s *section) absBudget(impl string, limit time.Duration) {
	r := s.find(impl)
	if r == nil {
		return
	}
	r.Checks = append(r.Checks, check{Text: "< " + fmtDur(limit), Over: r.Missing == "" && r.Sum.Median >= limit})
}

// fasterBudget holds impl's median at least factor times below each
// rival's (factor 1: merely faster), one check per rival. A rival without
// a figure is not held against it.
func (s *section) fasterBudget(impl string, factor float64, rivals ...string) {
	r := s.find(impl)
	if r == nil {
		return
	}
	word := "faster than"
	if factor != 1 {
		word = fmt.Sprintf("≥ %gx faster than", factor)
	}
	for _, name := range rivals {
		c := check{Text: word + " " + name}
		if o := s.find(name); o != nil && o.Missing == "" && r.Missing == "" {
			c.Text += fmt.Sprintf(" (%.1fx)", float64(o.Sum.Median)/float64(r.Sum.Median))
			c.Over = float64(r.Sum.Median)*factor > float64(o.Sum.Median)
		}
		r.Checks = append(r.Checks, c)
	}
}

// overBudget lists every missed budget, one line each:
// "title: impl (median, ratio): budget".
func overBudget(secs []section) []string {
	var out []string
	for _, s := range secs {
		for _, o := range s.Over {
			out = append(out, s.Title+": "+o)
		}
		for _, r := range s.Rows {
			for _, c := range r.Checks {
				if c.Over && r.Missing == "" {
					out = append(out, fmt.Sprintf("%s: %s (%s): %s", s.Title, r.Impl, ratioText(r), c.Text))
				}
			}
		}
	}
	return out
}

func ratioText(r row) string {
	if r.Ratio == 0 {
		return fmtDur(r.Sum.Median)
	}
	return fmt.Sprintf("%s, %.2fx", fmtDur(r.Sum.Median), r.Ratio)
}

// cells renders a timed section as table cells, header first.
func (s *section) cells() [][]string {
	if s.Table != nil {
		return s.Table
	}
	out := [][]string{{"contender", "n", "median", "p90", "vs " + s.Ref, "budget", "note"}}
	for _, r := range s.Rows {
		if r.Missing != "" {
			note := r.Missing
			if r.Note != "" {
				note += " (" + r.Note + ")"
			}
			out = append(out, []string{r.Impl, "-", "-", "-", "-", r.budgetText(), note})
			continue
		}
		ratio := "-"
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		out = append(out, []string{r.Impl, fmt.Sprint(r.Sum.N), fmtDur(r.Sum.Median), fmtDur(r.Sum.P90), ratio, r.budgetText(), r.Note})
	}
	return out
}

// markdown renders cells as a Markdown table with padded columns, so it
// reads as well in a terminal as rendered. A "|" inside a cell is escaped.
func markdown(cells [][]string) string {
	if len(cells) == 0 {
		return ""
	}
	cols := 0
	for _, r := range cells {
		cols = max(cols, len(r))
	}
	esc := make([][]string, len(cells))
	width := make([]int, cols)
	for i, r := range cells {
		esc[i] = make([]string, cols)
		for j := range cols {
			c := ""
			if j < len(r) {
				c = strings.ReplaceAll(r[j], "|", `\|`)
			}
			esc[i][j] = c
			width[j] = max(width[j], utf8.RuneCountInString(c), 3)
		}
	}
	var b strings.Builder
	line := func(r []string) {
		b.WriteString("|")
		for j, c := range r {
			b.WriteString(" ")
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[j]-utf8.RuneCountInString(c)))
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	line(esc[0])
	b.WriteString("|")
	for j := range cols {
		b.WriteString(strings.Repeat("-", width[j]+2))
		b.WriteString("|")
	}
	b.WriteString("\n")
	for _, r := range esc[1:] {
		line(r)
	}
	return b.String()
}

// fmtDur renders a duration with three significant digits in the unit
// that keeps it between 1 and 1000: "342 us", "1.69 ms", "87.0 ns".
func fmtDur(d time.Duration) string {
	v := float64(d)
	unit := "ns"
	for _, u := range []string{"us", "ms", "s"} {
		if v < 999.5 {
			break
		}
		v /= 1000
		unit = u
	}
	switch {
	case v >= 99.95:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 9.995:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// fmtBytes renders a size in MiB with two decimals, or KiB below one MiB.
func fmtBytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}

// render writes every section: title, table, notes.
func render(secs []section) string {
	var b strings.Builder
	for _, s := range secs {
		fmt.Fprintf(&b, "### %s\n\n", s.Title)
		if s.Desc != "" {
			fmt.Fprintf(&b, "%s\n\n", s.Desc)
		}
		b.WriteString(markdown(s.cells()))
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		if len(s.Notes) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}
