package reliability

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// faultKinds are the errnos injected at every position, with the kind the
// error must wrap (semantic.Classify's; ENOSPC has none, so the error
// carries the errno alone).
func faultKinds() []faultKind {
	return []faultKind{
		{"EBUSY", unix.EBUSY, semantic.ErrBusy},
		{"EINVAL", unix.EINVAL, semantic.ErrInvalid},
		{"EACCES", unix.EACCES, semantic.ErrPermission},
		{"ENOSPC", unix.ENOSPC, nil},
	}
}

type faultKind struct {
	name  string
	errno unix.Errno
	kind  error
}

// groupState is everything FaultMatrix compares before and after a failed
// apply: the driver's read-back, the observer's and the raw files.
type groupState struct {
	driver   *semantic.Resources
	observer *semantic.Resources
	raw      map[string]string
}

func (tg *Target) state(t *testing.T, d semantic.Driver, g semantic.Group, fields []semantic.Feature) groupState {
	t.Helper()
	var s groupState
	var err error
	s.driver, err = g.Resources(t.Context())
	require.NoError(t, err, "read back %s", g.Path())
	if obs := tg.Harness.Observer; obs != nil {
		s.observer = obs.Resources(t, d, g.Path(), fields)
	}
	if tg.Dirs != nil && len(tg.SettingsFiles) > 0 {
		s.raw, err = readSettings(tg.Dirs(d, g.Path()), tg.SettingsFiles)
		require.NoError(t, err)
	}
	return s
}

// requireSame fails unless the two states agree on every field, through
// every reader.
func requireSame(t *testing.T, before, after groupState, fields []semantic.Feature, what string) {
	t.Helper()
	if d := diffResources(before.driver, after.driver, fields); d != "" {
		t.Fatalf("%s: the driver reads back a changed group: %s", what, d)
	}
	if before.observer != nil {
		if d := diffResources(before.observer, after.observer, fields); d != "" {
			t.Fatalf("%s: the observer sees a changed group: %s", what, d)
		}
	}
	for path, was := range before.raw {
		if now, ok := after.raw[path]; !ok || now != was {
			t.Fatalf("%s: %s holds %q, was %q", what, path, now, was)
		}
	}
	if len(after.raw) != len(before.raw) {
		t.Fatalf("%s: %d settings files now, %d before", what, len(after.raw), len(before.raw))
	}
}

// FaultMatrix applies a request touching every exact resource feature over
// a group holding other values, failing the kth backend change for every k
// the plan has, with each errno of faultKinds. Each failed apply must
// return an error that wraps the errno and its kind and names the target
// of the failed step (the file on cgroupfs) and the feature, and leave the
// group reading back exactly as before, through the driver, the observer
// and the raw settings files. With Target.RetriesEINTR, an EINTR at every
// position must be retried and the apply succeed.
func FaultMatrix(t *testing.T, tg Target) {
	tg.require(t)
	h := tg.Harness
	if h.InjectFault == nil {
		t.Skip("the harness has no fault seam (InjectFault)")
	}
	probe := tg.newDriver(t)
	caps := probe.Capabilities()
	base, full, skipped := tg.fullPair(caps)
	for _, s := range skipped {
		t.Logf("field not in the matrix: %s", s)
	}
	fields := full.Fields()
	require.NotEmpty(t, fields, "the driver supports no resource feature exactly")
	want := semantic.Merge(base, full).Normalize(tg.pageSize())

	for _, fk := range faultKinds() {
		t.Run(fk.name, func(t *testing.T) {
			d := tg.newDriver(t)
			if !h.InjectFault(d, 0, nil) {
				t.Skip("the driver does not support fault injection")
			}
			g, err := d.Create(t.Context(), semantic.MustPath("faults/target"), base)
			require.NoError(t, err)
			before := tg.state(t, d, g, fields)
			plan, err := g.Plan(t.Context(), full)
			require.NoError(t, err)
			t.Logf("%d positions:\n%s", len(plan.Steps), plan)
			// Every field is written at some position, but one whose
			// value cannot differ on this host (fullPair said so).
			written := map[semantic.Feature]bool{}
			for _, st := range plan.Steps {
				written[st.Feature] = true
			}
			for _, f := range fields {
				if !written[f] && !slices.ContainsFunc(skipped, func(s string) bool { return strings.HasPrefix(s, string(f)+":") }) {
					t.Fatalf("the plan writes nothing for %s:\n%s", f, plan)
				}
			}
			for k, step := range plan.Steps {
				t.Run(fmt.Sprintf("%02d-%s", k+1, step.Target), func(t *testing.T) {
					seen := tg.changes(d)
					h.InjectFault(d, k+1, fk.errno)
					err := g.Apply(t.Context(), full)
					h.InjectFault(d, 0, nil)
					if seen >= 0 {
						// The writes before the failed one and the failed
						// one; restores bypass the seam.
						require.Equal(t, int64(k+1), tg.changes(d)-seen, "changes the seam saw")
					}
					require.Error(t, err, "apply with %s at write %d (%s)", fk.name, k+1, step)
					requireFaultError(t, err, fk.errno, fk.kind, step)
					requireSame(t, before, tg.state(t, d, g, fields), fields, fmt.Sprintf("after %s at write %d (%s)", fk.name, k+1, step))
					again, err := g.Plan(t.Context(), full)
					require.NoError(t, err)
					require.Equal(t, plan.String(), again.String(), "the same state plans the same writes")
				})
			}
			// The request itself is good: without a fault it lands whole.
			require.NoError(t, g.Apply(t.Context(), full))
			got, err := g.Resources(t.Context())
			require.NoError(t, err)
			if d := diffResources(want, got, fields); d != "" {
				t.Fatalf("after a clean apply: %s", d)
			}
			require.NoError(t, g.Delete(t.Context(), nil))
		})
	}

	t.Run("EINTR", func(t *testing.T) {
		if !tg.RetriesEINTR {
			t.Skip("the target's fault seam is not below an EINTR retry")
		}
		d := tg.newDriver(t)
		g, err := d.Create(t.Context(), semantic.MustPath("faults/eintr"), base)
		require.NoError(t, err)
		before := tg.state(t, d, g, fields)
		plan, err := g.Plan(t.Context(), full)
		require.NoError(t, err)
		for k, step := range plan.Steps {
			t.Run(fmt.Sprintf("%02d-%s", k+1, step.Target), func(t *testing.T) {
				seen := tg.changes(d)
				h.InjectFault(d, k+1, unix.EINTR)
				err := g.Apply(t.Context(), full)
				h.InjectFault(d, 0, nil)
				require.NoError(t, err, "an interrupted write %d (%s) is retried", k+1, step)
				if seen >= 0 {
					// One consultation more than the plan has writes: the
					// interrupted one was tried again.
					require.Equal(t, int64(len(plan.Steps)+1), tg.changes(d)-seen, "changes the seam saw")
				}
				got, err := g.Resources(t.Context())
				require.NoError(t, err)
				if d := diffResources(want, got, fields); d != "" {
					t.Fatalf("after EINTR at write %d: %s", k+1, d)
				}
				// Back to the base, so the next position has the same plan.
				require.NoError(t, g.Apply(t.Context(), base))
				requireSame(t, before, tg.state(t, d, g, fields), fields, "after re-applying the base")
			})
		}
		require.NoError(t, g.Delete(t.Context(), nil))
	})
}

// requireFaultError checks what a failed apply returned: an *Error of the
// errno's kind with the errno in its chain, naming the feature and the
// target of the step that failed.
func requireFaultError(t *testing.T, err error, errno unix.Errno, kind error, step semantic.PlanStep) {
	t.Helper()
	require.ErrorIs(t, err, errno)
	var e *semantic.Error
	require.ErrorAs(t, err, &e)
	if kind != nil {
		require.ErrorIs(t, err, kind)
		require.Equal(t, kind, e.Kind, "kind of %v", err)
	} else {
		require.Nil(t, semantic.Classify(err), "%v wraps a kind; %s has none", err, errno)
	}
	msg := err.Error()
	require.Contains(t, msg, step.Target, "the error names the file that failed")
	if step.Feature != "" {
		require.Contains(t, msg, string(step.Feature), "the error names the feature")
	}
}
