package ua

import (
	"sync"
	"time"
)

// parseCostUnit is the parse time one token pays for. Typical User-Agents
// parse in 0.2–1.5 ms; crafted ones of MaxLen bytes (runs of ";", "(a; b)",
// random text) take 5–15 ms, so a parse is charged one further token for
// every full unit it took. That keeps MissBudget a bound on CPU time rather
// than on a count of parses whose cost the attacker chooses.
const parseCostUnit = 2 * time.Millisecond

// bucket is a token bucket refilled at rate tokens per second up to a burst
// of rate tokens, read from an injected clock. It is consulted only on cache
// misses, so a mutex is cheap enough.
type bucket struct {
	mu     sync.Mutex
	now    func() time.Time
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(perSecond int, now func() time.Time) *bucket {
	return &bucket{now: now, rate: float64(perSecond), tokens: float64(perSecond), last: now()}
}

// take reports whether a token was available, consuming it if so.
func (b *bucket) take() bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// available reports whether take would succeed now, without consuming.
func (b *bucket) available() bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.tokens >= 1
}

// charge takes the extra tokens owed for a parse that took d. The balance may
// go negative (debt), down to one second's worth of tokens.
func (b *bucket) charge(d time.Duration) {
	extra := float64(d / parseCostUnit)
	if extra <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = max(b.tokens-extra, -b.rate)
}

func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * b.rate
		if b.tokens > b.rate {
			b.tokens = b.rate
		}
		b.last = now
	} else if d < 0 {
		// The clock went backwards: restart the refill from here rather
		// than crediting the same interval twice later.
		b.last = now
	}
}
