package v2

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cgsem/cgsem/semantic"
)

// captured reads the named vm-* testdata files as Stats reads them.
func captured(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", "vm-"+n))
		require.NoError(t, err)
		out[n] = b
	}
	return out
}

func TestStatsFrom(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	us := func(v int64) *time.Duration { d := time.Duration(v) * time.Microsecond; return &d }

	t.Run("Captured", func(t *testing.T) {
		st, err := statsFrom(captured(t, statNames...))
		require.NoError(t, err)
		require.Equal(t, &semantic.MemoryStats{
			Usage: u(450560), Peak: u(71303168), Anon: u(0), File: u(0), Swap: u(0), OOM: u(0), OOMKill: u(0),
		}, st.Memory)
		require.Equal(t, &semantic.CPUStats{
			Usage: us(914765), User: us(382538), System: us(532227),
			Periods: u(27), ThrottledPeriods: u(17), ThrottledTime: us(1568081),
		}, st.CPU)
		require.Equal(t, []semantic.IODeviceStats{{Major: 1, Minor: 0, ReadBytes: u(0), WriteBytes: u(1 << 20), ReadIOs: u(0), WriteIOs: u(256)}}, st.IO)
		limit := semantic.Count(100)
		require.Equal(t, &semantic.PidsStats{Current: u(0), Limit: &limit}, st.Pids)
		require.NotNil(t, st.Pressure)
		for name, p := range map[string]*semantic.Pressure{"cpu": st.Pressure.CPU, "memory": st.Pressure.Memory, "io": st.Pressure.IO} {
			require.NotNil(t, p, "%s pressure", name)
			require.NotNil(t, p.Some, "%s pressure some", name)
		}
	})

	t.Run("HybridUnifiedHasOnlyCPUAndPressure", func(t *testing.T) {
		// A group on the hybrid host's unified mount has cpu.stat (without
		// throttling: no cpu controller) and the pressure files, nothing
		// else; every other figure is absent, not zero.
		st, err := statsFrom(map[string][]byte{
			"cpu.stat":     []byte("usage_usec 10\nuser_usec 6\nsystem_usec 4\nnice_usec 0\n"),
			"cpu.pressure": []byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"),
		})
		require.NoError(t, err)
		require.Nil(t, st.Memory)
		require.Nil(t, st.Pids)
		require.Nil(t, st.IO)
		require.Equal(t, &semantic.CPUStats{Usage: us(10), User: us(6), System: us(4)}, st.CPU)
		require.NotNil(t, st.Pressure.CPU)
		require.Nil(t, st.Pressure.Memory)
		require.Nil(t, st.Pressure.IO)
	})

	t.Run("Nothing", func(t *testing.T) {
		st, err := statsFrom(nil)
		require.NoError(t, err)
		require.Equal(t, &semantic.Stats{}, st)
	})

	for name, content := range map[string]string{
		"memory.current": "lots\n",
		"cpu.stat":       "usage_usec\n",
		"io.stat":        "sda rbytes=1\n",
		"pids.current":   "-1\n",
		"cpu.pressure":   "some avg10=x\n",
	} {
		t.Run("Malformed/"+name, func(t *testing.T) {
			_, err := statsFrom(map[string][]byte{name: []byte(content)})
			require.ErrorContains(t, err, name)
		})
	}
}
