package semantic

import (
	"fmt"
	"time"
)

// Stats is a snapshot of a group's usage. A nil section or a nil figure is
// absent: the driver cannot provide it here (it is never reported as 0).
type Stats struct {
	Memory   *MemoryStats    `json:"memory,omitempty"`
	CPU      *CPUStats       `json:"cpu,omitempty"`
	Pids     *PidsStats      `json:"pids,omitempty"`
	IO       []IODeviceStats `json:"io,omitempty"`
	Pressure *PressureStats  `json:"pressure,omitempty"`
}

// MemoryStats in bytes, and event counts.
type MemoryStats struct {
	Usage   *uint64 `json:"usage,omitempty"`
	Peak    *uint64 `json:"peak,omitempty"`
	Anon    *uint64 `json:"anon,omitempty"`
	File    *uint64 `json:"file,omitempty"`
	Swap    *uint64 `json:"swap,omitempty"`
	OOM     *uint64 `json:"oom,omitempty"`
	OOMKill *uint64 `json:"oom_kill,omitempty"`
}

// CPUStats: times are cumulative since the group was created.
type CPUStats struct {
	Usage            *time.Duration `json:"usage,omitempty"`
	User             *time.Duration `json:"user,omitempty"`
	System           *time.Duration `json:"system,omitempty"`
	Periods          *uint64        `json:"periods,omitempty"`
	ThrottledPeriods *uint64        `json:"throttled_periods,omitempty"`
	ThrottledTime    *time.Duration `json:"throttled_time,omitempty"`
}

// PidsStats counts tasks.
type PidsStats struct {
	Current *uint64 `json:"current,omitempty"`
	Limit   *Count  `json:"limit,omitempty"`
}

// IODeviceStats are cumulative per block device.
type IODeviceStats struct {
	Major      int64   `json:"major"`
	Minor      int64   `json:"minor"`
	ReadBytes  *uint64 `json:"rbytes,omitempty"`
	WriteBytes *uint64 `json:"wbytes,omitempty"`
	ReadIOs    *uint64 `json:"rios,omitempty"`
	WriteIOs   *uint64 `json:"wios,omitempty"`
}

// PressureStats are the kernel's pressure stall figures (PSI).
type PressureStats struct {
	CPU    *Pressure `json:"cpu,omitempty"`
	Memory *Pressure `json:"memory,omitempty"`
	IO     *Pressure `json:"io,omitempty"`
}

// Pressure holds the "some" and "full" lines of one PSI file; Full is nil
// where the kernel has no full line.
type Pressure struct {
	Some *PressureLine `json:"some,omitempty"`
	Full *PressureLine `json:"full,omitempty"`
}

// PressureLine is one PSI line: averages in percent, total stall time.
type PressureLine struct {
	Avg10  float64       `json:"avg10"`
	Avg60  float64       `json:"avg60"`
	Avg300 float64       `json:"avg300"`
	Total  time.Duration `json:"total"`
}

// EventKind is what happened to a group.
type EventKind int

const (
	// EventOOM: the group hit its memory limit and the OOM killer ran (or
	// would have).
	EventOOM EventKind = iota + 1
	// EventOOMKill: a process in the group was OOM-killed.
	EventOOMKill
	// EventPopulated: the group (or a descendant) gained its first process.
	EventPopulated
	// EventEmpty: the group and its descendants lost their last process.
	EventEmpty
	// EventFrozen: the group reached the frozen state.
	EventFrozen
	// EventThawed: the group left the frozen state.
	EventThawed
)

var eventNames = map[EventKind]string{
	EventOOM: "oom", EventOOMKill: "oom_kill", EventPopulated: "populated",
	EventEmpty: "empty", EventFrozen: "frozen", EventThawed: "thawed",
}

// String names the kind as JSON and the CLI do: "oom", "oom_kill", ...
func (k EventKind) String() string {
	if n, ok := eventNames[k]; ok {
		return n
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// MarshalText renders the kind as String does.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText writes for a known kind.
func (k *EventKind) UnmarshalText(b []byte) error {
	for v, n := range eventNames {
		if string(b) == n {
			*k = v
			return nil
		}
	}
	return invalidf("event kind %q: want oom, oom_kill, populated, empty, frozen or thawed", b)
}

// Event is one thing that happened to a group.
type Event struct {
	Kind  EventKind `json:"kind"`
	Group Path      `json:"group"`
	Time  time.Time `json:"time"`
	// Count is the kernel's cumulative counter for OOM and OOM-kill events
	// where it has one (0 when it has none).
	Count uint64 `json:"count,omitempty"`
}

// String renders the event as one line: time, group, kind and any count.
func (e Event) String() string {
	s := fmt.Sprintf("%s %s %s", e.Time.Format(time.RFC3339Nano), e.Group.Display(), e.Kind)
	if e.Count != 0 {
		s += fmt.Sprintf(" count=%d", e.Count)
	}
	return s
}
