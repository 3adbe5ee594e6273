package semantic_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

func TestWeightToShares(t *testing.T) {
	tests := []struct {
		name           string
		weight, shares uint64
	}{
		{"zero clamps to the kernel's minimum", 0, 2},
		{"smallest weight", 1, 10},  // 10.24 rounds down
		{"weight 2", 2, 20},         // 20.48
		{"weight 3", 3, 31},         // 30.72 rounds up
		{"half rounds up", 25, 256}, // exactly 256
		{"default", 100, 1024},      // the defaults map to each other
		{"weight 99", 99, 1014},     // 1013.76
		{"largest weight", 10000, 102400},
		{"beyond the scale", 30000, 262144},
		{"huge does not overflow", math.MaxUint64, 262144},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.shares, semantic.WeightToShares(tt.weight))
		})
	}
}

func TestSharesToWeight(t *testing.T) {
	tests := []struct {
		name           string
		shares, weight uint64
	}{
		{"zero clamps to 1", 0, 1},
		{"kernel minimum", 2, 1},
		{"image of weight 1", 10, 1},
		{"default", 1024, 100},
		{"half the default", 512, 50},
		{"rounds to nearest", 1019, 100}, // 99.51
		{"rounds down", 1018, 99},        // 99.41
		{"image of the largest weight", 102400, 10000},
		{"kernel maximum clamps", 262144, 10000},
		{"huge does not overflow", math.MaxUint64, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.weight, semantic.SharesToWeight(tt.shares))
		})
	}
}

func TestWeightSharesRoundTrip(t *testing.T) {
	prev := uint64(0)
	for w := uint64(semantic.MinWeight); w <= semantic.MaxWeight; w++ {
		s := semantic.WeightToShares(w)
		require.GreaterOrEqual(t, s, uint64(semantic.MinShares))
		require.LessOrEqual(t, s, uint64(semantic.MaxShares))
		require.Greater(t, s, prev, "distinct weights must map to distinct shares (weight %d)", w)
		prev = s
		require.Equal(t, w, semantic.SharesToWeight(s), "weight %d -> shares %d -> weight", w, s)
	}
	// The other direction is lossy: shares come back as the nearest image
	// of a weight, within half a weight step (5.12 shares), and stay there.
	for s := uint64(semantic.MinShares); s <= semantic.MaxShares; s++ {
		w := semantic.SharesToWeight(s)
		require.GreaterOrEqual(t, w, uint64(semantic.MinWeight))
		require.LessOrEqual(t, w, uint64(semantic.MaxWeight))
		img := semantic.WeightToShares(w)
		if s >= 10 && s <= 102400 {
			require.InDelta(t, float64(s), float64(img), 5.12+0.5, "shares %d", s)
		}
		require.Equal(t, img, semantic.WeightToShares(semantic.SharesToWeight(img)), "shares %d", s)
	}
}

func TestIOWeightToBlkio(t *testing.T) {
	tests := []struct {
		name   string
		weight uint64
		blkio  uint64
		exact  bool
	}{
		{"zero clamps", 0, 10, false},
		{"1 clamps", 1, 10, false},
		{"smallest exact", 2, 10, true},
		{"default", 100, 500, true},
		{"largest exact", 200, 1000, true},
		{"201 clamps", 201, 1000, false},
		{"largest weight clamps", 10000, 1000, false},
		{"huge does not overflow", math.MaxUint64, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blkio, exact := semantic.IOWeightToBlkio(tt.weight)
			assert.Equal(t, tt.blkio, blkio)
			assert.Equal(t, tt.exact, exact)
		})
	}
	for w := uint64(2); w <= 200; w++ {
		blkio, exact := semantic.IOWeightToBlkio(w)
		require.True(t, exact, "weight %d", w)
		require.Equal(t, w*5, blkio)
		require.Equal(t, w, semantic.BlkioToIOWeight(blkio), "weight %d -> blkio %d -> weight", w, blkio)
	}
	for w := uint64(201); w <= semantic.MaxWeight; w++ {
		blkio, exact := semantic.IOWeightToBlkio(w)
		require.False(t, exact, "weight %d", w)
		require.Equal(t, uint64(semantic.MaxBlkioWeight), blkio)
	}
}

func TestBlkioToIOWeight(t *testing.T) {
	tests := []struct {
		name          string
		blkio, weight uint64
	}{
		{"zero clamps to 1", 0, 1},
		{"kernel minimum", 10, 2},
		{"rounds down", 12, 2}, // 2.4
		{"rounds up", 13, 3},   // 2.6
		{"half rounds up", 25, 5},
		{"default", 500, 100},
		{"kernel maximum", 1000, 200},
		{"beyond the scale clamps", 60000, 10000},
		{"huge does not overflow", math.MaxUint64, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.weight, semantic.BlkioToIOWeight(tt.blkio))
		})
	}
}

func TestSwapMemsw(t *testing.T) {
	max := semantic.Bytes(semantic.Unlimited)
	tests := []struct {
		name        string
		mem, swap   semantic.Bytes
		memsw       semantic.Bytes
		roundTrips  bool
		swapFromV1  semantic.Bytes
		meaningInV2 bool
	}{
		{"both limited", semantic.GiB, 512 * semantic.MiB, 3 * semantic.GiB / 2, true, 512 * semantic.MiB, true},
		{"no swap", semantic.GiB, 0, semantic.GiB, true, 0, true},
		{"unlimited swap", semantic.GiB, max, max, true, max, true},
		{"unlimited memory", max, semantic.GiB, max, false, max, true},
		{"sum overflows", max - 1, 2, max, false, max, true},
		{"sum reaches max exactly", max - 1, 1, max, false, max, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			memsw := semantic.SwapToMemsw(tt.mem, tt.swap)
			assert.Equal(t, tt.memsw, memsw)
			swap, ok := semantic.MemswToSwap(tt.mem, memsw)
			assert.Equal(t, tt.meaningInV2, ok)
			assert.Equal(t, tt.swapFromV1, swap)
			if tt.roundTrips {
				assert.Equal(t, tt.swap, swap, "swap -> memsw -> swap")
			}
		})
	}
	t.Run("v1 pairs with no v2 meaning", func(t *testing.T) {
		_, ok := semantic.MemswToSwap(max, semantic.GiB)
		assert.False(t, ok, "memsw limited while memory is not")
		_, ok = semantic.MemswToSwap(semantic.GiB, semantic.MiB)
		assert.False(t, ok, "memsw below memory")
	})
	t.Run("round trip over many sizes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for range 10000 {
			mem := semantic.Bytes(rng.Uint64N(1 << 50))
			swap := semantic.Bytes(rng.Uint64N(1 << 50))
			back, ok := semantic.MemswToSwap(mem, semantic.SwapToMemsw(mem, swap))
			require.True(t, ok)
			require.Equal(t, swap, back, "mem %d swap %d", mem, swap)
		}
	})
}

func TestCPUsToQuota(t *testing.T) {
	ms, us := time.Millisecond, time.Microsecond
	tests := []struct {
		name   string
		cpus   float64
		period time.Duration
		quota  time.Duration
	}{
		{"one and a half", 1.5, 100 * ms, 150 * ms},
		{"half on a second", 0.5, time.Second, 500 * ms},
		{"a third rounds to the microsecond", 1.0 / 3, 100 * ms, 33333 * us},
		{"two thirds rounds up", 2.0 / 3, 100 * ms, 66667 * us},
		{"smallest on the shortest period", 0.001, ms, 1 * us},
		{"no cap is the kernel's max", 0, 100 * ms, -1},
		{"many CPUs", semantic.MaxCPUs, time.Second, semantic.MaxCPUs * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.quota, semantic.CPUsToQuota(tt.cpus, tt.period))
		})
	}
}

func TestQuotaToCPUs(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name          string
		quota, period time.Duration
		cpus          float64
	}{
		{"one and a half", 150 * ms, 100 * ms, 1.5},
		{"max is no cap", -1, 100 * ms, 0},
		{"zero period is no cap", 100 * ms, 0, 0},
		{"quarter", 25 * ms, 100 * ms, 0.25},
		{"sub-microsecond part ignored", 150*ms + 999, 100 * ms, 1.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.cpus, semantic.QuotaToCPUs(tt.quota, tt.period))
		})
	}
}

func TestQuotaRoundTrip(t *testing.T) {
	periods := []time.Duration{
		semantic.MinCPUPeriod, 1001 * time.Microsecond, 33333 * time.Microsecond,
		semantic.DefaultCPUPeriod, 999999 * time.Microsecond, semantic.MaxCPUPeriod,
	}
	for _, p := range periods {
		// Every whole-microsecond quota up to 4 CPUs' worth.
		for q := time.Microsecond; q <= 4*p; q += time.Microsecond {
			if got := semantic.CPUsToQuota(semantic.QuotaToCPUs(q, p), p); got != q {
				t.Fatalf("quota %v per %v -> %g CPUs -> quota %v", q, p, semantic.QuotaToCPUs(q, p), got)
			}
		}
	}
	// And a sample up to the largest cap.
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		p := time.Duration(1000+rng.Int64N(999001)) * time.Microsecond
		q := time.Duration(1+rng.Int64N(int64(semantic.MaxCPUs)*p.Microseconds())) * time.Microsecond
		require.Equal(t, q, semantic.CPUsToQuota(semantic.QuotaToCPUs(q, p), p), "quota %v per %v", q, p)
	}
}
