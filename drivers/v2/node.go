package v2

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/internal/cgroupfs"
	"github.com/cgsem/cgsem/semantic"
)

// node is what the driver holds for one group between calls: the group's
// directory descriptor, the device filter attached through it, and the
// stat files read repeatedly. Every Group handle on the same path shares
// it. It exists only for groups whose devices were set or whose stats
// were read, and goes when the driver deletes the group or is closed.
type node struct {
	// mu guards everything below, and every use of the descriptors: they
	// are closed under it, so no read can land on a reused number.
	mu     sync.Mutex
	closed bool
	dir    *cgroupfs.Dir
	filter *devfilter.Filter
	stats  *statFiles
}

// node returns the group rel's node, opening its directory the first
// time.
func (d *Driver) node(rel string) (*node, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("driver closed: %w", semantic.ErrInvalid)
	}
	if n := d.nodes[rel]; n != nil {
		return n, nil
	}
	dir, err := d.openDir(rel)
	if err != nil {
		return nil, err
	}
	n := &node{dir: dir}
	d.nodes[rel] = n
	return n, nil
}

// peekNode returns the group rel's node if there is one.
func (d *Driver) peekNode(rel string) *node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[rel]
}

// openDir opens the group rel's directory (the root's too).
func (d *Driver) openDir(rel string) (*cgroupfs.Dir, error) {
	if rel == "" {
		rel = "."
	}
	return d.root.OpenDir(rel)
}

// dropNodes forgets the nodes of the group rel and its descendants, once
// they are gone (or were replaced by a new group of the same name).
func (d *Driver) dropNodes(rel string) {
	d.mu.Lock()
	var gone []*node
	for k, n := range d.nodes {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			gone = append(gone, n)
			delete(d.nodes, k)
		}
	}
	d.mu.Unlock()
	for _, n := range gone {
		if err := n.close(); err != nil {
			d.log.Debug("close node", "error", err)
		}
	}
}

// close gives back the filter's program (a removed group's program went
// with it; a live group keeps enforcing it) and closes the descriptors.
func (n *node) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if n.filter != nil {
		errs = append(errs, n.filter.Close())
	}
	if n.stats != nil {
		errs = append(errs, n.stats.close())
	}
	errs = append(errs, n.dir.Close())
	return errors.Join(errs...)
}
