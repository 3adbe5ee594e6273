package v1

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// planDriver is a driver with one hierarchy carrying memory and cpu, and
// no files: plans read the current state from the cache they are given.
func planDriver() (*Driver, *hier) {
	h := &hier{key: "x", controllers: []string{"memory", "cpu"}}
	d := &Driver{
		byCtrl:   map[string]*hier{"memory": h, "cpu": h},
		caps:     semantic.Capabilities{semantic.MemorySwap: {Feature: semantic.MemorySwap, Support: semantic.Exact}},
		pageSize: 4096,
	}
	d.memMax = math.MaxInt64 / d.pageSize * d.pageSize
	return d, h
}

func kernelMem(d *Driver, b semantic.Bytes) string {
	if b.IsUnlimited() {
		return strconv.FormatUint(d.memMax, 10) // as the kernel reads it back
	}
	return strconv.FormatUint(uint64(b), 10)
}

// TestPlanMemoryOrder runs random (memory, memsw) transitions through a
// model of the kernel, which refuses any write leaving memory above
// memsw, and checks the writes reach the target and their undo returns.
func TestPlanMemoryOrder(t *testing.T) {
	d, h := planDriver()
	r := rand.New(rand.NewPCG(5, 6))
	limit := func() semantic.Bytes {
		if r.IntN(5) == 0 {
			return semantic.Unlimited
		}
		return semantic.Bytes(1+r.IntN(64)) * semantic.MiB
	}
	for i := range 5000 {
		m0 := limit()
		s0 := limit()
		if s0 < m0 {
			m0, s0 = s0, m0
		}
		req := &semantic.Memory{}
		if r.IntN(3) != 0 {
			req.Max = ptr(limit())
		}
		if req.Max == nil || r.IntN(2) == 0 {
			req.Swap = ptr(limit())
		}
		cur := &current{d: d, cache: map[string]string{
			"x/memory.limit_in_bytes": kernelMem(d, m0), "x/memory.memsw.limit_in_bytes": kernelMem(d, s0),
		}}
		steps, err := d.planMemory(h, req, cur)
		name := fmt.Sprintf("case %d: (%s, %s) + max=%v swap=%v", i, m0, s0, show(req.Max), show(req.Swap))
		m1 := m0
		if req.Max != nil {
			m1 = *req.Max
		}
		swap1, _ := semantic.MemswToSwap(m0, s0)
		if req.Swap != nil {
			swap1 = *req.Swap
		}
		if m1.IsUnlimited() && !swap1.IsUnlimited() {
			// memsw = memory + swap cannot hold a swap limit without a
			// memory limit: refused, not dropped.
			require.ErrorIs(t, err, semantic.ErrNotSupported, name)
			continue
		}
		require.NoError(t, err, name)

		state := map[string]semantic.Bytes{"memory.limit_in_bytes": m0, "memory.memsw.limit_in_bytes": s0}
		apply := func(w write) {
			state[w.file] = d.parseMem(w.value)
			require.LessOrEqual(t, state["memory.limit_in_bytes"], state["memory.memsw.limit_in_bytes"],
				"%s: write %s=%s leaves memory above memsw", name, w.file, w.value)
		}
		for _, st := range steps {
			apply(st.write)
		}
		swap0, ok := semantic.MemswToSwap(m0, s0)
		require.True(t, ok)
		if req.Swap != nil {
			swap0 = *req.Swap
		}
		assert.Equal(t, m1, state["memory.limit_in_bytes"], name)
		assert.Equal(t, semantic.SwapToMemsw(m1, swap0), state["memory.memsw.limit_in_bytes"], name,
			"the swap allowance is the requested one, or kept")
		for k := len(steps) - 1; k >= 0; k-- {
			for _, u := range steps[k].undo {
				apply(u)
			}
		}
		assert.Equal(t, m0, state["memory.limit_in_bytes"], name)
		assert.Equal(t, s0, state["memory.memsw.limit_in_bytes"], name)
	}
}

func show(b *semantic.Bytes) string {
	if b == nil {
		return "-"
	}
	return b.String()
}

// TestPlanCPUMaxOrder checks that between the quota and period writes
// the ratio never exceeds the larger of the old and new ratios.
func TestPlanCPUMaxOrder(t *testing.T) {
	d, _ := planDriver()
	periods := []int64{1000, 10000, 100000, 1000000}
	for _, p0 := range periods {
		for _, q0 := range []int64{-1, 1000, 50000, 300000} {
			for _, p1 := range periods {
				for _, cpus := range []float64{0, 0.5, 2} {
					m := &semantic.CPUMax{CPUs: cpus, Period: time.Duration(p1) * time.Microsecond}
					cur := &current{d: d, cache: map[string]string{
						"x/cpu.cfs_quota_us": strconv.FormatInt(q0, 10), "x/cpu.cfs_period_us": strconv.FormatInt(p0, 10),
					}}
					steps, err := d.planCPUMax(m, cur)
					require.NoError(t, err)
					q1 := int64(-1)
					if cpus != 0 {
						q1 = semantic.CPUsToQuota(cpus, m.Period).Microseconds()
					}
					ratio := func(q, p int64) float64 {
						if q < 0 {
							return math.Inf(1)
						}
						return float64(q) / float64(p)
					}
					bound := max(ratio(q0, p0), ratio(q1, p1))
					q, p := q0, p0
					for _, st := range steps {
						v, _ := strconv.ParseInt(st.value, 10, 64)
						if st.file == "cpu.cfs_quota_us" {
							q = v
						} else {
							p = v
						}
						require.LessOrEqual(t, ratio(q, p), bound, "%d/%d -> %v: after %s", q0, p0, m, st.file)
					}
					assert.Equal(t, [2]int64{q1, p1}, [2]int64{q, p}, "%d/%d -> %v", q0, p0, m)
				}
			}
		}
	}
}

// TestPlanSkipsUnchanged: a request equal to the state writes nothing.
func TestPlanSkipsUnchanged(t *testing.T) {
	d, h := planDriver()
	cur := &current{d: d, cache: map[string]string{
		"x/memory.limit_in_bytes": "67108864", "x/memory.memsw.limit_in_bytes": "67108864",
		"x/cpu.shares": "1024", "x/cpu.cfs_quota_us": "50000", "x/cpu.cfs_period_us": "100000",
	}}
	d.byCtrl["pids"] = h
	cur.cache["x/pids.max"] = "max"
	steps, err := d.plan(&prepared{res: &semantic.Resources{
		Memory: &semantic.Memory{Max: ptr(64 * semantic.MiB), Swap: ptr(semantic.Bytes(0))},
		CPU:    &semantic.CPU{Weight: ptr[uint64](100), Max: &semantic.CPUMax{CPUs: 0.5, Period: 100 * time.Millisecond}},
		Pids:   &semantic.Pids{Max: ptr(semantic.Count(semantic.Unlimited))},
	}}, cur)
	require.NoError(t, err)
	assert.Empty(t, steps)
}
