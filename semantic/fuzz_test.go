package semantic_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/cgsem/cgsem/semantic"
)

// Every parser either refuses with ErrInvalid or returns a value that its
// renderer writes back in a form the parser reads to the same value.

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"libvirt/lxc/web1", "a", "a/b/", "/a", "a//b", "a/../b", ".", "memory.max", "x/cgroup.procs",
		" a", "a\x00b", "tasks", strings.Repeat("a", 256), strings.Repeat("a/", 33), "grüße/\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := semantic.ParsePath(s)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParsePath(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePath(%q).String() = %q", s, p.String())
		}
		if p.Len() < 1 || p.Len() > semantic.MaxDepth {
			t.Fatalf("ParsePath(%q) has %d segments", s, p.Len())
		}
		for _, seg := range p.Segments() {
			if err := semantic.ValidateSegment(seg); err != nil {
				t.Fatalf("ParsePath(%q) accepted segment %q: %v", s, seg, err)
			}
		}
		q, err := semantic.NewPath(p.Segments()...)
		if err != nil || !q.Equal(p) {
			t.Fatalf("NewPath(%q) = %v, %v; want %v", p.Segments(), q, err, p)
		}
		if !p.HasPrefix(p.Parent()) || p.Parent().Len() != p.Len()-1 {
			t.Fatalf("Parent of %q is %q", p, p.Parent())
		}
	})
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{
		"512MiB", "512M", "1.5G", "4096", "max", "infinity", "0", "5MB", "1.", ".5", "16E", "15.99999999999999999999E",
		"16383.999999999999999999P", "18446744073709551615", "18446744073709551614", "-1", " 1", "1e9", "1.5KiB",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := semantic.ParseBytes(s)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParseBytes(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		for _, r := range []string{b.String(), b.KernelString()} {
			back, err := semantic.ParseBytes(r)
			if err != nil || back != b {
				t.Fatalf("ParseBytes(%q) = %d, rendered %q, parsed back as %d, %v", s, b, r, back, err)
			}
		}
	})
}

func FuzzParseCPUs(f *testing.F) {
	for _, s := range []string{"1.5", "0.2", "4", "max", "0", "0.001", "0.0009", "1048576", "1.0000001", ".5", "1.", "1e3", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := semantic.ParseCPUs(s)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParseCPUs(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		if v == 0 {
			if s != "max" {
				t.Fatalf("ParseCPUs(%q) = 0 (no cap) for a number", s)
			}
			return
		}
		if v < semantic.MinCPUs || v > semantic.MaxCPUs {
			t.Fatalf("ParseCPUs(%q) = %g, out of range", s, v)
		}
		r := strconv.FormatFloat(v, 'f', -1, 64)
		back, err := semantic.ParseCPUs(r)
		if err != nil || back != v {
			t.Fatalf("ParseCPUs(%q) = %g, rendered %q, parsed back as %g, %v", s, v, r, back, err)
		}
		res := &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: v, Period: semantic.MaxCPUPeriod}}}
		if err := res.Validate(); err != nil {
			t.Fatalf("ParseCPUs(%q) = %g, which Validate refuses on the longest period: %v", s, v, err)
		}
	})
}

func FuzzParseCPUSet(f *testing.F) {
	for _, s := range []string{"0-3,7", "", "\n", "3-1", "0--0", "1,,2", "8191", "8192", "01", "+1", "0-1,1-2", "7,0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := semantic.ParseCPUSet(s)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParseCPUSet(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		if err := set.Validate(); err != nil {
			t.Fatalf("ParseCPUSet(%q) = %v, which Validate refuses: %v", s, set, err)
		}
		back, err := semantic.ParseCPUSet(set.String())
		if err != nil || back.String() != set.String() || len(back) != len(set) {
			t.Fatalf("ParseCPUSet(%q) = %v, rendered %q, parsed back as %v, %v", s, set, set.String(), back, err)
		}
	})
}

// FuzzParseDeviceRule fuzzes spec strings only: a leading "/" would make
// the parser stat random paths.
func FuzzParseDeviceRule(f *testing.F) {
	for _, s := range []string{"c 1:3 rwm", "b *:* r", "a", "a *:* rwm", "a 1:3 r", "c 1:3", "c 4096:0 r",
		"c +1:3", "c 1:-0", "c 1:3 rr", "  c\t1:3  mw", "x 1:3", "c 1:3:4"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allow bool) {
		if strings.HasPrefix(s, "/") {
			return
		}
		r, err := semantic.ParseDeviceRule(s, allow)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParseDeviceRule(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseDeviceRule(%q) = %v, which Validate refuses: %v", s, r, err)
		}
		if r.Allow != allow {
			t.Fatalf("ParseDeviceRule(%q, %v) has Allow %v", s, allow, r.Allow)
		}
		back, err := semantic.ParseDeviceRule(r.Spec(), allow)
		if err != nil || back != r {
			t.Fatalf("ParseDeviceRule(%q) = %v, Spec %q parsed back as %v, %v", s, r, r.Spec(), back, err)
		}
	})
}

// FuzzParseIOLimit fuzzes MAJOR:MINOR forms only, for the same reason.
func FuzzParseIOLimit(f *testing.F) {
	for _, s := range []string{"8:0:rbps=10M,wiops=100", "8:0:rbps=1,rbps=2", "8:0:wbps=max", "8:0:rbps=infinity",
		"*:*:rbps=1", "8:rbps=1", "8:0:riops=1.5", "8:0:rbps=1,", "259:1:rbps=1.5K,wbps=2G,riops=3,wiops=4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "/") {
			return
		}
		l, err := semantic.ParseIOLimit(s)
		if err != nil {
			if !errors.Is(err, semantic.ErrInvalid) {
				t.Fatalf("ParseIOLimit(%q): error does not wrap ErrInvalid: %v", s, err)
			}
			return
		}
		if err := (&semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{l}}}).Validate(); err != nil {
			t.Fatalf("ParseIOLimit(%q) = %+v, which Validate refuses: %v", s, l, err)
		}
		back, err := semantic.ParseIOLimit(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseIOLimit(%q) = %+v, rendered %q, parsed back as %+v, %v", s, l, l.String(), back, err)
		}
	})
}
