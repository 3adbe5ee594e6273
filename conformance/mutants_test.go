package conformance_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/conformance"
	"github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/semantic"
)

// A suite that cannot fail proves nothing. TestMutants runs the suite on
// the fake with one bug planted at a time and checks the subtest meant to
// catch that bug fails; the unbroken fake, seen through an honest
// observer, passes everything.

const mutantEnv = "CGSEM_CONFORMANCE_MUTANT"

var mutants = []struct {
	name string
	// run narrows the suite to the subtest that must catch the bug ("" =
	// the whole suite, which must then pass).
	run string
}{
	{"honest-observer", ""},
	{"create-existing-succeeds", "Lifecycle/CreateExisting"},
	{"readback-drops-weight", "Lifecycle/ReadBackComplete"},
	{"apply-ignores-weight", "CPU/Weight/RoundTrip"},
	{"io-removal-ignored", "IO/Limits/RoundTrip"},
	{"readback-unrounded", "Memory/Max/RoundTrip"},
	{"devices-readback-widened", "Devices/List/RoundTrip"},
	{"apply-field-by-field", "Apply/AllOrNothing"},
	{"create-then-apply", "Apply/CreateAllOrNothing"},
	{"silent-unsupported", "Memory/High/RoundTrip"},
	{"ignores-cancel", "Context/Cancelled"},
	{"kill-noop", "Kill/EmptiesGroup"},
	{"delete-kills-anyway", "Lifecycle/DeleteBusyProcesses"},
	{"no-events", "Events/PopulatedEmpty"},
	{"plan-applies", "Plan/ChangesNothing"},
	{"pid-zero-accepted", "Process/RejectsInvalidPid"},
	{"processes-unsorted", "Process/AddList"},
	{"children-unsorted", "Lifecycle/ChildrenSorted"},
	{"lost-update", "Concurrency/SameGroupFields"},
	{"stats-count-zero", "Stats/Shape"},
	{"observer-lies", "Lifecycle/CreateOpenDelete"},
	{"leaks", "Path/RootNotCreatable"},
}

func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite once per mutant")
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			pattern := "^TestMutantTarget$"
			for _, part := range strings.Split(m.run, "/") {
				if part != "" {
					pattern += "/^" + part + "$"
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.name)
			out, err := cmd.CombinedOutput()
			if m.run == "" {
				require.NoError(t, err, "the whole suite on the unbroken fake:\n%s", out)
				require.NotContains(t, string(out), "--- FAIL")
				return
			}
			require.Error(t, err, "mutant %s passed %s:\n%s", m.name, m.run, out)
			require.Contains(t, string(out), "--- FAIL: TestMutantTarget/"+m.run+" ",
				"mutant %s should fail %s:\n%s", m.name, m.run, out)
		})
	}
}

// TestMutantTarget is the suite on a mutant; only TestMutants runs it.
func TestMutantTarget(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestMutants")
	}
	opts := fake.Options{HostCPUs: semantic.CPUSet{0, 1}, HostMems: semantic.CPUSet{0}}
	h := conformance.Harness{
		NewDriver: func(t *testing.T) semantic.Driver {
			d := &mutDriver{Driver: fake.New(opts), mut: name}
			t.Cleanup(func() { d.Close() })
			return d
		},
		InjectFault: func(d semantic.Driver, nth int, err error) bool {
			d.(*mutDriver).Driver.InjectFault(nth, err)
			return true
		},
		CPUs:          opts.HostCPUs,
		Mems:          opts.HostMems,
		IODevice:      &[2]int64{8, 16},
		HugePageSizes: []semantic.Bytes{2 * semantic.MiB},
		Enforces:      []semantic.Feature{semantic.Kill},
	}
	switch name {
	case "honest-observer":
		h.Observer = driverObserver{}
	case "observer-lies":
		h.Observer = lyingObserver{}
	case "leaks":
		h.Leaks = func(semantic.Driver) []string { return []string{"planted"} }
	}
	conformance.Run(t, h)
}

// driverObserver observes through the driver itself: not independent, but
// it exercises every observer check on a backend that agrees with itself.
type driverObserver struct{}

func (driverObserver) Exists(t *testing.T, d semantic.Driver, p semantic.Path) bool {
	_, err := d.Open(context.Background(), p)
	return err == nil
}

func (driverObserver) Processes(t *testing.T, d semantic.Driver, p semantic.Path) []int {
	g, err := d.Open(context.Background(), p)
	require.NoError(t, err)
	pids, err := g.Processes(context.Background())
	require.NoError(t, err)
	return pids
}

func (driverObserver) Resources(t *testing.T, d semantic.Driver, p semantic.Path, fs []semantic.Feature) *semantic.Resources {
	g, err := d.Open(context.Background(), p)
	require.NoError(t, err)
	r, err := g.Resources(context.Background())
	require.NoError(t, err)
	return r
}

// lyingObserver sees every group, always.
type lyingObserver struct{ driverObserver }

func (lyingObserver) Exists(*testing.T, semantic.Driver, semantic.Path) bool { return true }

// mutDriver is the fake with one bug planted, chosen by mut.
type mutDriver struct {
	*fake.Driver
	mut string
}

type mutGroup struct {
	semantic.Group
	d *mutDriver
}

func (d *mutDriver) wrap(g semantic.Group, err error) (semantic.Group, error) {
	if g == nil {
		return nil, err
	}
	return &mutGroup{Group: g, d: d}, err
}

func (d *mutDriver) Capabilities() semantic.Capabilities {
	caps := d.Driver.Capabilities()
	if d.mut == "silent-unsupported" {
		caps[semantic.MemoryHigh] = semantic.Capability{Feature: semantic.MemoryHigh, Reason: "planted"}
	}
	return caps
}

func (d *mutDriver) Create(ctx context.Context, p semantic.Path, res *semantic.Resources) (semantic.Group, error) {
	switch d.mut {
	case "create-existing-succeeds":
		if g, err := d.Driver.Create(ctx, p, res); !errors.Is(err, semantic.ErrExist) {
			return d.wrap(g, err)
		}
		return d.wrap(d.Driver.Open(ctx, p))
	case "create-then-apply":
		g, err := d.Driver.Create(ctx, p, nil)
		if err != nil {
			return nil, err
		}
		// The bug: a failed Apply leaves the group (and its levels) behind.
		return d.wrap(g, g.Apply(ctx, res))
	}
	return d.wrap(d.Driver.Create(ctx, p, res))
}

func (d *mutDriver) Open(ctx context.Context, p semantic.Path) (semantic.Group, error) {
	return d.wrap(d.Driver.Open(ctx, p))
}

func (d *mutDriver) Children(ctx context.Context, p semantic.Path) ([]semantic.Path, error) {
	kids, err := d.Driver.Children(ctx, p)
	if d.mut == "children-unsorted" {
		slices.Reverse(kids)
	}
	return kids, err
}

func (g *mutGroup) Apply(ctx context.Context, res *semantic.Resources) error {
	switch g.d.mut {
	case "apply-ignores-weight":
		if res != nil && res.CPU != nil {
			res = res.Clone()
			res.CPU.Weight = nil
		}
	case "io-removal-ignored":
		// As a driver that normalizes a request before using it: a
		// device listed with no figure (remove its limits) drops out.
		if res != nil && res.IO != nil && res.IO.Limits != nil {
			res = res.Clone()
			res.IO.Limits = slices.DeleteFunc(res.IO.Limits, func(l semantic.IOLimit) bool {
				return l.ReadBPS|l.WriteBPS|l.ReadIOPS|l.WriteIOPS == 0
			})
			if len(res.IO.Limits) == 0 {
				res.IO.Limits = nil
			}
		}
	case "apply-field-by-field":
		for _, one := range split(res) {
			if err := g.Group.Apply(ctx, one); err != nil {
				return err
			}
		}
		return nil
	case "lost-update":
		cur, err := g.Group.Resources(ctx)
		if err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
		return g.Group.Apply(ctx, semantic.Merge(cur, res))
	}
	return g.Group.Apply(ctx, res)
}

// split cuts a request into one request per section.
func split(res *semantic.Resources) []*semantic.Resources {
	if res == nil {
		return nil
	}
	var out []*semantic.Resources
	if res.Memory != nil {
		out = append(out, &semantic.Resources{Memory: res.Memory})
	}
	if res.CPU != nil {
		out = append(out, &semantic.Resources{CPU: res.CPU})
	}
	if res.IO != nil {
		out = append(out, &semantic.Resources{IO: res.IO})
	}
	if res.Pids != nil {
		out = append(out, &semantic.Resources{Pids: res.Pids})
	}
	if res.Devices != nil {
		out = append(out, &semantic.Resources{Devices: res.Devices})
	}
	if res.HugeTLB != nil {
		out = append(out, &semantic.Resources{HugeTLB: res.HugeTLB})
	}
	return out
}

func (g *mutGroup) Resources(ctx context.Context) (*semantic.Resources, error) {
	r, err := g.Group.Resources(ctx)
	if err != nil {
		return r, err
	}
	switch g.d.mut {
	case "readback-drops-weight":
		r.CPU.Weight = nil
	case "readback-unrounded":
		if m := r.Memory.Max; m != nil && !m.IsUnlimited() {
			*m += 123
		}
	case "devices-readback-widened":
		r.Devices = &semantic.Devices{Default: semantic.AllowByDefault}
	}
	return r, nil
}

func (g *mutGroup) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	if g.d.mut == "plan-applies" {
		if err := g.Group.Apply(ctx, res); err != nil {
			return nil, err
		}
	}
	return g.Group.Plan(ctx, res)
}

func (g *mutGroup) AddProcess(ctx context.Context, pid int) error {
	if g.d.mut == "pid-zero-accepted" && pid == 0 {
		return nil
	}
	return g.Group.AddProcess(ctx, pid)
}

func (g *mutGroup) Processes(ctx context.Context) ([]int, error) {
	pids, err := g.Group.Processes(ctx)
	if g.d.mut == "processes-unsorted" {
		slices.Reverse(pids)
	}
	return pids, err
}

func (g *mutGroup) Stats(ctx context.Context) (*semantic.Stats, error) {
	st, err := g.Group.Stats(ctx)
	if g.d.mut == "stats-count-zero" && st != nil && st.Pids != nil && st.Pids.Current != nil {
		*st.Pids.Current = 0
	}
	return st, err
}

func (g *mutGroup) detach(ctx context.Context) context.Context {
	if g.d.mut == "ignores-cancel" {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (g *mutGroup) Freeze(ctx context.Context) error { return g.Group.Freeze(g.detach(ctx)) }
func (g *mutGroup) Thaw(ctx context.Context) error   { return g.Group.Thaw(g.detach(ctx)) }

func (g *mutGroup) Kill(ctx context.Context) error {
	if g.d.mut == "kill-noop" {
		return nil
	}
	return g.Group.Kill(g.detach(ctx))
}

func (g *mutGroup) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	if g.d.mut == "delete-kills-anyway" {
		opts = &semantic.DeleteOptions{Kill: true, Recursive: true}
	}
	return g.Group.Delete(g.detach(ctx), opts)
}

func (g *mutGroup) Events(ctx context.Context) (<-chan semantic.Event, error) {
	if g.d.mut == "no-events" {
		ch := make(chan semantic.Event)
		go func() {
			<-ctx.Done()
			close(ch)
		}()
		return ch, nil
	}
	return g.Group.Events(ctx)
}
