package semantic

import (
	"context"
	"os/exec"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Driver manages groups below one root on one backend (cgroup v1, cgroup
// v2, systemd, ...). It is safe for concurrent use.
type Driver interface {
	// Name is the registered name of the driver ("v1", "v2", "systemd", "fake").
	Name() string

	// Capabilities reports, per feature, what the driver can do here.
	Capabilities() Capabilities

	// Create makes the group at path, creating intermediate levels (with no
	// settings of their own) as needed, and applies res (may be nil). It
	// fails with ErrExist if the group exists, and leaves nothing behind if
	// it fails.
	Create(ctx context.Context, path Path, res *Resources) (Group, error)

	// Open returns an existing group, or ErrNotExist.
	Open(ctx context.Context, path Path) (Group, error)

	// Children lists the groups directly below path (Root for the top
	// level), sorted by name. Directories the driver cannot name as a valid
	// Path are skipped.
	Children(ctx context.Context, path Path) ([]Path, error)

	// Close releases what the driver holds (descriptors, connections). Groups
	// stay as they are.
	Close() error
}

// Group is one control group. Its methods are safe for concurrent use.
// Errors are *Error values wrapping one of the Err* kinds.
type Group interface {
	// Path is the group's path below the driver's root.
	Path() Path

	// Apply changes the fields set in res, all or nothing: if any change
	// fails, the group is restored to what it was and the error names the
	// field. A field the driver does not support fails with ErrNotSupported
	// before anything changes.
	Apply(ctx context.Context, res *Resources) error

	// Resources reads back the settings the group has, for every feature
	// the driver supports, in normalized form.
	Resources(ctx context.Context) (*Resources, error)

	// Plan returns what Apply(res) would do, without doing it.
	Plan(ctx context.Context, res *Resources) (*Plan, error)

	// AddProcess moves a process (all its threads) into the group.
	AddProcess(ctx context.Context, pid int) error

	// AddThread moves one thread into the group (ErrNotSupported where the
	// backend cannot split a process).
	AddThread(ctx context.Context, tid int) error

	// Start starts cmd (as exec.Cmd.Start does) so that the process is in
	// the group before it runs its first instruction. The caller waits.
	Start(ctx context.Context, cmd *exec.Cmd) error

	// Processes lists the pids in the group itself (not descendants), sorted.
	Processes(ctx context.Context) ([]int, error)

	// Stats reads usage figures; absent figures are nil.
	Stats(ctx context.Context) (*Stats, error)

	// Freeze stops every process in the group and returns once they are
	// frozen, or when ctx ends.
	Freeze(ctx context.Context) error

	// Thaw resumes a frozen group and returns once it runs.
	Thaw(ctx context.Context) error

	// Kill SIGKILLs every process in the group and its descendants and
	// returns once the group is empty, or when ctx ends. It leaves the
	// group and its descendants thawed. Where frozen tasks cannot die
	// (cgroup v1's freezer), a populated group below a frozen ancestor
	// the group cannot thaw is ErrBusy, before anything is signalled.
	// A driver that freezes the group to kill it (v1, v2) reports that
	// freeze and the thaw as EventFrozen and EventThawed.
	Kill(ctx context.Context) error

	// Delete removes the group. A group with processes fails with ErrBusy
	// unless opts.Kill; one with children fails with ErrBusy unless
	// opts.Recursive. Deleting a group that is already gone is ErrNotExist.
	Delete(ctx context.Context, opts *DeleteOptions) error

	// Events delivers events until ctx ends, then closes the channel.
	Events(ctx context.Context) (<-chan Event, error)
}

// DeleteOptions control Group.Delete; nil means neither.
type DeleteOptions struct {
	// Kill kills the group's processes (and its descendants') first.
	Kill bool
	// Recursive deletes descendants first.
	Recursive bool
}

// Options configure a driver. The zero value is valid.
type Options struct {
	// Root is where the driver's groups live: "" for the backend's top
	// (the hierarchy root; for systemd, the root slice), "self" for
	// beneath the calling process's own cgroup, "self/a/b" for the
	// existing group a/b beneath it (tests use it for a fresh root per
	// test), or a cgroup path such as "/machine.slice/x" (as
	// /proc/self/cgroup names it). Drivers never touch anything outside
	// their root.
	Root string
	// Logger receives trace logs of every file write and D-Bus call; nil
	// is the null logger. Drivers name it after themselves.
	Logger hclog.Logger
	// AllowApproximate applies approximate conversions (reported in
	// Capabilities) instead of refusing them with ErrNotSupported.
	AllowApproximate bool
	// Settings are driver-specific knobs, documented by each driver
	// (for example systemd's "bus" address). Unknown keys are an error.
	Settings map[string]string
}

// RootSelf is the Options.Root value meaning "beneath my own cgroup".
const RootSelf = "self"

// NamedLogger returns the options' logger (or the null logger) named for
// a driver.
func (o Options) NamedLogger(driver string) hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger.Named(driver)
}

// Plan is what an Apply would do, in order.
type Plan struct {
	Steps []PlanStep `json:"steps"`
}

// PlanStep is one write or call.
type PlanStep struct {
	// Action is "write", "mkdir", "attach", "dbus", ... as the driver does it.
	Action string `json:"action"`
	// Target is the file (relative to the group) or the D-Bus property/unit.
	Target string `json:"target"`
	// Value is what is written or set.
	Value string `json:"value,omitempty"`
	// Feature is the semantic field the step serves.
	Feature Feature `json:"feature,omitempty"`
}

// String lists the steps one per line: "ACTION TARGET [VALUE]".
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.Action + " " + s.Target)
		if s.Value != "" {
			b.WriteString(" " + s.Value)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
