package semantic

import (
	"math"
	"time"
)

// Conversions shared by drivers. Each is a pure function with a named
// formula; the tests pin their exact values and round-trip behaviour.

// v1 CPU shares bounds and default.
const (
	MinShares     = 2
	MaxShares     = 262144
	DefaultShares = 1024
)

// ConvWeightToShares names the CPU weight <-> v1 shares conversion.
const ConvWeightToShares = "systemd's linear map: shares = round(weight × 1024 / 100), weight = round(shares × 100 / 1024)"

// WeightToShares converts a CPU weight (1..10000, default 100) to v1
// cpu.shares on systemd's linear scale, shares = round(weight × 1024 /
// 100), clamped to the kernel's 2..262144. The default maps to the
// default (100 -> 1024), 1 to 10 and 10000 to 102400. systemd truncates
// where this rounds; rounding is what makes the round trip below exact.
//
// Round trip: SharesToWeight(WeightToShares(w)) == w for every weight in
// 1..10000, because one weight step is 10.24 shares. The other direction is
// lossy: shares between two images of weights come back as the nearest image.
func WeightToShares(weight uint64) uint64 {
	if weight >= MaxShares {
		// Any such weight clamps; stop before weight×1024 can overflow.
		return MaxShares
	}
	s := (weight*1024 + 50) / 100
	return min(max(s, MinShares), MaxShares)
}

// SharesToWeight converts v1 cpu.shares to a CPU weight, the inverse of
// WeightToShares: weight = round(shares × 100 / 1024), clamped to 1..10000.
func SharesToWeight(shares uint64) uint64 {
	if shares >= MaxWeight*1024/100 {
		return MaxWeight
	}
	w := (shares*100 + 512) / 1024
	return min(max(w, MinWeight), MaxWeight)
}

// v1 blkio weight bounds and default.
const (
	MinBlkioWeight     = 10
	MaxBlkioWeight     = 1000
	DefaultBlkioWeight = 500
)

// ConvIOWeightToBlkio names the IO weight <-> blkio.weight conversion.
const ConvIOWeightToBlkio = "systemd's map: blkio = io × 5 clamped to 10..1000, io = round(blkio / 5)"

// IOWeightToBlkio converts an IO weight (1..10000, default 100) to v1
// blkio.weight (10..1000, default 500) as systemd does: blkio = io × 500 /
// 100, clamped. It is exact (and round-trips) for weights 2..200; outside
// that range it clamps, which is an approximation: exact reports whether
// no clamping happened.
func IOWeightToBlkio(weight uint64) (blkio uint64, exact bool) {
	if weight > MaxBlkioWeight {
		// Clamped whatever the formula says; stop before it can overflow.
		return MaxBlkioWeight, false
	}
	b := weight * DefaultBlkioWeight / DefaultWeight
	c := min(max(b, MinBlkioWeight), MaxBlkioWeight)
	return c, c == b
}

// BlkioToIOWeight is the inverse of IOWeightToBlkio: io = round(blkio / 5).
func BlkioToIOWeight(blkio uint64) uint64 {
	if blkio >= MaxWeight*DefaultBlkioWeight/DefaultWeight {
		return MaxWeight
	}
	w := (blkio*DefaultWeight + DefaultBlkioWeight/2) / DefaultBlkioWeight
	return min(max(w, MinWeight), MaxWeight)
}

// ConvSwapToMemsw names the swap <-> v1 memsw conversion.
const ConvSwapToMemsw = "memsw = memory max + swap (max if either is max)"

// SwapToMemsw converts a v2-style swap allowance (swap in addition to
// memory) to v1's memory.memsw.limit_in_bytes (memory plus swap). Either
// side unlimited gives unlimited; a sum that overflows gives unlimited.
func SwapToMemsw(memMax, swap Bytes) Bytes {
	if memMax.IsUnlimited() || swap.IsUnlimited() {
		return Unlimited
	}
	sum := memMax + swap
	if sum < memMax || sum == Unlimited {
		return Unlimited
	}
	return sum
}

// MemswToSwap is the inverse of SwapToMemsw: swap = memsw - memory. An
// unlimited memsw is unlimited swap. ok is false when the pair has no v2
// meaning: memsw limited while memory is not, or memsw below memory (the
// kernel refuses that).
func MemswToSwap(memMax, memsw Bytes) (swap Bytes, ok bool) {
	switch {
	case memsw.IsUnlimited():
		return Unlimited, true
	case memMax.IsUnlimited() || memsw < memMax:
		return 0, false
	}
	return memsw - memMax, true
}

// ConvCPUsToQuota names the CPUs <-> CFS quota conversion.
const ConvCPUsToQuota = "quota = round(CPUs × period) in whole microseconds; CPUs = quota / period"

// CPUsToQuota converts a CPU cap to the CFS quota per period, rounded to
// the nearest microsecond (the kernel's unit). cpus 0 (no cap) gives -1,
// the kernel's "max".
func CPUsToQuota(cpus float64, period time.Duration) time.Duration {
	if cpus == 0 {
		return -1
	}
	us := math.Round(cpus * float64(period.Microseconds()))
	return time.Duration(us) * time.Microsecond
}

// QuotaToCPUs is the inverse of CPUsToQuota: CPUs = quota / period, and a
// negative quota ("max") is 0, no cap. CPUsToQuota(QuotaToCPUs(q, p), p)
// == q for every whole-microsecond quota.
func QuotaToCPUs(quota, period time.Duration) float64 {
	if quota < 0 || period <= 0 {
		return 0
	}
	return float64(quota.Microseconds()) / float64(period.Microseconds())
}
