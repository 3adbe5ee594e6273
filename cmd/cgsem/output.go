package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

// The --json documents; doc.go describes them and the tests pin them.

type showOutput struct {
	Driver    string              `json:"driver"`
	Path      semantic.Path       `json:"path"`
	Processes []int               `json:"processes"`
	Resources *semantic.Resources `json:"resources"`
	Stats     *semantic.Stats     `json:"stats"`
}

type lsOutput struct {
	Driver string          `json:"driver"`
	Path   semantic.Path   `json:"path"`
	Groups []semantic.Path `json:"groups"`
}

type planOutput struct {
	Driver string              `json:"driver"`
	Path   semantic.Path       `json:"path"`
	Steps  []semantic.PlanStep `json:"steps"`
}

type driversOutput struct {
	Picked   string             `json:"picked"`
	Forced   bool               `json:"forced"`
	Auto     string             `json:"auto"`
	Verdicts []registry.Verdict `json:"verdicts"`
}

func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned rows; each row's cells are joined by tabs.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 4, 2, ' ', 0)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

// flush writes the table without the padding tabwriter leaves after a
// row's last non-empty cell.
func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	var out strings.Builder
	for line := range strings.Lines(t.buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := io.WriteString(t.w, out.String())
	return err
}

func (c *cli) printShow(out showOutput) error {
	if out.Processes == nil {
		out.Processes = []int{}
	}
	if c.g.json {
		return c.writeJSON(out)
	}
	t := newTable(c.stdout)
	t.row("path", out.Path.Display())
	t.row("driver", out.Driver)
	pids := "none"
	if len(out.Processes) > 0 {
		s := make([]string, len(out.Processes))
		for i, p := range out.Processes {
			s[i] = strconv.Itoa(p)
		}
		pids = strings.Join(s, " ")
	}
	t.row("processes", pids)
	// Headings and blank lines carry an empty cell so that one column
	// runs through the whole output.
	t.row("", "")
	t.row("settings", "")
	settingRows(t, out.Resources)
	t.row("", "")
	t.row("stats", "")
	statRows(t, out.Stats)
	return t.flush()
}

func settingRows(t *table, r *semantic.Resources) {
	if r == nil || len(r.Fields()) == 0 {
		t.row("  none read back", "")
		return
	}
	if m := r.Memory; m != nil {
		for _, f := range []struct {
			name string
			v    *semantic.Bytes
		}{{"memory.max", m.Max}, {"memory.high", m.High}, {"memory.low", m.Low}, {"memory.min", m.Min}, {"memory.swap", m.Swap}} {
			if f.v != nil {
				t.row("  "+f.name, f.v.String())
			}
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Weight != nil {
			t.row("  cpu.weight", strconv.FormatUint(*cpu.Weight, 10))
		}
		if m := cpu.Max; m != nil {
			cap := "max"
			if m.CPUs != 0 {
				cap = strconv.FormatFloat(m.CPUs, 'f', -1, 64) + " CPUs"
			}
			t.row("  cpu.max", cap+" per "+m.EffectivePeriod().String())
		}
		if cpu.Cpus != nil {
			t.row("  cpu.cpus", cpu.Cpus.String())
		}
		if cpu.Mems != nil {
			t.row("  cpu.mems", cpu.Mems.String())
		}
	}
	if io := r.IO; io != nil {
		if io.Weight != nil {
			t.row("  io.weight", strconv.FormatUint(*io.Weight, 10))
		}
		for _, l := range io.Limits {
			t.row("  io.limit "+l.Device(), ioLimitString(l))
		}
	}
	if r.Pids != nil && r.Pids.Max != nil {
		t.row("  pids.max", r.Pids.Max.String())
	}
	if d := r.Devices; d != nil {
		t.row("  devices", string(d.Default)+" by default")
		for i, rule := range d.Rules {
			t.row(fmt.Sprintf("  devices[%d]", i+1), rule.String())
		}
	}
	for _, h := range r.HugeTLB {
		t.row("  hugetlb."+h.PageSize.String(), h.Limit.String())
	}
}

func ioLimitString(l semantic.IOLimit) string {
	var parts []string
	for _, f := range []struct {
		k string
		v uint64
	}{{"rbps", l.ReadBPS}, {"wbps", l.WriteBPS}, {"riops", l.ReadIOPS}, {"wiops", l.WriteIOPS}} {
		if f.v != 0 {
			parts = append(parts, f.k+"="+strconv.FormatUint(f.v, 10))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func statRows(t *table, s *semantic.Stats) {
	if s == nil {
		t.row("  none", "")
		return
	}
	n := 0
	bytesRow := func(name string, v *uint64) {
		if v != nil {
			t.row("  "+name, humanBytes(*v))
			n++
		}
	}
	countRow := func(name string, v *uint64) {
		if v != nil {
			t.row("  "+name, strconv.FormatUint(*v, 10))
			n++
		}
	}
	durRow := func(name string, v *time.Duration) {
		if v != nil {
			t.row("  "+name, v.String())
			n++
		}
	}
	if m := s.Memory; m != nil {
		bytesRow("memory.usage", m.Usage)
		bytesRow("memory.peak", m.Peak)
		bytesRow("memory.anon", m.Anon)
		bytesRow("memory.file", m.File)
		bytesRow("memory.swap", m.Swap)
		countRow("memory.oom", m.OOM)
		countRow("memory.oom_kill", m.OOMKill)
	}
	if cpu := s.CPU; cpu != nil {
		durRow("cpu.usage", cpu.Usage)
		durRow("cpu.user", cpu.User)
		durRow("cpu.system", cpu.System)
		countRow("cpu.periods", cpu.Periods)
		countRow("cpu.throttled_periods", cpu.ThrottledPeriods)
		durRow("cpu.throttled_time", cpu.ThrottledTime)
	}
	if p := s.Pids; p != nil {
		countRow("pids.current", p.Current)
		if p.Limit != nil {
			t.row("  pids.limit", p.Limit.String())
			n++
		}
	}
	for _, d := range s.IO {
		dev := fmt.Sprintf("io %d:%d ", d.Major, d.Minor)
		bytesRow(dev+"rbytes", d.ReadBytes)
		bytesRow(dev+"wbytes", d.WriteBytes)
		countRow(dev+"rios", d.ReadIOs)
		countRow(dev+"wios", d.WriteIOs)
	}
	if p := s.Pressure; p != nil {
		for _, r := range []struct {
			name string
			p    *semantic.Pressure
		}{{"cpu", p.CPU}, {"memory", p.Memory}, {"io", p.IO}} {
			if r.p == nil {
				continue
			}
			for _, l := range []struct {
				name string
				l    *semantic.PressureLine
			}{{"some", r.p.Some}, {"full", r.p.Full}} {
				if l.l != nil {
					t.row("  pressure."+r.name+"."+l.name, fmt.Sprintf("avg10=%.2f avg60=%.2f avg300=%.2f total=%v", l.l.Avg10, l.l.Avg60, l.l.Avg300, l.l.Total))
					n++
				}
			}
		}
	}
	if n == 0 {
		t.row("  none available", "")
	}
}

// humanBytes renders a byte count for people: "4096" below 1KiB...
// "12.5MiB" above, to one decimal.
func humanBytes(v uint64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if v < 1024 {
		return strconv.FormatUint(v, 10) + "B"
	}
	f, i := float64(v)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + units[i]
}

func (c *cli) printLs(driver string, p semantic.Path, groups []semantic.Path) error {
	if groups == nil {
		groups = []semantic.Path{}
	}
	if c.g.json {
		return c.writeJSON(lsOutput{Driver: driver, Path: p, Groups: groups})
	}
	for _, g := range groups {
		if _, err := fmt.Fprintln(c.stdout, g.String()); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) printPlan(driver string, p semantic.Path, plan *semantic.Plan) error {
	out := planOutput{Driver: driver, Path: p, Steps: []semantic.PlanStep{}}
	if plan != nil && plan.Steps != nil {
		out.Steps = plan.Steps
	}
	if c.g.json {
		return c.writeJSON(out)
	}
	if len(out.Steps) == 0 {
		_, err := fmt.Fprintln(c.stdout, "nothing to change")
		return err
	}
	t := newTable(c.stdout)
	for _, s := range out.Steps {
		feature := ""
		if s.Feature != "" {
			feature = "(" + string(s.Feature) + ")"
		}
		t.row(s.Action, s.Target, s.Value, feature)
	}
	return t.flush()
}

func (c *cli) printEvent(ev semantic.Event) error {
	if c.g.json {
		// One compact object a line, so a reader can stream them.
		return json.NewEncoder(c.stdout).Encode(ev)
	}
	_, err := fmt.Fprintln(c.stdout, ev.String())
	return err
}

func (c *cli) printDrivers(sel registry.Selection) error {
	out := driversOutput{Picked: sel.Picked, Forced: sel.Forced, Verdicts: sel.Verdicts}
	for _, v := range sel.Verdicts {
		if v.OK {
			out.Auto = v.Name
			break
		}
	}
	if out.Verdicts == nil {
		out.Verdicts = []registry.Verdict{}
	}
	if c.g.json {
		return c.writeJSON(out)
	}
	t := newTable(c.stdout)
	t.row("DRIVER", "PRIORITY", "FITS", "REASON")
	for _, v := range out.Verdicts {
		fits := "no"
		if v.OK {
			fits = "yes"
		}
		t.row(v.Name, strconv.Itoa(v.Priority), fits, v.Reason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(c.stdout, "\n"+c.selectionSentence(out))
	return err
}

// selectionSentence says which driver a command would use, and why.
func (c *cli) selectionSentence(out driversOutput) string {
	var auto string
	if out.Auto == "" {
		auto = "no driver's probe accepts this host"
	} else {
		auto = fmt.Sprintf("auto-selection picks %q: the highest priority whose probe accepts this host", out.Auto)
	}
	if !out.Forced {
		return auto
	}
	by := "--driver"
	if c.g.driver == c.env(registry.EnvDriver) {
		by = registry.EnvDriver
	}
	s := fmt.Sprintf("%s forces %q", by, out.Picked)
	known := false
	for _, v := range out.Verdicts {
		known = known || v.Name == out.Picked
	}
	if !known {
		s += ", which is not registered (forgotten import?)"
	}
	return s + "; without it, " + auto
}

// formatVerdicts lists each driver's verdict, for the no-driver error.
func formatVerdicts(sel registry.Selection) string {
	var b strings.Builder
	for _, v := range sel.Verdicts {
		fits := "no"
		if v.OK {
			fits = "yes"
		}
		fmt.Fprintf(&b, "  %s (priority %d): %s, %s\n", v.Name, v.Priority, fits, v.Reason)
	}
	if len(sel.Verdicts) == 0 {
		b.WriteString("  no driver is registered\n")
	}
	return b.String()
}
