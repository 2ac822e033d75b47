package main

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBucketBoundsRoundTrip(t *testing.T) {
	// Every value must land in a bucket that contains it, buckets must be
	// contiguous, and their width must stay within 2/histSub of the value.
	prevIdx := -1
	var prevHi uint64
	check := func(v uint64) {
		t.Helper()
		i := bucketIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketIndex(%d) = %d out of range [0,%d)", v, i, histBuckets)
		}
		lo, w := bucketBounds(i)
		if v < lo || v >= lo+w {
			t.Fatalf("value %d in bucket %d = [%d,%d)", v, i, lo, lo+w)
		}
		if v >= histSub && float64(w)/float64(v) > 2.0/histSub {
			t.Fatalf("bucket %d for %d too wide: %d", i, v, w)
		}
		if i != prevIdx {
			if prevIdx >= 0 && (i != prevIdx+1 || lo != prevHi) {
				t.Fatalf("buckets not contiguous at %d: idx %d->%d, lo %d, prev hi %d", v, prevIdx, i, lo, prevHi)
			}
			prevIdx, prevHi = i, lo+w
		}
	}
	for v := uint64(0); v < 1<<16; v++ {
		check(v)
	}
	// Sample larger values: bucket starts and ends.
	for i := bucketIndex(1 << 16); i < histBuckets; i++ {
		lo, w := bucketBounds(i)
		check(lo)
		check(lo + w - 1)
	}
	if got := bucketIndex(math.MaxUint64); got != histBuckets-1 {
		t.Fatalf("huge value clamps to %d, want %d", got, histBuckets-1)
	}
}

func TestPercentileExact(t *testing.T) {
	h := newHistogram()
	// 1..1000 ns in shuffled order: all in the exact region.
	for i := 0; i < 1000; i++ {
		h.record(time.Duration((i*7919)%1000 + 1))
	}
	cases := []struct {
		p    float64
		want uint64
	}{
		{0.01, 1}, {1, 10}, {50, 500}, {90, 900}, {99, 990}, {99.9, 999}, {100, 1000},
	}
	for _, c := range cases {
		if got := h.percentile(c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if h.min != 1 || h.max != 1000 || h.total != 1000 {
		t.Errorf("min/max/total = %d/%d/%d", h.min, h.max, h.total)
	}
	if got := h.mean(); got != 500.5 {
		t.Errorf("mean = %v, want 500.5", got)
	}
}

func TestPercentileRelativeError(t *testing.T) {
	h := newHistogram()
	// 90 % at ~150 µs, 9 % at ~1 ms, 1 % at ~20 ms.
	for i := 0; i < 9000; i++ {
		h.record(150*time.Microsecond + time.Duration(i%100)*time.Nanosecond)
	}
	for i := 0; i < 900; i++ {
		h.record(time.Millisecond)
	}
	for i := 0; i < 100; i++ {
		h.record(20 * time.Millisecond)
	}
	near := func(name string, got uint64, want time.Duration) {
		t.Helper()
		if rel := math.Abs(float64(got)-float64(want)) / float64(want); rel > 2.0/histSub {
			t.Errorf("%s = %d ns, want %v (rel err %.4f)", name, got, want, rel)
		}
	}
	near("p50", h.percentile(50), 150*time.Microsecond)
	near("p90", h.percentile(90), 150*time.Microsecond)
	near("p95", h.percentile(95), time.Millisecond)
	near("p99", h.percentile(99), time.Millisecond)
	near("p99.9", h.percentile(99.9), 20*time.Millisecond)
	if got := h.percentile(100); got != uint64(20*time.Millisecond) {
		t.Errorf("p100 = %d, want exact max", got)
	}
	// Reported values never leave [min, max].
	one := newHistogram()
	one.record(123456789 * time.Nanosecond)
	for _, p := range []float64{0.1, 50, 99.9, 100} {
		if got := one.percentile(p); got != 123456789 {
			t.Errorf("single value p%v = %d", p, got)
		}
	}
}

func TestHistogramMergeResetEmpty(t *testing.T) {
	a, b, m := newHistogram(), newHistogram(), newHistogram()
	if m.percentile(50) != 0 || m.mean() != 0 {
		t.Fatal("empty histogram must report 0")
	}
	for i := 1; i <= 500; i++ {
		a.record(time.Duration(i))
	}
	for i := 501; i <= 1000; i++ {
		b.record(time.Duration(i))
	}
	m.merge(a)
	m.merge(newHistogram()) // no-op
	m.merge(b)
	if m.total != 1000 || m.min != 1 || m.max != 1000 || m.percentile(50) != 500 || m.percentile(99) != 990 {
		t.Fatalf("merged: total %d min %d max %d p50 %d p99 %d",
			m.total, m.min, m.max, m.percentile(50), m.percentile(99))
	}
	m.reset()
	if m.total != 0 || m.percentile(50) != 0 || m.max != 0 {
		t.Fatal("reset did not clear")
	}
	m.merge(b) // min must come from b, not the zeroed state
	if m.min != 501 {
		t.Fatalf("min after reset+merge = %d", m.min)
	}
}

func TestSummarizeAndCompare(t *testing.T) {
	mk := func(name string, lat time.Duration, n int, elapsed time.Duration, c counters) variantStats {
		h := newHistogram()
		for i := 0; i < n; i++ {
			h.record(lat)
		}
		c.ok = uint64(n)
		return summarize(name, h, &c, elapsed)
	}
	plain := mk("plain", 100*time.Microsecond, 10000, 2*time.Second, counters{})
	if plain.RPS != 5000 || plain.Requests != 10000 || plain.Errors != 0 {
		t.Fatalf("plain = %+v", plain)
	}
	if math.Abs(plain.LatencyUS.P50-100) > 0.2 {
		t.Fatalf("plain p50 = %v µs", plain.LatencyUS.P50)
	}

	consent := mk("consent", 110*time.Microsecond, 9200, 2*time.Second,
		counters{non200: 3, transportErr: 2, status: map[int]uint64{503: 3}})
	if consent.Requests != 9205 || consent.Errors != 5 || consent.StatusCodes["503"] != 3 {
		t.Fatalf("consent = %+v", consent)
	}
	c := compare(plain, consent, targetThroughputRatio)
	if !c.Valid || math.Abs(c.ThroughputRatio-0.92) > 1e-9 || !c.ThroughputPass {
		t.Fatalf("ratio: %+v", c)
	}
	if math.Abs(c.AddedP50us-10) > 0.5 || !c.P50Pass || math.Abs(c.AddedP99us-10) > 0.5 || !c.P99Pass {
		t.Fatalf("added latency: %+v", c)
	}

	slow := mk("consent", 400*time.Microsecond, 8000, 2*time.Second, counters{})
	c = compare(plain, slow, targetThroughputRatio)
	if c.ThroughputPass || c.P50Pass || c.P99Pass {
		t.Fatalf("slow variant should miss every target: %+v", c)
	}
	// Exactly on target passes.
	edge := compare(variantStats{OK: 1, RPS: 100}, variantStats{OK: 1, RPS: 90,
		LatencyUS: latencyStats{P50: 25, P99: 250}}, targetThroughputRatio)
	if !edge.ThroughputPass || !edge.P50Pass || !edge.P99Pass {
		t.Fatalf("edge: %+v", edge)
	}

	none := compare(plain, variantStats{Name: "consent"}, targetThroughputRatio)
	if none.Valid || none.ThroughputPass || none.P50Pass || none.P99Pass {
		t.Fatalf("no-success comparison must be invalid and miss: %+v", none)
	}
}

func TestWriteTable(t *testing.T) {
	plain := variantStats{Name: "plain", Requests: 1000, OK: 1000, RPS: 5000,
		LatencyUS: latencyStats{P50: 100, P90: 150, P99: 300, P999: 500, Max: 900}}
	consent := variantStats{Name: "consent", Requests: 950, OK: 940, Errors: 10, Non200: 10,
		StatusCodes: map[string]uint64{"403": 10}, RPS: 4700,
		LatencyUS: latencyStats{P50: 130, P90: 190, P99: 400, P999: 700, Max: 1200}}
	r := &report{
		Config:     benchConfig{Bin: "/x/caddy", Rounds: 3, DurationSec: 5, WarmupSec: 1, Concurrency: 16, ConsentOn: true, Token: true},
		Plain:      plain,
		Consent:    consent,
		Comparison: compare(plain, consent, targetThroughputRatio),
	}
	var buf bytes.Buffer
	if err := writeTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"throughput ratio consent/plain = 0.940 (target >= 0.90)  PASS",
		"added median latency = 30.0 µs (target <= 25 µs)  MISS",
		"added p99 latency = 100.0 µs (target <= 250 µs)  PASS",
		"consent errors: 0 transport, 10 x HTTP 403",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Table columns are aligned: header and rows have the same width.
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); strings.HasPrefix(l, " ") && len(f) > 0 &&
			(f[0] == "variant" || f[0] == "plain" || f[0] == "consent") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 3 {
		t.Fatalf("want header + 2 rows, got %q", rows)
	}
	for _, l := range rows[1:] {
		if len([]rune(l)) != len([]rune(rows[0])) {
			t.Errorf("misaligned table:\n%s", strings.Join(rows, "\n"))
		}
	}
}

func TestCaddyfile(t *testing.T) {
	with := caddyfile(1, 2, 3, 4, "/tmp/a b/store", true, false)
	for _, want := range []string{
		"admin 127.0.0.1:1", "persist_config off", "auto_https off", "level ERROR",
		"storage \"/tmp/a b/store\"", "http://127.0.0.1:2 {\n\treverse_proxy 127.0.0.1:4\n}",
		"http://127.0.0.1:3 {\n\tconsent\n\treverse_proxy 127.0.0.1:4\n}",
	} {
		if !strings.Contains(with, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, with)
		}
	}
	without := caddyfile(1, 2, 3, 4, "/s", false, false)
	if strings.Contains(without, "consent") {
		t.Errorf("-no-consent Caddyfile mentions consent:\n%s", without)
	}
}

func TestFetchToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/_consent/state" {
			http.SetCookie(w, &http.Cookie{Name: "other", Value: "x"})
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: "tok123", Path: "/"})
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	tok, err := fetchToken(context.Background(), srv.URL+"/_consent/state")
	if err != nil || tok != "tok123" {
		t.Fatalf("fetchToken = %q, %v", tok, err)
	}
	if _, err := fetchToken(context.Background(), srv.URL+"/elsewhere"); err == nil {
		t.Fatal("want an error when no cg_consent cookie is set")
	}
}

func TestMissingConsentModule(t *testing.T) {
	for _, s := range []string{
		`Caddyfile:8: unrecognized global option: consent`,
		`Caddyfile:15: unrecognized directive: consent`,
		`directive 'consent' is not an ordered HTTP handler`,
	} {
		if !missingConsentModule(s) {
			t.Errorf("not detected: %s", s)
		}
	}
	if missingConsentModule("listen tcp 127.0.0.1:80: bind: address already in use") {
		t.Error("false positive")
	}
}

func TestThroughputTargetByMode(t *testing.T) {
	for _, tc := range []struct {
		o    options
		want float64
	}{
		{options{}, 0.90},
		{options{htmlSize: 51200}, 0.80},
		{options{beacon: true}, 0.85},
	} {
		if got := throughputTarget(&tc.o); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.o, got, tc.want)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system (not Linux): processCPU reports nothing here")
	}
	before, ok := processCPU(os.Getpid())
	if !ok {
		t.Fatal("processCPU could not read this process's /proc entry")
	}
	// Burn CPU until the kernel's count (in clock ticks) moves: on a
	// loaded machine 50 ms of wall time may not be one tick of CPU.
	deadline := time.Now().Add(10 * time.Second)
	after := before
	for x := 0; after <= before && time.Now().Before(deadline); x++ {
		if x%(1<<20) == 0 {
			if after, ok = processCPU(os.Getpid()); !ok {
				t.Fatal("processCPU could not read this process's /proc entry again")
			}
		}
	}
	if after <= before {
		t.Fatalf("CPU %v then %v after 10 s of spinning", before, after)
	}
	if _, ok := processCPU(1 << 30); ok {
		t.Error("a process that does not exist has a CPU time")
	}
}
