// Package ua generalises User-Agent strings for privacy-preserving analytics:
// a User-Agent is reduced to browser family and major version, OS family and
// device class, using uap-go's regex definitions.
//
// Parsing a User-Agent with uap-go costs on the order of a millisecond of
// CPU, and any client can send a new User-Agent with every request, so the
// Generalizer bounds that cost: results are kept in an LRU cache keyed by the
// exact string, concurrent requests for the same uncached string share one
// parse, strings longer than Options.MaxLen are never parsed, and full
// parses are rate-limited by a process-wide token bucket
// (Options.MissBudget per second). Whatever is not fully parsed gets a coarse
// answer from a few substring checks; coarse answers are not cached.
package ua

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Info is a generalised user agent: browser family and major version, OS
// family and device class.
type Info struct {
	Family string // e.g. "Chrome", "Firefox", "Safari", "Other"
	Major  string // e.g. "120"; "" when unknown
	OS     string // e.g. "Windows", "Android", "iOS", "Mac OS X", "Linux", "Other"
	Device string // "desktop", "mobile", "tablet", "bot" or "other"
}

// String returns a compact generalised User-Agent for analytics, such as
// "Chrome/120 (Windows; desktop)", or "curl (Other; other)" when the major
// version is unknown.
func (i Info) String() string {
	family, os, device := i.Family, i.OS, i.Device
	if family == "" {
		family = other
	}
	if os == "" {
		os = other
	}
	if device == "" {
		device = devOther
	}
	if i.Major == "" {
		return family + " (" + os + "; " + device + ")"
	}
	return family + "/" + i.Major + " (" + os + "; " + device + ")"
}

// Options configures a Generalizer. The zero value gives the defaults.
//
// MissBudget is a token bucket holding up to one second's worth of parses,
// read from Now, shared by every goroutine using the Generalizer (keep one
// Generalizer per process to make it a process-wide bound). A parse costs one token, plus one more for every full 2 ms
// it took (measured with Now), because parse time depends on the input: a
// crafted 512-byte User-Agent can take ten times as long as a real one. So
// the default bounds uap-go to roughly 200 typical parses, or about 0.4 s of
// CPU, per second, whatever is sent. Calls that find the bucket empty get the
// coarse answer.
type Options struct {
	CacheSize  int              // entries in the LRU cache of parse results; default 10000; < 0 disables the cache
	MaxLen     int              // UAs longer than this are not parsed (coarse answer); default 512
	MissBudget int              // full parses allowed per second across the process; default 200; 0 = default; < 0 = unlimited; see above
	Now        func() time.Time // injected clock for the budget; default time.Now
}

// Defaults for Options.
const (
	defaultCacheSize  = 10000
	defaultMaxLen     = 512
	defaultMissBudget = 200
)

// maxMaxLen caps Options.MaxLen: uap-go's cost grows with the input length,
// and no real browser sends a User-Agent anywhere near this long.
const maxMaxLen = 8192

// Generalizer turns User-Agent strings into Info values. It is safe for
// concurrent use.
type Generalizer struct {
	maxLen int
	cache  *lru    // nil when disabled
	budget *bucket // nil when unlimited
	flight singleflight.Group
	parse  func(string) Info // the full parse; replaced in tests

	hits   atomic.Uint64
	misses atomic.Uint64
	coarse atomic.Uint64
}

// New returns a Generalizer using uap-go's embedded regex definitions. The
// definitions are compiled once per process and shared.
func New(o Options) (*Generalizer, error) {
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.MaxLen == 0 {
		o.MaxLen = defaultMaxLen
	}
	if o.MaxLen < 0 || o.MaxLen > maxMaxLen {
		return nil, fmt.Errorf("ua: MaxLen %d out of range 1..%d", o.MaxLen, maxMaxLen)
	}
	if o.MissBudget == 0 {
		o.MissBudget = defaultMissBudget
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e, err := sharedEngine()
	if err != nil {
		return nil, err
	}
	g := &Generalizer{maxLen: o.MaxLen, parse: e.parse}
	if o.CacheSize > 0 {
		g.cache = newLRU(o.CacheSize)
	}
	if o.MissBudget > 0 {
		g.budget = newBucket(o.MissBudget, o.Now)
	}
	return g, nil
}

// flightResult is what one singleflight call hands to everyone waiting on it.
type flightResult struct {
	info   Info
	coarse bool // over budget: not parsed, not cached
	cached bool // found in the cache after all: nothing was parsed
}

// Generalize returns the generalised form of ua. The result never contains ua
// itself: Family and OS are short tokens from uap-go's vocabulary (or
// "Other"), Major is a short run of digits or "".
func (g *Generalizer) Generalize(ua string) Info {
	if len(ua) > g.maxLen {
		g.coarse.Add(1)
		return coarse(ua)
	}
	if g.cache != nil {
		if info, ok := g.cache.get(ua); ok {
			g.hits.Add(1)
			return info
		}
	}
	return g.miss(ua)
}

// miss is the slow path, kept out of Generalize so the hit path stays small.
func (g *Generalizer) miss(ua string) Info {
	// Over budget: answer at once, without the cost of joining a flight.
	// (The token itself is taken inside the flight, so that concurrent
	// requests for the same string spend one token between them.)
	if g.budget != nil && !g.budget.available() {
		g.coarse.Add(1)
		return coarse(ua)
	}
	ran := false
	v, _, _ := g.flight.Do(ua, func() (res any, err error) {
		ran = true
		defer func() {
			// A panic inside singleflight would be re-raised in every
			// waiting goroutine; answer coarsely instead.
			if r := recover(); r != nil {
				res = flightResult{info: coarse(ua), coarse: true}
			}
		}()
		// A call for the same string may have finished and filled the
		// cache between our lookup and joining the flight.
		if g.cache != nil {
			if info, ok := g.cache.get(ua); ok {
				return flightResult{info: info, cached: true}, nil
			}
		}
		if g.budget != nil && !g.budget.take() {
			return flightResult{info: coarse(ua), coarse: true}, nil
		}
		var start time.Time
		if g.budget != nil {
			start = g.budget.now()
		}
		info := g.parse(ua)
		g.misses.Add(1)
		if g.budget != nil {
			g.budget.charge(g.budget.now().Sub(start))
		}
		if g.cache != nil {
			g.cache.add(ua, info)
		}
		return flightResult{info: info}, nil
	})
	r := v.(flightResult)
	switch {
	case r.coarse:
		g.coarse.Add(1)
	case r.cached || !ran:
		// Served by the cache or by another caller's parse.
		g.hits.Add(1)
	}
	return r.info
}

// Stats returns how many calls were answered from the cache (including
// callers that shared a concurrent parse of the same string), how many full
// uap-go parses ran, and how many calls got the coarse heuristic answer
// (too long, or over the miss budget).
func (g *Generalizer) Stats() (hits, misses, coarse uint64) {
	return g.hits.Load(), g.misses.Load(), g.coarse.Load()
}
