package v2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

const subtreeControl = "cgroup.subtree_control"

// changesFor lists, in order, the changes that apply the normalized req to
// group p: the controllers it needs enabled in cgroup.subtree_control from
// the root down to p's parent (only where missing: levels in fresh were
// just made and have none), the attribute writes, then the device program.
// It reads, and changes nothing.
func (d *Driver) changesFor(p semantic.Path, req *semantic.Resources, ioLimits []semantic.IOLimit, fresh map[string]bool) ([]change, error) {
	rel := p.String()
	fs := req.Fields()
	var out []change
	if ctrls := controllersOf(fs); len(ctrls) > 0 {
		for i := range p.Len() {
			level := p.Prefix(i).String()
			var enabled []string
			if !fresh[level] {
				s, err := d.root.ReadString(join(level, subtreeControl))
				if err != nil {
					return nil, wrap("read "+subtreeControl, p.Prefix(i), err)
				}
				enabled = strings.Fields(s)
			}
			var missing []string
			for _, c := range ctrls {
				if !slices.Contains(enabled, c) {
					missing = append(missing, c)
				}
			}
			if len(missing) == 0 {
				continue
			}
			out = append(out, change{action: actWrite, dir: level, file: subtreeControl,
				value: "+" + strings.Join(missing, " +"), feature: firstNeeding(fs, missing)})
		}
	}
	for _, c := range attributeWrites(req, ioLimits) {
		c.dir = rel
		out = append(out, c)
	}
	if req != nil && req.Devices != nil {
		out = append(out, change{action: actAttach, dir: rel, devices: req.Devices, feature: semantic.DevicesFeature})
	}
	return out, nil
}

// firstNeeding is the first feature of fs whose controller is in ctrls:
// the field a subtree_control write serves.
func firstNeeding(fs []semantic.Feature, ctrls []string) semantic.Feature {
	for _, f := range fs {
		if slices.Contains(ctrls, controllerOf[f]) {
			return f
		}
	}
	return ""
}

// execute makes changes in order; fresh says the group was made by the
// same call. When one fails, every attribute file
// already written is written back, newest first, to what it held, and the
// error names the failing field. Controllers enabled on the way stay
// enabled: disabling one would erase its settings in every sibling, which
// may be another caller's.
func (d *Driver) execute(ctx context.Context, p semantic.Path, changes []change, fresh bool) error {
	var undo []change
	fail := func(cause error) error {
		var errs []error
		// Restores skip the fault hook, so an injected fault hits only
		// the change under test.
		quiet := d.root.Unhooked()
		for i := len(undo) - 1; i >= 0; i-- {
			u := undo[i]
			if err := quiet.Write(join(u.dir, u.file), u.value); err != nil {
				d.log.Warn("restore after a failed change", "file", join(u.dir, u.file), "value", u.value, "error", err)
				errs = append(errs, fmt.Errorf("restoring %s: %w", u.file, err))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w; and the group is left partly changed: %w", cause, errors.Join(errs...))
		}
		return cause
	}
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return fail(wrap("apply", p, err))
		}
		switch c.action {
		case actWrite:
			name := join(c.dir, c.file)
			if c.file != subtreeControl {
				old, err := d.restoreValue(c)
				if err != nil {
					return fail(wrap("read "+c.file, p, err))
				}
				undo = append(undo, change{dir: c.dir, file: c.file, value: old})
			}
			if err := d.root.Write(name, c.value); err != nil {
				return fail(d.writeError(p, c, err))
			}
		case actAttach:
			if err := d.setDevices(ctx, p, c.devices, fresh); err != nil {
				return fail(err)
			}
		}
	}
	return nil
}

// restoreValue reads what writing back restores c's file to.
func (d *Driver) restoreValue(c change) (string, error) {
	old, err := d.root.ReadString(join(c.dir, c.file))
	if err != nil {
		return "", err
	}
	return restoreOf(c, old)
}

// restoreOf turns what c's file read (trimmed) into the write that
// restores it.
func restoreOf(c change, old string) (string, error) {
	switch {
	case c.key != "":
		return ioMaxLineOf(old, c.key), nil
	case c.feature == semantic.IOWeight:
		// io.weight lists per-device weights after the default; a write
		// takes one entry, and cgsem only ever changes the default.
		w, err := parseIOWeight(old)
		if err != nil {
			return "", err
		}
		return "default " + strconv.FormatUint(w, 10), nil
	case old == "":
		// An empty cpuset.cpus means "as the parent": writing a newline
		// restores that, where a zero-length write would do nothing.
		return "\n", nil
	}
	return old, nil
}

// writeError names the field whose write failed, and explains the
// kernel's refusals that have a cgroup v2 reason.
func (d *Driver) writeError(p semantic.Path, c change, err error) error {
	op := "set " + string(c.feature)
	if c.file == subtreeControl {
		op = fmt.Sprintf("enable %s for %s", strings.TrimPrefix(strings.ReplaceAll(c.value, " +", ", "), "+"), c.feature)
		if errors.Is(err, unix.EBUSY) {
			err = fmt.Errorf("%w (the group %q holds processes, and cgroup v2 enables controllers below a group only while it holds none: move them into a leaf)",
				err, "/"+c.dir)
		}
	}
	return semantic.Wrap(Name, op, p.Display(), err)
}

// planOf renders changes as plan steps, with targets relative to group p
// ("memory.max", "../cgroup.subtree_control").
func planOf(p semantic.Path, changes []change) *semantic.Plan {
	plan := &semantic.Plan{Steps: []semantic.PlanStep{}}
	for _, c := range changes {
		st := semantic.PlanStep{Action: c.action, Feature: c.feature, Value: c.value}
		switch c.action {
		case actAttach:
			st.Target = "device program"
			st.Value = devicesString(c.devices)
		case actMkdir:
			st.Target = relTo(p, c.dir, "")
		default:
			st.Target = relTo(p, c.dir, c.file)
		}
		plan.Steps = append(plan.Steps, st)
	}
	return plan
}

// relTo names file of group dir relative to group p, which is dir or one
// of its descendants.
func relTo(p semantic.Path, dir, file string) string {
	depth := 0
	if dir != "" {
		depth = strings.Count(dir, "/") + 1
	}
	up := strings.Repeat("../", p.Len()-depth)
	if file == "" {
		return strings.TrimSuffix(up, "/")
	}
	return up + file
}

// devicesString renders a device list for plans and logs: "deny; allow c
// 1:3 rwm; allow b 8:* r".
func devicesString(d *semantic.Devices) string {
	parts := []string{string(d.Default)}
	for _, r := range d.Rules {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, "; ")
}
