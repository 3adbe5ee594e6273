package registry

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cgsem/cgsem/semantic"
)

// EnvDriver names the environment variable that forces a driver by name.
const EnvDriver = "CGSEM_DRIVER"

// Registration is one driver: plain data, as image.RegisterFormat takes.
type Registration struct {
	// Name is how the driver is forced ("v1", "v2", "systemd", "fake", ...).
	Name string
	// Priority orders auto-selection: the highest priority whose probe
	// accepts this host wins; ties go to the smaller name.
	Priority int
	// Probe says whether the driver fits this host, and why (or why not).
	// A nil Probe never accepts: the driver is only used when forced.
	Probe func() (ok bool, reason string)
	// New opens the driver.
	New func(opts semantic.Options) (semantic.Driver, error)
}

// Verdict is one driver's probe result.
type Verdict struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	OK       bool   `json:"ok"`
	Reason   string `json:"reason"`
}

// Selection explains an auto-selection: the driver picked (if any) and
// every driver's verdict, in the order they were considered.
type Selection struct {
	Picked   string    `json:"picked,omitempty"`
	Forced   bool      `json:"forced,omitempty"`
	Verdicts []Verdict `json:"verdicts"`
}

// String explains the selection in a sentence per driver.
func (s Selection) String() string {
	var b strings.Builder
	switch {
	case s.Forced:
		fmt.Fprintf(&b, "driver %q forced by %s\n", s.Picked, EnvDriver)
	case s.Picked != "":
		fmt.Fprintf(&b, "picked %q: highest priority whose probe accepts this host\n", s.Picked)
	default:
		b.WriteString("no driver fits this host\n")
	}
	for _, v := range s.Verdicts {
		verdict := "no"
		if v.OK {
			verdict = "yes"
		}
		fmt.Fprintf(&b, "  %-10s priority %3d  %-3s %s\n", v.Name, v.Priority, verdict, v.Reason)
	}
	return b.String()
}

// Registry holds registrations. The zero value is empty and ready to use;
// it is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	drivers map[string]Registration
	// Getenv reads the environment (nil: os.Getenv); tests set it instead
	// of changing the process environment.
	Getenv func(string) string
}

// Register adds a driver. It panics if reg has no name or no constructor,
// or if the name is taken, as database/sql.Register does: both are
// programming errors found at init.
func (r *Registry) Register(reg Registration) {
	if reg.Name == "" || reg.New == nil {
		panic("cgsem/registry: Register of a driver with no name or no constructor")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drivers == nil {
		r.drivers = map[string]Registration{}
	}
	if _, dup := r.drivers[reg.Name]; dup {
		panic("cgsem/registry: Register called twice for driver " + reg.Name)
	}
	r.drivers[reg.Name] = reg
}

// Drivers returns the registered names, sorted.
func (r *Registry) Drivers() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.drivers))
	for n := range r.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens the named driver.
func (r *Registry) Open(name string, opts semantic.Options) (semantic.Driver, error) {
	r.mu.RLock()
	reg, ok := r.drivers[name]
	r.mu.RUnlock()
	if !ok {
		registered := strings.Join(r.Drivers(), ", ")
		if registered == "" {
			registered = "none"
		}
		return nil, &semantic.Error{Op: "open driver", Group: fmt.Sprintf("%q", name), Kind: semantic.ErrNotExist,
			Err: fmt.Errorf("unknown driver (forgotten import?); registered: %s", registered)}
	}
	return reg.New(opts)
}

// Probe runs every driver's probe and says which one auto-selection picks,
// honouring the CGSEM_DRIVER variable.
func (r *Registry) Probe() Selection {
	r.mu.RLock()
	regs := make([]Registration, 0, len(r.drivers))
	for _, reg := range r.drivers {
		regs = append(regs, reg)
	}
	r.mu.RUnlock()
	sort.Slice(regs, func(i, j int) bool {
		a, b := regs[i], regs[j]
		return a.Priority > b.Priority || a.Priority == b.Priority && a.Name < b.Name
	})
	var sel Selection
	for _, reg := range regs {
		v := Verdict{Name: reg.Name, Priority: reg.Priority, Reason: "never auto-selected; force it by name"}
		if reg.Probe != nil {
			v.OK, v.Reason = reg.Probe()
		}
		if v.OK && sel.Picked == "" {
			sel.Picked = reg.Name
		}
		sel.Verdicts = append(sel.Verdicts, v)
	}
	if forced := r.getenv(EnvDriver); forced != "" {
		sel.Picked, sel.Forced = forced, true
	}
	return sel
}

func (r *Registry) getenv(k string) string {
	if r.Getenv != nil {
		return r.Getenv(k)
	}
	return os.Getenv(k)
}

// ErrNoDriver is wrapped by Auto's error when no driver fits.
var ErrNoDriver = errors.New("no driver fits this host")

// Auto opens the driver that auto-selection picks (or the one
// CGSEM_DRIVER forces) and returns the selection with it.
func (r *Registry) Auto(opts semantic.Options) (semantic.Driver, Selection, error) {
	sel := r.Probe()
	if sel.Picked == "" {
		return nil, sel, &semantic.Error{Op: "select driver", Kind: semantic.ErrNotSupported,
			Err: fmt.Errorf("%w:\n%s", ErrNoDriver, sel)}
	}
	d, err := r.Open(sel.Picked, opts)
	return d, sel, err
}

// Default is the registry built-in drivers register with and the
// package-level functions use. Tests make their own Registry instead.
var Default = &Registry{}

// Register adds a driver to the default registry; see Registry.Register.
func Register(reg Registration) { Default.Register(reg) }

// Drivers lists the default registry's drivers, sorted.
func Drivers() []string { return Default.Drivers() }

// Open opens a driver of the default registry by name.
func Open(name string, opts semantic.Options) (semantic.Driver, error) {
	return Default.Open(name, opts)
}

// Probe explains auto-selection on the default registry.
func Probe() Selection { return Default.Probe() }

// Auto opens the auto-selected driver of the default registry.
func Auto(opts semantic.Options) (semantic.Driver, Selection, error) { return Default.Auto(opts) }
