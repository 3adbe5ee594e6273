package v2

import (
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cgsem/cgsem/semantic"
)

// threadedControllers are the controllers a threaded subtree takes; the
// others (memory, io, hugetlb) account per process and stop at the
// subtree's domain.
var threadedControllers = []string{ctlCPU, ctlCPUSet, ctlPids}

// kernelVersion is a kernel release's major and minor numbers.
type kernelVersion [2]int

func (k kernelVersion) atLeast(major, minor int) bool {
	return k[0] > major || k[0] == major && k[1] >= minor
}

// parseKernelRelease reads "6.1.0-18-amd64" as {6, 1}; what it cannot
// read is {0, 0}, which is older than every feature.
func parseKernelRelease(s string) kernelVersion {
	var k kernelVersion
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return kernelVersion{}
	}
	for i, part := range parts[:2] {
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			part = part[:end]
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return kernelVersion{}
		}
		k[i] = n
	}
	return k
}

// hostFacts is what capabilities are decided from, gathered by probe so
// that the decision itself is a pure function.
type hostFacts struct {
	// root is the root's directory, for reasons.
	root string
	// controllers is the root's cgroup.controllers: what its parent lets
	// it hand down.
	controllers []string
	// files says which interface files a group below the root has; a file
	// not listed is unknown (the root is the hierarchy's top and has no
	// child to look at) and taken to exist when its controller does.
	files map[string]bool
	// hugeSizes are the huge page sizes of the host.
	hugeSizes []semantic.Bytes
	// devices is why a device program cannot be loaded; nil if it can.
	devices error
	kernel  kernelVersion
	// threaded is the "threaded" setting.
	threaded bool
	// pressure is whether the kernel keeps pressure stall information.
	pressure bool
}

// probeFiles are the interface files whose presence decides a feature
// beyond its controller's (kernel configuration: swap accounting, CFS
// bandwidth, blk-iocost; kernel age: freeze, kill).
var probeFiles = []string{
	"memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max",
	"cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "io.weight", "io.max", "pids.max",
	"cgroup.freeze", "cgroup.kill",
}

// capabilities decides every feature from the host's facts.
func capabilities(h hostFacts) semantic.Capabilities {
	caps := semantic.Capabilities{}
	exact := func(f semantic.Feature) {
		caps[f] = semantic.Capability{Feature: f, Support: semantic.Exact}
	}
	no := func(f semantic.Feature, format string, args ...any) {
		caps[f] = semantic.Capability{Feature: f, Support: semantic.Unsupported, Reason: fmt.Sprintf(format, args...)}
	}
	// controller says why a controller cannot be used, or "".
	controller := func(c string) string {
		if h.threaded && !slices.Contains(threadedControllers, c) {
			return fmt.Sprintf("the %s controller is a domain controller, and a threaded subtree (setting threaded=true) takes only %s",
				c, strings.Join(threadedControllers, ", "))
		}
		if !slices.Contains(h.controllers, c) {
			return fmt.Sprintf("the %s controller is not available at the root %s (its cgroup.controllers lists %q): the root's parent must enable it in cgroup.subtree_control",
				c, h.root, strings.Join(h.controllers, " "))
		}
		return ""
	}
	// file says why an interface file is missing, or "".
	file := func(name, why string) string {
		if present, known := h.files[name]; known && !present {
			return fmt.Sprintf("groups below %s have no %s (%s)", h.root, name, why)
		}
		return ""
	}
	whyFile := map[string]string{
		"memory.swap.max": "swap accounting is off in this kernel",
		"cpu.max":         "this kernel has no CFS bandwidth control",
		"io.weight":       "this kernel has no blk-iocost, which io.weight needs",
		"io.max":          "this kernel has no block IO throttling",
	}
	for _, f := range semantic.ResourceFeatures {
		switch f {
		case semantic.DevicesFeature:
			if h.devices != nil {
				no(f, "cannot load a BPF_PROG_TYPE_CGROUP_DEVICE program: %v", h.devices)
			} else {
				exact(f)
			}
			continue
		case semantic.HugeTLB:
			switch {
			case controller(ctlHugeTLB) != "":
				no(f, "%s", controller(ctlHugeTLB))
			case len(h.hugeSizes) == 0:
				no(f, "this host has no huge page sizes (/sys/kernel/mm/hugepages is empty)")
			default:
				exact(f)
			}
			continue
		}
		name := fileOf[f]
		why := whyFile[name]
		if why == "" {
			why = "unknown kernel configuration"
		}
		if r := controller(controllerOf[f]); r != "" {
			no(f, "%s", r)
		} else if r := file(name, why); r != "" {
			no(f, "%s", r)
		} else {
			exact(f)
		}
	}

	op := func(f semantic.Feature, fileName string, major, minor int, what string) {
		r := file(fileName, fmt.Sprintf("%s needs Linux %d.%d", what, major, minor))
		if _, known := h.files[fileName]; !known && !h.kernel.atLeast(major, minor) {
			r = fmt.Sprintf("%s needs Linux %d.%d (this is %d.%d)", what, major, minor, h.kernel[0], h.kernel[1])
		}
		if r != "" {
			no(f, "%s", r)
		} else {
			exact(f)
		}
	}
	op(semantic.Freeze, "cgroup.freeze", 5, 2, "the cgroup v2 freezer")
	op(semantic.Kill, "cgroup.kill", 5, 14, "cgroup.kill")
	op(semantic.EventsFrozen, "cgroup.freeze", 5, 2, "the frozen key of cgroup.events")
	if h.kernel.atLeast(5, 7) {
		exact(semantic.StartInside)
	} else {
		no(semantic.StartInside, "CLONE_INTO_CGROUP needs Linux 5.7 (this is %d.%d)", h.kernel[0], h.kernel[1])
	}
	exact(semantic.EventsPopulated)
	if r := controller(ctlMemory); r != "" {
		no(semantic.EventsOOM, "memory.events: %s", r)
	} else {
		exact(semantic.EventsOOM)
	}
	if h.threaded {
		exact(semantic.Threads)
	} else {
		no(semantic.Threads, "cgroup v2 moves a single thread only within a threaded subtree; open the driver with setting threaded=true")
	}
	if h.pressure {
		exact(semantic.StatsPressure)
	} else {
		no(semantic.StatsPressure, "the kernel keeps no pressure stall information (PSI is off: no cpu.pressure at %s)", h.root)
	}
	return caps
}

// hostHugeSizes lists the huge page sizes of the host from sysfs
// ("hugepages-2048kB"), sorted.
func hostHugeSizes() []semantic.Bytes {
	ents, err := os.ReadDir("/sys/kernel/mm/hugepages")
	if err != nil {
		return nil
	}
	var out []semantic.Bytes
	for _, e := range ents {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSuffix(kb, "kB"), 10, 64); err == nil {
			out = append(out, semantic.Bytes(n)*semantic.KiB)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// probeDirFor picks the group whose interface files show what groups
// below the root get: the root itself, unless it is the hierarchy's top
// (which has none of them), then one of its children, whose files are
// those of the controllers enabled in the top's cgroup.subtree_control.
// It returns "" (nothing to look at) for a top without children.
func probeDirFor(rootDir string, top bool) string {
	if !top {
		return rootDir
	}
	ents, err := os.ReadDir(rootDir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if e.IsDir() {
			return path.Join(rootDir, e.Name())
		}
	}
	return ""
}
