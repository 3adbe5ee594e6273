package v2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// group is a handle on a path. Like a cgroupfs path it names whatever
// group is there at each call: after the group is deleted calls fail with
// ErrNotExist, and a group created again at the path is the one
// addressed.
type group struct {
	d    *Driver
	path semantic.Path
	rel  string // path.String(): the directory relative to the root
}

var _ semantic.Group = (*group)(nil)

func (g *group) Path() semantic.Path { return g.path }

// notRoot refuses what the driver's root does not take: its settings and
// its processes belong to whoever owns it (with Root "self", the caller
// itself).
func (g *group) notRoot(op string) error {
	if g.path.IsRoot() {
		return errorf(op, g.path, semantic.ErrInvalid, "not allowed on the driver's root")
	}
	return nil
}

func (g *group) notSupported(f semantic.Feature) error {
	err := semantic.NotSupported(Name, f, fmt.Sprintf("%s is not supported by this driver here: %s", f, g.d.caps.Get(f).Reason))
	return withGroup(err, g.path)
}

// exists fails with ErrNotExist when the group is gone.
func (g *group) exists(op string) error {
	if err := g.d.checkOpen(op, g.path); err != nil {
		return err
	}
	ok, err := g.d.root.Exists(g.rel)
	if err != nil {
		return wrap(op, g.path, err)
	}
	if !ok {
		return errorf(op, g.path, semantic.ErrNotExist, "no such group")
	}
	return nil
}

// Apply validates res and refuses unsupported fields before any change,
// then makes the changes Plan lists, in order; if one fails, the
// attribute files written are restored and the error names the field.
func (g *group) Apply(ctx context.Context, res *semantic.Resources) error {
	const op = "apply"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	req, ioLimits, err := g.d.prepare(g.path, res)
	if err != nil {
		return err
	}
	if err := g.d.acquire(ctx, op, g.path); err != nil {
		return err
	}
	defer g.d.release()
	if err := g.exists(op); err != nil {
		return err
	}
	changes, err := g.d.changesFor(g.path, req, ioLimits, nil)
	if err != nil {
		return err
	}
	return g.d.execute(ctx, g.path, changes, false)
}

// Plan returns the changes Apply(res) would make, in order, reading the
// group's ancestors to see which controllers are enabled already:
//
//	write ../cgroup.subtree_control +memory +pids   (each level missing them, top-down)
//	write memory.max 268435456                      (attribute files, Resources' field order)
//	attach device program "deny; allow c 1:3 rwm"  (last)
func (g *group) Plan(ctx context.Context, res *semantic.Resources) (*semantic.Plan, error) {
	const op = "plan"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	req, ioLimits, err := g.d.prepare(g.path, res)
	if err != nil {
		return nil, err
	}
	if err := g.exists(op); err != nil {
		return nil, err
	}
	changes, err := g.d.changesFor(g.path, req, ioLimits, nil)
	if err != nil {
		return nil, err
	}
	return planOf(g.path, changes), nil
}

// Resources reads back every supported feature from the group's files,
// and the device list from the driver's filter (or another cgsem
// process's record of it).
func (g *group) Resources(ctx context.Context) (*semantic.Resources, error) {
	const op = "read resources"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return nil, err
	}
	if err := g.notRoot(op); err != nil {
		return nil, err
	}
	if err := g.d.checkOpen(op, g.path); err != nil {
		return nil, err
	}
	ctl, err := g.d.root.ReadString(join(g.rel, "cgroup.controllers"))
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	enabled := strings.Fields(ctl)
	read := func(file string) (string, bool, error) {
		if !slices.Contains(enabled, controllerOfFile(file)) {
			return "", false, nil
		}
		s, err := g.d.root.ReadString(join(g.rel, file))
		if err != nil {
			return "", false, wrap(op, g.path, err)
		}
		return s, true, nil
	}
	var fs []semantic.Feature
	for _, f := range semantic.ResourceFeatures {
		if f != semantic.DevicesFeature && g.d.caps.Supports(f) {
			fs = append(fs, f)
		}
	}
	r, err := readBack(read, fs, g.d.huge, g.effective)
	if err != nil {
		return nil, wrap(op, g.path, err)
	}
	if g.d.caps.Supports(semantic.DevicesFeature) {
		if r.Devices, err = g.d.devicesOf(g.path); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// effective reads file (cpuset.cpus.effective, cpuset.mems.effective) of
// the nearest group, from this one up to the root, that has it: what a
// group without a set of its own gets.
func (g *group) effective(file string) (string, error) {
	for i := g.path.Len(); i >= 0; i-- {
		s, err := g.d.root.ReadString(join(g.path.Prefix(i).String(), file))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		return s, err
	}
	return "", fmt.Errorf("no group from %s up to the root has %s: %w", g.path.Display(), file, unix.ENOENT)
}

// Delete removes the group, children before parents. A group with child
// groups without opts.Recursive, or with processes in it or below without
// opts.Kill, is ErrBusy, and nothing is changed: the kernel refuses the
// first rmdir of such a group, and only then does Delete look why. With
// opts.Kill it kills (see Kill) and tries again. The kernel's transient
// EBUSY after the last process left is retried.
func (g *group) Delete(ctx context.Context, opts *semantic.DeleteOptions) error {
	const op = "delete"
	if err := ctxErr(ctx, op, g.path); err != nil {
		return err
	}
	if err := g.notRoot(op); err != nil {
		return err
	}
	if opts == nil {
		opts = &semantic.DeleteOptions{}
	}
	if opts.Kill && !g.d.caps.Supports(semantic.Kill) {
		return g.notSupported(semantic.Kill)
	}
	for {
		if err := g.d.acquire(ctx, op, g.path); err != nil {
			return err
		}
		err := g.d.root.TryRmdir(g.rel)
		if err == nil {
			g.d.dropNodes(g.rel)
		}
		g.d.release()
		if err == nil || isInjected(err) || !errors.Is(err, unix.EBUSY) {
			return wrap(op, g.path, err)
		}
		kids, err := g.descendants()
		if err != nil {
			return wrap(op, g.path, err)
		}
		if kids > 0 && !opts.Recursive {
			return errorf(op, g.path, semantic.ErrBusy, "group has %d descendant groups; delete them or ask for a recursive delete", kids)
		}
		populated, _, err := g.cgroupEvents()
		if err != nil {
			return wrap(op, g.path, err)
		}
		if populated {
			if !opts.Kill {
				return errorf(op, g.path, semantic.ErrBusy, "the group or a descendant holds processes; kill them first or ask for a delete that kills")
			}
			if err := g.kill(ctx, op); err != nil {
				return err
			}
			continue
		}
		if err := g.d.acquire(ctx, op, g.path); err != nil {
			return err
		}
		err = g.removeTree(ctx, op, opts.Recursive)
		g.d.release()
		return err
	}
}

// removeTree removes the group and every directory below it, deepest
// first, including those whose names the driver cannot name as a Path,
// retrying the kernel's transient EBUSY. Without recursive, a child found
// now (made since Delete looked) is ErrBusy.
func (g *group) removeTree(ctx context.Context, op string, recursive bool) error {
	var all []string
	var walk func(rel string) error
	walk = func(rel string) error {
		kids, err := g.d.subdirs(rel)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := walk(rel + "/" + k); err != nil {
				return err
			}
		}
		all = append(all, rel)
		return nil
	}
	if err := walk(g.rel); err != nil {
		return wrap(op, g.path, err)
	}
	if len(all) > 1 && !recursive {
		return errorf(op, g.path, semantic.ErrBusy, "group has child groups; delete them or ask for a recursive delete")
	}
	for _, rel := range all {
		if err := g.d.root.Rmdir(ctx, rel); err != nil {
			return wrap(op, g.path, err)
		}
		g.d.dropNodes(rel)
	}
	return nil
}

// controllerOfFile is the controller an attribute file belongs to:
// the part of its name before the first dot.
func controllerOfFile(file string) string {
	c, _, _ := strings.Cut(file, ".")
	return c
}
