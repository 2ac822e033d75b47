// Package benchutil runs benchmark operations from many concurrent clients
// and reports their rate, tail latency and the process's memory.
package benchutil

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clients runs op b.N times in total from the given number of concurrent
// clients and reports "<unit>/s", "p99-µs" and "RSS-MB".
func Clients(b *testing.B, clients int, unit string, op func(i int) error) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(max(1, clients/max(1, runtime.GOMAXPROCS(0))))
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			i++
			t0 := time.Now()
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), unit+"/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	if rss := ResidentMB(); rss > 0 {
		b.ReportMetric(rss, "RSS-MB")
	}
}

// ResidentMB reads the process's resident set size from /proc (Linux), or
// returns 0 where that is not available.
func ResidentMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
