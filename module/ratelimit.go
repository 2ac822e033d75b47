package consentgate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Defaults of the per-client limit on consent decisions.
const (
	DefaultRateBurst    = 120
	DefaultRateInterval = 100 * time.Millisecond
	maxRateClients      = 100_000
)

// decisionLimiter is a token bucket per client for state-changing consent
// API calls: each decision is a synced write kept for years, so one client
// must not be able to flood the store. Clients are keyed by an HMAC of
// their IP under a per-process random key: no raw IP is held.
type decisionLimiter struct {
	burst    float64
	interval time.Duration
	key      [32]byte

	mu      sync.Mutex
	buckets map[[16]byte]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newDecisionLimiter(burst int, interval time.Duration) *decisionLimiter {
	l := &decisionLimiter{burst: float64(burst), interval: interval, buckets: make(map[[16]byte]*bucket)}
	_, _ = rand.Read(l.key[:])
	return l
}

// allow takes a token for the client, reporting false when it has none
// and how long until the next one.
func (l *decisionLimiter) allow(clientIP string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	m := hmac.New(sha256.New, l.key[:])
	m.Write([]byte(clientIP))
	var id [16]byte
	copy(id[:], m.Sum(nil))

	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[id]
	if !ok {
		if len(l.buckets) >= maxRateClients {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.interval))
		b.last = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(l.interval))
	}
	b.tokens--
	return true, 0
}

// sweep forgets clients whose bucket has refilled (idle clients), and if
// that is not enough, every client (the limit resets rather than grows).
func (l *decisionLimiter) sweep(now time.Time) {
	for id, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(l.interval) >= l.burst {
			delete(l.buckets, id)
		}
	}
	if len(l.buckets) >= maxRateClients {
		clear(l.buckets)
	}
}
