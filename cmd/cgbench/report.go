package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets for the consent variant relative to plain reverse_proxy (issue
// 2: plain requests).
const (
	targetThroughputRatio = 0.90  // consent req/s / plain req/s >= this
	targetAddedP50us      = 25.0  // consent p50 - plain p50 <= this (µs)
	targetAddedP99us      = 250.0 // consent p99 - plain p99 <= this (µs)

	// Issue 3: a 50 KiB HTML page, rewritten; issue 4: analytics beacons.
	targetHTMLRatio   = 0.80
	targetBeaconRatio = 0.85
)

// throughputTarget is the throughput target of the measured mode.
func throughputTarget(o *options) float64 {
	switch {
	case o.htmlSize > 0:
		return targetHTMLRatio
	case o.beacon:
		return targetBeaconRatio
	}
	return targetThroughputRatio
}

// counters are the non-latency results of a worker, a round or a variant.
type counters struct {
	ok           uint64 // 200 answers (latency recorded)
	non200       uint64 // answers with another status
	transportErr uint64 // connection / protocol errors
	status       map[int]uint64
	firstErr     string
}

func (c *counters) add(o *counters) {
	c.ok += o.ok
	c.non200 += o.non200
	c.transportErr += o.transportErr
	for code, n := range o.status {
		if c.status == nil {
			c.status = make(map[int]uint64)
		}
		c.status[code] += n
	}
	if c.firstErr == "" {
		c.firstErr = o.firstErr
	}
}

func (c *counters) reset() {
	c.ok, c.non200, c.transportErr = 0, 0, 0
	clear(c.status)
	c.firstErr = ""
}

// latencyStats are in microseconds.
type latencyStats struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func latencies(h *histogram) latencyStats {
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	return latencyStats{
		P50:  us(h.percentile(50)),
		P90:  us(h.percentile(90)),
		P99:  us(h.percentile(99)),
		P999: us(h.percentile(99.9)),
		Max:  us(h.max),
		Mean: h.mean() / 1e3,
	}
}

// variantStats summarises one variant (all rounds, or a single round).
type variantStats struct {
	Name string `json:"name"`
	// Requests counts every request that finished in the measured window:
	// OK + Non200 + TransportErrors.
	Requests        uint64            `json:"requests"`
	OK              uint64            `json:"ok"`
	Errors          uint64            `json:"errors"` // Non200 + TransportErrors
	Non200          uint64            `json:"non_200"`
	TransportErrors uint64            `json:"transport_errors"`
	StatusCodes     map[string]uint64 `json:"status_codes,omitempty"`
	FirstError      string            `json:"first_error,omitempty"`
	ElapsedSec      float64           `json:"elapsed_s"`
	// RPS is successful (200) requests per second of measured time.
	RPS       float64      `json:"rps"`
	LatencyUS latencyStats `json:"latency_us"` // of the 200 answers only
	// ServerCPUus and LoadgenCPUus are the CPU time per successful
	// request of Caddy and of cgbench itself (load generator and
	// upstream), where the OS tells; 0 otherwise. Less noisy than
	// throughput on a shared machine.
	ServerCPUus  float64 `json:"server_cpu_us_per_request,omitempty"`
	LoadgenCPUus float64 `json:"loadgen_cpu_us_per_request,omitempty"`
}

func summarize(name string, h *histogram, c *counters, elapsed time.Duration) variantStats {
	s := variantStats{
		Name:            name,
		OK:              c.ok,
		Non200:          c.non200,
		TransportErrors: c.transportErr,
		Errors:          c.non200 + c.transportErr,
		FirstError:      c.firstErr,
		ElapsedSec:      elapsed.Seconds(),
		LatencyUS:       latencies(h),
	}
	s.Requests = s.OK + s.Errors
	if elapsed > 0 {
		s.RPS = float64(c.ok) / elapsed.Seconds()
	}
	if len(c.status) > 0 {
		s.StatusCodes = make(map[string]uint64, len(c.status))
		for code, n := range c.status {
			s.StatusCodes[strconv.Itoa(code)] = n
		}
	}
	return s
}

// comparison holds the consent-vs-plain figures and target verdicts.
type comparison struct {
	// Valid is false when a variant had no successful request; the numbers
	// are then 0 and every target counts as missed.
	Valid           bool    `json:"valid"`
	ThroughputRatio float64 `json:"throughput_ratio"`
	AddedP50us      float64 `json:"added_p50_us"`
	AddedP99us      float64 `json:"added_p99_us"`

	TargetThroughputRatio float64 `json:"target_throughput_ratio"`
	TargetAddedP50us      float64 `json:"target_added_p50_us"`
	TargetAddedP99us      float64 `json:"target_added_p99_us"`

	ThroughputPass bool `json:"throughput_pass"`
	P50Pass        bool `json:"added_p50_pass"`
	P99Pass        bool `json:"added_p99_pass"`
}

func compare(plain, consent variantStats, ratioTarget float64) comparison {
	c := comparison{
		TargetThroughputRatio: ratioTarget,
		TargetAddedP50us:      targetAddedP50us,
		TargetAddedP99us:      targetAddedP99us,
	}
	if plain.OK == 0 || consent.OK == 0 || plain.RPS <= 0 {
		return c
	}
	c.Valid = true
	c.ThroughputRatio = consent.RPS / plain.RPS
	c.AddedP50us = consent.LatencyUS.P50 - plain.LatencyUS.P50
	c.AddedP99us = consent.LatencyUS.P99 - plain.LatencyUS.P99
	c.ThroughputPass = c.ThroughputRatio >= ratioTarget
	c.P50Pass = c.AddedP50us <= targetAddedP50us
	c.P99Pass = c.AddedP99us <= targetAddedP99us
	return c
}

// roundStats is the per-round throughput, kept to judge drift and noise.
type roundStats struct {
	Round   int     `json:"round"`
	Variant string  `json:"variant"`
	RPS     float64 `json:"rps"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	Errors  uint64  `json:"errors"`
}

type benchConfig struct {
	Bin         string  `json:"bin"`
	CaddyVer    string  `json:"caddy_version,omitempty"`
	DurationSec float64 `json:"duration_s"`
	WarmupSec   float64 `json:"warmup_s"`
	Rounds      int     `json:"rounds"`
	Concurrency int     `json:"concurrency"`
	NumCPU      int     `json:"num_cpu"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	ConsentOn   bool    `json:"consent_handler"` // false with -no-consent
	Token       bool    `json:"consent_token"`   // a cg_consent cookie was sent
}

type report struct {
	Config     benchConfig  `json:"config"`
	Plain      variantStats `json:"plain"`
	Consent    variantStats `json:"consent"`
	Comparison comparison   `json:"comparison"`
	Rounds     []roundStats `json:"rounds"`
	Warnings   []string     `json:"warnings,omitempty"`
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// writeTable prints the human-readable report.
func writeTable(w io.Writer, r *report) error {
	var b strings.Builder
	cfg := r.Config
	fmt.Fprintf(&b, "cgbench: %s", cfg.Bin)
	if cfg.CaddyVer != "" {
		fmt.Fprintf(&b, " (%s)", cfg.CaddyVer)
	}
	fmt.Fprintf(&b, "\n%d round(s) x %s per variant, %s warmup, %d connections, %d CPU(s), GOMAXPROCS %d",
		cfg.Rounds, fmtSec(cfg.DurationSec), fmtSec(cfg.WarmupSec), cfg.Concurrency, cfg.NumCPU, cfg.GOMAXPROCS)
	switch {
	case !cfg.ConsentOn:
		b.WriteString("\nNOTE: -no-consent: both variants are plain reverse_proxy (A/A run)")
	case !cfg.Token:
		b.WriteString("\nNOTE: no cg_consent token was obtained; consent requests carry no consent cookie")
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\trequests\terrors\treq/s\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\t")
	for _, v := range []variantStats{r.Plain, r.Consent} {
		l := v.LatencyUS
		fmt.Fprintf(tw, "%-7s\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			v.Name, v.Requests, v.Errors, v.RPS, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range []variantStats{r.Plain, r.Consent} {
		if v.Errors == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s errors: %d transport", v.Name, v.TransportErrors)
		codes := make([]string, 0, len(v.StatusCodes))
		for code := range v.StatusCodes {
			codes = append(codes, code)
		}
		sort.Strings(codes)
		for _, code := range codes {
			fmt.Fprintf(&b, ", %d x HTTP %s", v.StatusCodes[code], code)
		}
		if v.FirstError != "" {
			fmt.Fprintf(&b, " (first: %s)", v.FirstError)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	if p, c := r.Plain, r.Consent; p.ServerCPUus > 0 && c.ServerCPUus > 0 {
		fmt.Fprintf(&b, "CPU per request: Caddy %.1f µs plain, %.1f µs consent (%+.1f µs, consent/plain %.2f); cgbench (load generator and upstream) %.1f / %.1f µs\n",
			p.ServerCPUus, c.ServerCPUus, c.ServerCPUus-p.ServerCPUus, c.ServerCPUus/p.ServerCPUus, p.LoadgenCPUus, c.LoadgenCPUus)
	}
	c := r.Comparison
	if !c.Valid {
		fmt.Fprintf(&b, "throughput ratio consent/plain = n/a (target >= %.2f)  MISS\n", c.TargetThroughputRatio)
		fmt.Fprintf(&b, "added median latency = n/a (target <= %.0f µs)  MISS\n", c.TargetAddedP50us)
		fmt.Fprintf(&b, "added p99 latency = n/a (target <= %.0f µs)  MISS\n", c.TargetAddedP99us)
		b.WriteString("(a variant had no successful requests)\n")
	} else {
		fmt.Fprintf(&b, "throughput ratio consent/plain = %.3f (target >= %.2f)  %s\n",
			c.ThroughputRatio, c.TargetThroughputRatio, passMiss(c.ThroughputPass))
		fmt.Fprintf(&b, "added median latency = %.1f µs (target <= %.0f µs)  %s\n",
			c.AddedP50us, c.TargetAddedP50us, passMiss(c.P50Pass))
		fmt.Fprintf(&b, "added p99 latency = %.1f µs (target <= %.0f µs)  %s\n",
			c.AddedP99us, c.TargetAddedP99us, passMiss(c.P99Pass))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtSec(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}
