package semantic

import (
	"fmt"
	"slices"
	"strings"
)

// Feature names one thing a driver may or may not do.
type Feature string

// Resource features (one per field of Resources) and operation features.
const (
	MemoryMax      Feature = "memory.max"
	MemoryHigh     Feature = "memory.high"
	MemoryLow      Feature = "memory.low"
	MemoryMin      Feature = "memory.min"
	MemorySwap     Feature = "memory.swap"
	CPUWeight      Feature = "cpu.weight"
	CPUMaxFeature  Feature = "cpu.max"
	CPUSetCPUs     Feature = "cpu.cpus"
	CPUSetMems     Feature = "cpu.mems"
	IOWeight       Feature = "io.weight"
	IOLimits       Feature = "io.limits"
	PidsMax        Feature = "pids.max"
	DevicesFeature Feature = "devices"
	HugeTLB        Feature = "hugetlb"

	Freeze          Feature = "freeze"
	Kill            Feature = "kill"
	Threads         Feature = "threads"
	StartInside     Feature = "start-inside"
	EventsOOM       Feature = "events.oom"
	EventsPopulated Feature = "events.populated"
	EventsFrozen    Feature = "events.frozen"
	StatsPressure   Feature = "stats.pressure"
)

// ResourceFeatures lists the resource features in Resources' field order.
var ResourceFeatures = []Feature{
	MemoryMax, MemoryHigh, MemoryLow, MemoryMin, MemorySwap,
	CPUWeight, CPUMaxFeature, CPUSetCPUs, CPUSetMems,
	IOWeight, IOLimits, PidsMax, DevicesFeature, HugeTLB,
}

// OperationFeatures lists the operation features.
var OperationFeatures = []Feature{Freeze, Kill, Threads, StartInside, EventsOOM, EventsPopulated, EventsFrozen, StatsPressure}

// AllFeatures is ResourceFeatures then OperationFeatures.
func AllFeatures() []Feature { return slices.Concat(ResourceFeatures, OperationFeatures) }

// Support says how well a driver does a feature on this host.
type Support int

const (
	// Unsupported: requests touching the feature fail with ErrNotSupported.
	Unsupported Support = iota
	// Exact: the value is stored and read back as given (after Normalize).
	Exact
	// Approximate: the value is converted with a named, lossy conversion;
	// applied only when Options.AllowApproximate is set.
	Approximate
)

// String is "exact", "approximate" or "unsupported".
func (s Support) String() string {
	switch s {
	case Exact:
		return "exact"
	case Approximate:
		return "approximate"
	}
	return "unsupported"
}

// MarshalText renders the support level as String does.
func (s Support) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *Support) UnmarshalText(b []byte) error {
	for _, v := range []Support{Unsupported, Exact, Approximate} {
		if string(b) == v.String() {
			*s = v
			return nil
		}
	}
	return invalidf("support level %q: want exact, approximate or unsupported", b)
}

// Capability is a driver's verdict on one feature.
type Capability struct {
	Feature Feature `json:"feature"`
	Support Support `json:"support"`
	// Conversion names the formula when a value is converted (exactly or
	// not), e.g. ConvWeightToShares.
	Conversion string `json:"conversion,omitempty"`
	// Reason says why a feature is unsupported or approximate.
	Reason string `json:"reason,omitempty"`
}

// Capabilities is a driver's verdict on every feature. A feature missing
// from the map is unsupported.
type Capabilities map[Feature]Capability

// Get returns the capability for f, Unsupported if absent.
func (c Capabilities) Get(f Feature) Capability {
	if v, ok := c[f]; ok {
		return v
	}
	return Capability{Feature: f, Support: Unsupported, Reason: "not declared by the driver"}
}

// Supports reports whether f is exact or approximate.
func (c Capabilities) Supports(f Feature) bool { return c.Get(f).Support != Unsupported }

// Check returns an ErrNotSupported error naming the first feature of the
// request that is unsupported, or approximate while approximations are
// not allowed; nil when every field can be honoured.
func (c Capabilities) Check(driver string, r *Resources, allowApproximate bool) error {
	for _, f := range r.Fields() {
		cp := c.Get(f)
		switch {
		case cp.Support == Unsupported:
			return NotSupported(driver, f, fmt.Sprintf("%s is not supported by this driver here: %s", f, cp.Reason))
		case cp.Support == Approximate && !allowApproximate:
			return NotSupported(driver, f, fmt.Sprintf("%s is only approximate here (%s); allow approximations to apply it", f, cp.Conversion))
		}
	}
	return nil
}

// String lists the capabilities one per line, in feature order.
func (c Capabilities) String() string {
	var b strings.Builder
	for _, f := range AllFeatures() {
		cp := c.Get(f)
		fmt.Fprintf(&b, "%-18s %s", f, cp.Support)
		if cp.Conversion != "" {
			fmt.Fprintf(&b, " (%s)", cp.Conversion)
		}
		if cp.Reason != "" && cp.Support != Exact {
			fmt.Fprintf(&b, ": %s", cp.Reason)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
