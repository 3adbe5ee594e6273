package fake_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

func TestDefaults(t *testing.T) {
	unlimited := semantic.Bytes(semantic.Unlimited)
	kernelDefaults := func(cpus, mems semantic.CPUSet) *semantic.Resources {
		return &semantic.Resources{
			Memory: &semantic.Memory{Max: new(unlimited), High: new(unlimited), Low: new(semantic.Bytes(0)),
				Min: new(semantic.Bytes(0)), Swap: new(unlimited)},
			CPU: &semantic.CPU{Weight: new(uint64(100)), Max: &semantic.CPUMax{CPUs: 0, Period: 100 * time.Millisecond},
				Cpus: cpus, Mems: mems},
			IO:      &semantic.IO{Weight: new(uint64(100)), Limits: []semantic.IOLimit{}},
			Pids:    &semantic.Pids{Max: new(semantic.Count(semantic.Unlimited))},
			Devices: &semantic.Devices{Default: semantic.AllowByDefault},
			HugeTLB: []semantic.HugeTLBLimit{},
		}
	}
	tests := []struct {
		name string
		opts fake.Options
		want *semantic.Resources
	}{
		{"single CPU host by default", fake.Options{}, kernelDefaults(semantic.CPUSet{0}, semantic.CPUSet{0})},
		{"host sets given", hostOpts(), kernelDefaults(semantic.CPUSet{0, 1, 2, 3}, semantic.CPUSet{0, 1})},
		{"host sets sorted", fake.Options{HostCPUs: semantic.CPUSet{3, 1, 1}, HostMems: semantic.CPUSet{1, 0}},
			kernelDefaults(semantic.CPUSet{1, 3}, semantic.CPUSet{0, 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, tt.opts)
			// A new group, and a level made on the way to a configured one.
			create(t, d, "a/b", fullRequestFor(tt.opts))
			create(t, d, "c", nil)
			for _, path := range []string{"a", "c"} {
				g, err := d.Open(t.Context(), semantic.MustPath(path))
				require.NoError(t, err)
				require.Equal(t, tt.want, readBack(t, g), path)
			}
		})
	}
}

// fullRequestFor is fullRequest where the host has the CPUs it names, and
// memory limits only otherwise.
func fullRequestFor(opts fake.Options) *semantic.Resources {
	if len(opts.HostCPUs) == 4 {
		return fullRequest()
	}
	return &semantic.Resources{Memory: fullRequest().Memory}
}

func TestApplyReadBack(t *testing.T) {
	tests := []struct {
		name     string
		pageSize uint64
		apply    []*semantic.Resources // applied in turn
		want     *semantic.Resources   // fields expected to differ from the defaults
	}{
		{name: "nil request", apply: []*semantic.Resources{nil}, want: &semantic.Resources{}},
		{name: "empty request", apply: []*semantic.Resources{{}}, want: &semantic.Resources{}},
		{
			name: "memory rounds down to 4KiB pages", pageSize: 4096,
			apply: []*semantic.Resources{{Memory: &semantic.Memory{Max: new(semantic.Bytes(1000000)), Low: new(semantic.Bytes(4095))}}},
			want:  &semantic.Resources{Memory: &semantic.Memory{Max: new(semantic.Bytes(999424)), Low: new(semantic.Bytes(0))}},
		},
		{
			name: "memory rounds down to 64KiB pages", pageSize: 64 * 1024,
			apply: []*semantic.Resources{{Memory: &semantic.Memory{High: new(semantic.Bytes(1000000)), Swap: new(semantic.Bytes(65536))}}},
			want:  &semantic.Resources{Memory: &semantic.Memory{High: new(semantic.Bytes(983040)), Swap: new(semantic.Bytes(65536))}},
		},
		{
			name:  "memory max stays max",
			apply: []*semantic.Resources{{Memory: &semantic.Memory{Max: new(semantic.Bytes(semantic.Unlimited))}}},
			want:  &semantic.Resources{},
		},
		{
			name:  "cpu max gets the default period",
			apply: []*semantic.Resources{{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5}}}},
			want:  &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 1.5, Period: 100 * time.Millisecond}}},
		},
		{
			name:  "cpu max rounds to whole microseconds of quota",
			apply: []*semantic.Resources{{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.0123456}}}},
			want:  &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.01235, Period: 100 * time.Millisecond}}},
		},
		{
			name: "cpu max removed",
			apply: []*semantic.Resources{
				{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 2, Period: time.Second}}},
				{CPU: &semantic.CPU{Max: &semantic.CPUMax{}}},
			},
			want: &semantic.Resources{},
		},
		{
			name:  "cpu sets",
			apply: []*semantic.Resources{{CPU: &semantic.CPU{Cpus: semantic.CPUSet{0, 2, 3}, Mems: semantic.CPUSet{1}, Weight: new(uint64(10000))}}},
			want:  &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{0, 2, 3}, Mems: semantic.CPUSet{1}, Weight: new(uint64(10000))}},
		},
		{
			name: "io limits sorted by device",
			apply: []*semantic.Resources{{IO: &semantic.IO{Limits: []semantic.IOLimit{
				{Major: 8, Minor: 16, ReadBPS: 10}, {Major: 8, Minor: 0, WriteBPS: 20}, {Major: 7, Minor: 3, ReadIOPS: 1},
			}}}},
			want: &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{
				{Major: 7, Minor: 3, ReadIOPS: 1}, {Major: 8, Minor: 0, WriteBPS: 20}, {Major: 8, Minor: 16, ReadBPS: 10},
			}}},
		},
		{
			name: "io limits replace the list",
			apply: []*semantic.Resources{
				{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, Minor: 0, WriteBPS: 20}}}},
				{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, Minor: 16, ReadBPS: 10}}}},
			},
			want: &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, Minor: 16, ReadBPS: 10}}}},
		},
		{
			name: "io limits cleared by an empty list",
			apply: []*semantic.Resources{
				{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8, Minor: 0, WriteBPS: 20}}}},
				{IO: &semantic.IO{Limits: []semantic.IOLimit{}}},
			},
			want: &semantic.Resources{},
		},
		{
			name: "hugetlb rounded to its page size and sorted",
			apply: []*semantic.Resources{{HugeTLB: []semantic.HugeTLBLimit{
				{PageSize: semantic.GiB, Limit: 3*semantic.GiB + 5}, {PageSize: 2 * semantic.MiB, Limit: 5*semantic.MiB + 1},
			}}},
			want: &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{
				{PageSize: 2 * semantic.MiB, Limit: 4 * semantic.MiB}, {PageSize: semantic.GiB, Limit: 3 * semantic.GiB},
			}},
		},
		{
			name: "devices replace the list",
			apply: []*semantic.Resources{
				fullRequest(),
				{Devices: &semantic.Devices{Default: semantic.DenyByDefault}},
			},
			want: func() *semantic.Resources {
				r := fullRequest().Normalize(4096)
				r.Devices = &semantic.Devices{Default: semantic.DenyByDefault}
				return r
			}(),
		},
		{name: "every field", apply: []*semantic.Resources{fullRequest()}, want: fullRequest().Normalize(4096)},
		{
			name:  "a later apply changes only its fields",
			apply: []*semantic.Resources{fullRequest(), {Pids: &semantic.Pids{Max: new(semantic.Count(9))}}},
			want: func() *semantic.Resources {
				r := fullRequest().Normalize(4096)
				r.Pids.Max = new(semantic.Count(9))
				return r
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := hostOpts()
			opts.PageSize = tt.pageSize
			if opts.PageSize == 0 {
				opts.PageSize = 4096
			}
			d := newDriver(t, opts)
			g := create(t, d, "x/y", nil)
			defaults := readBack(t, g)
			model := defaults
			for _, r := range tt.apply {
				require.NoError(t, g.Apply(t.Context(), r))
				model = semantic.Merge(model, r.Normalize(opts.PageSize))
			}
			got := readBack(t, g)
			require.Equal(t, semantic.Merge(defaults, tt.want), got, "against the expected values")
			require.Equal(t, model, got, "against Merge of the normalized requests")

			// Create with the same request reaches the same state.
			if len(tt.apply) == 1 {
				g2 := create(t, d, "z", tt.apply[0])
				require.Equal(t, got, readBack(t, g2))
			}
		})
	}
}

func TestApplyRollbackAtEveryPosition(t *testing.T) {
	fields := fullRequest().Fields()
	require.Len(t, fields, len(semantic.ResourceFeatures), "fullRequest touches every field")
	errnos := []syscall.Errno{syscall.EBUSY, syscall.EACCES, syscall.EINVAL}
	for nth := 1; nth <= len(fields); nth++ {
		for _, errno := range errnos {
			t.Run(fmt.Sprintf("%d-%s/%s", nth, fields[nth-1], errno), func(t *testing.T) {
				d := newDriver(t, hostOpts())
				g := create(t, d, "a/b", otherRequest())
				before := readBack(t, g)

				d.InjectFault(nth, errno)
				err := g.Apply(t.Context(), fullRequest())
				e := requireKind(t, err, semantic.Classify(errno))
				require.ErrorIs(t, err, errno)
				require.Equal(t, "set "+string(fields[nth-1]), e.Op, "the error names the failing field")
				require.Equal(t, "a/b", e.Group)
				require.Equal(t, before, readBack(t, g), "every field written before the failure is restored")

				// The fault fired once; the same request now goes through.
				require.NoError(t, g.Apply(t.Context(), fullRequest()))
				require.Equal(t, semantic.Merge(before, fullRequest().Normalize(4096)), readBack(t, g))
			})
		}
	}
}

func TestApplyRollbackOnKernelRefusal(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*semantic.Resources)
		field semantic.Feature
	}{
		{"CPU the host lacks", func(r *semantic.Resources) { r.CPU.Cpus = semantic.CPUSet{2, 4} }, semantic.CPUSetCPUs},
		{"memory node the host lacks", func(r *semantic.Resources) { r.CPU.Mems = semantic.CPUSet{0, 2} }, semantic.CPUSetMems},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, hostOpts())
			g := create(t, d, "a", otherRequest())
			before := readBack(t, g)
			req := fullRequest()
			tt.mod(req)
			err := g.Apply(t.Context(), req)
			e := requireKind(t, err, semantic.ErrInvalid)
			require.ErrorIs(t, err, syscall.EINVAL, "as the kernel's write would")
			require.Equal(t, "set "+string(tt.field), e.Op)
			require.Equal(t, before, readBack(t, g))
		})
	}
}

func TestApplyInvalid(t *testing.T) {
	tests := []struct {
		name string
		req  *semantic.Resources
	}{
		{"cpu weight 0", &semantic.Resources{CPU: &semantic.CPU{Weight: new(uint64(0))}}},
		{"cpu weight above 10000", &semantic.Resources{CPU: &semantic.CPU{Weight: new(uint64(10001))}}},
		{"cpu quota below 1ms", &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{CPUs: 0.001, Period: 100 * time.Millisecond}}}},
		{"empty cpu set", &semantic.Resources{CPU: &semantic.CPU{Cpus: semantic.CPUSet{}}}},
		{"io weight 0", &semantic.Resources{IO: &semantic.IO{Weight: new(uint64(0))}}},
		{"io device twice", &semantic.Resources{IO: &semantic.IO{Limits: []semantic.IOLimit{{Major: 8}, {Major: 8}}}}},
		{"device default missing", &semantic.Resources{Devices: &semantic.Devices{}}},
		{"huge page size not a power of two", &semantic.Resources{HugeTLB: []semantic.HugeTLBLimit{{PageSize: 3 * semantic.MiB}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, hostOpts())
			g := create(t, d, "a", otherRequest())
			before := readBack(t, g)
			// A valid field before the invalid one must not be written either.
			req := semantic.Merge(&semantic.Resources{Pids: &semantic.Pids{Max: new(semantic.Count(1))}}, tt.req)
			e := requireKind(t, g.Apply(t.Context(), req), semantic.ErrInvalid)
			require.Equal(t, "a", e.Group)
			require.Equal(t, before, readBack(t, g))

			_, err := d.Create(t.Context(), semantic.MustPath("b"), req)
			requireKind(t, err, semantic.ErrInvalid)
			_, err = d.Open(t.Context(), semantic.MustPath("b"))
			requireKind(t, err, semantic.ErrNotExist)
		})
	}
}

func TestUnsupportedFeatures(t *testing.T) {
	for _, f := range semantic.ResourceFeatures {
		t.Run(string(f), func(t *testing.T) {
			opts := hostOpts()
			opts.Unsupported = []semantic.Feature{f}
			d := newDriver(t, opts)
			c := d.Capabilities().Get(f)
			require.Equal(t, semantic.Unsupported, c.Support)
			require.Equal(t, "declared unsupported", c.Reason)

			g := create(t, d, "a", nil)
			before := readBack(t, g)
			require.NotContains(t, before.Fields(), f, "read-back omits an unsupported field")
			require.Len(t, before.Fields(), len(semantic.ResourceFeatures)-1, "and has every other")

			err := g.Apply(t.Context(), fullRequest())
			e := requireKind(t, err, semantic.ErrNotSupported)
			require.ErrorIs(t, err, errors.ErrUnsupported)
			require.Contains(t, e.Error(), string(f), "the error names the field")
			require.Equal(t, before, readBack(t, g), "nothing changed")

			_, err = d.Create(t.Context(), semantic.MustPath("b/c"), fullRequest())
			requireKind(t, err, semantic.ErrNotSupported)
			kids, err := d.Children(t.Context(), semantic.Root)
			require.NoError(t, err)
			require.Equal(t, []semantic.Path{semantic.MustPath("a")}, kids, "nothing created")

			_, err = g.Plan(t.Context(), fullRequest())
			requireKind(t, err, semantic.ErrNotSupported)

			// Every other field still works.
			rest := fullRequest().Clone()
			rest = without(rest, f)
			require.NoError(t, g.Apply(t.Context(), rest))
			require.Equal(t, semantic.Merge(before, rest.Normalize(4096)), readBack(t, g))
		})
	}
}

// without returns r with field f unset.
func without(r *semantic.Resources, f semantic.Feature) *semantic.Resources {
	switch f {
	case semantic.MemoryMax:
		r.Memory.Max = nil
	case semantic.MemoryHigh:
		r.Memory.High = nil
	case semantic.MemoryLow:
		r.Memory.Low = nil
	case semantic.MemoryMin:
		r.Memory.Min = nil
	case semantic.MemorySwap:
		r.Memory.Swap = nil
	case semantic.CPUWeight:
		r.CPU.Weight = nil
	case semantic.CPUMaxFeature:
		r.CPU.Max = nil
	case semantic.CPUSetCPUs:
		r.CPU.Cpus = nil
	case semantic.CPUSetMems:
		r.CPU.Mems = nil
	case semantic.IOWeight:
		r.IO.Weight = nil
	case semantic.IOLimits:
		r.IO.Limits = nil
	case semantic.PidsMax:
		r.Pids = nil // its only field
	case semantic.DevicesFeature:
		r.Devices = nil
	case semantic.HugeTLB:
		r.HugeTLB = nil
	}
	return r
}

func TestCapabilities(t *testing.T) {
	d := newDriver(t, fake.Options{Unsupported: []semantic.Feature{semantic.Freeze, semantic.MemorySwap}})
	caps := d.Capabilities()
	for _, f := range semantic.AllFeatures() {
		c := caps.Get(f)
		switch f {
		case semantic.Freeze, semantic.MemorySwap:
			require.Equal(t, semantic.Unsupported, c.Support, f)
			require.Equal(t, "declared unsupported", c.Reason, f)
		case semantic.StatsPressure:
			require.Equal(t, semantic.Unsupported, c.Support, "the fake has no pressure figures")
		case semantic.Threads:
			// Depends on the kernel (PIDFD_THREAD); either way it is stated.
			if c.Support == semantic.Unsupported {
				require.NotEmpty(t, c.Reason)
			}
		default:
			require.Equal(t, semantic.Exact, c.Support, f)
		}
	}
	// The map is the caller's to change.
	delete(caps, semantic.MemoryMax)
	require.Equal(t, semantic.Exact, d.Capabilities().Get(semantic.MemoryMax).Support)
}

func TestPlan(t *testing.T) {
	d := newDriver(t, hostOpts())
	g := create(t, d, "a", otherRequest())
	before := readBack(t, g)

	plan, err := g.Plan(t.Context(), fullRequest())
	require.NoError(t, err)
	var targets []string
	values := map[string]string{}
	for _, s := range plan.Steps {
		require.Equal(t, "write", s.Action)
		require.Equal(t, string(s.Feature), s.Target)
		targets = append(targets, s.Target)
		values[s.Target] = s.Value
	}
	var want []string
	for _, f := range fullRequest().Fields() {
		want = append(want, string(f))
	}
	require.Equal(t, want, targets, "one write per field, in Apply's order")
	require.Equal(t, map[string]string{
		"memory.max":  "536870912",
		"memory.high": "419430400",
		"memory.low":  "67108864",
		"memory.min":  "33554432",
		"memory.swap": "134217728",
		"cpu.weight":  "250",
		"cpu.max":     "75000 50000",
		"cpu.cpus":    "1-2",
		"cpu.mems":    "0",
		"io.weight":   "300",
		"io.limits":   "8:0 rbps=1048576 wbps=max riops=max wiops=max; 8:16 rbps=max wbps=max riops=max wiops=100",
		"pids.max":    "64",
		"devices":     "deny; allow c 1:3 rwm; allow c 136:* rw",
		"hugetlb":     "2MiB=1073741824",
	}, values)
	require.Equal(t, before, readBack(t, g), "a plan changes nothing")

	// A plan makes no backend change: the fault armed for the next change
	// is still there for the apply.
	d.InjectFault(1, syscall.EBUSY)
	_, err = g.Plan(t.Context(), fullRequest())
	require.NoError(t, err)
	requireKind(t, g.Apply(t.Context(), fullRequest()), semantic.ErrBusy)

	empty, err := g.Plan(t.Context(), &semantic.Resources{})
	require.NoError(t, err)
	require.Empty(t, empty.Steps)
	require.Equal(t, "", empty.String())

	uncapped, err := g.Plan(t.Context(), &semantic.Resources{CPU: &semantic.CPU{Max: &semantic.CPUMax{}}})
	require.NoError(t, err)
	require.Equal(t, "write cpu.max max 100000\n", uncapped.String())

	_, err = g.Plan(t.Context(), &semantic.Resources{CPU: &semantic.CPU{Weight: new(uint64(0))}})
	requireKind(t, err, semantic.ErrInvalid)
}

func TestInjectFaultCounting(t *testing.T) {
	req := &semantic.Resources{
		Memory: &semantic.Memory{Max: new(semantic.MiB)},
		Pids:   &semantic.Pids{Max: new(semantic.Count(5))},
	}
	// Creating p/q/r below an existing p: two levels made, two fields written.
	ops := []string{"mkdir", "mkdir", "set memory.max", "set pids.max"}
	groups := []string{"p/q", "p/q/r", "p/q/r", "p/q/r"}
	for nth := 1; nth <= len(ops); nth++ {
		t.Run(fmt.Sprintf("change %d %s", nth, ops[nth-1]), func(t *testing.T) {
			d := newDriver(t, fake.Options{})
			create(t, d, "p", nil)
			d.InjectFault(nth, syscall.EACCES)
			_, err := d.Create(t.Context(), semantic.MustPath("p/q/r"), req)
			e := requireKind(t, err, semantic.ErrPermission)
			require.Equal(t, ops[nth-1], e.Op)
			require.Equal(t, groups[nth-1], e.Group)
			require.Equal(t, []string{"p"}, allGroups(t, d), "nothing left behind, the existing level kept")

			_, err = d.Create(t.Context(), semantic.MustPath("p/q/r"), req)
			require.NoError(t, err, "the fault fired once")
		})
	}
	t.Run("beyond the operation it stays armed", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		d.InjectFault(len(ops)+2, syscall.EBUSY)
		g := create(t, d, "p/q/r", req) // 3 levels + 2 writes: 5 changes
		requireKind(t, g.Apply(t.Context(), req), semantic.ErrBusy)
	})
	t.Run("cleared", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		d.InjectFault(1, syscall.EBUSY)
		d.InjectFault(0, nil)
		create(t, d, "p", req)
	})
	t.Run("nil error is EIO", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		d.InjectFault(1, nil)
		_, err := d.Create(t.Context(), semantic.MustPath("p"), nil)
		require.ErrorIs(t, err, syscall.EIO)
	})
	t.Run("delete counts one per group removed", func(t *testing.T) {
		d := newDriver(t, fake.Options{})
		g := create(t, d, "p/q/r", nil)
		create(t, d, "p/s", nil)
		top, err := d.Open(t.Context(), semantic.MustPath("p"))
		require.NoError(t, err)
		d.InjectFault(3, syscall.EBUSY)
		err = top.Delete(t.Context(), &semantic.DeleteOptions{Recursive: true})
		e := requireKind(t, err, semantic.ErrBusy)
		require.Equal(t, "rmdir", e.Op)
		// Children go first, in name order: p/q/r, p/q, then p/s fails.
		require.Equal(t, []string{"p", "p/s"}, allGroups(t, d))
		_, err = g.Resources(t.Context())
		requireKind(t, err, semantic.ErrNotExist)
		require.NoError(t, top.Delete(t.Context(), &semantic.DeleteOptions{Recursive: true}))
		require.Empty(t, allGroups(t, d))
	})
}

// allGroups lists every group below the root, depth first, sorted.
func allGroups(t *testing.T, d semantic.Driver) []string {
	t.Helper()
	var out []string
	var walk func(p semantic.Path)
	walk = func(p semantic.Path) {
		kids, err := d.Children(t.Context(), p)
		require.NoError(t, err)
		for _, k := range kids {
			out = append(out, k.String())
			walk(k)
		}
	}
	walk(semantic.Root)
	slices.Sort(out)
	return out
}

func TestApplyCancelled(t *testing.T) {
	d := newDriver(t, hostOpts())
	g := create(t, d, "a", otherRequest())
	before := readBack(t, g)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := g.Apply(ctx, fullRequest())
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, before, readBack(t, g))
	require.True(t, strings.HasPrefix(err.Error(), "cgsem/fake: apply on a: "), err.Error())
}
