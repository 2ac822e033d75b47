package anonymize

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SaltStore keeps daily salts; the consent store implements it.
type SaltStore interface {
	// GetOrCreate returns the value under key, storing val with the given
	// time to live when the key is absent.
	GetOrCreate(key string, val []byte, ttl time.Duration) ([]byte, error)
}

const (
	// saltSize is the length of a freshly created daily salt.
	saltSize = 32
	// minSaltSize is the shortest salt accepted back from the store.
	minSaltSize = 16
	// saltTTL keeps a salt long enough to cover its whole day in every time
	// zone and clock skew between instances, and no longer.
	saltTTL = 48 * time.Hour
	// saltKeyPrefix prefixes the store key of a day's salt.
	saltKeyPrefix = "salt/"
	secondsPerDay = 24 * 60 * 60
)

// Salts hands out the salt of the current UTC day. The salt is created on
// first use of the day (32 random bytes) under key "salt/YYYY-MM-DD" with a
// 48 h time to live, cached in memory for that day, and shared by everything
// using the same store, so that all instances of a cluster agree on it.
type Salts struct {
	store SaltStore
	now   func() time.Time

	cur atomic.Pointer[saltDay]
	mu  sync.Mutex // serialises store look-ups at day changes
}

// saltDay is the cached salt of one UTC day.
type saltDay struct {
	dayNum int64 // days since the Unix epoch
	day    time.Time
	salt   []byte
	macs   sync.Pool // of *macState keyed with salt
}

// NewSalts returns daily salts kept in store. now is the clock; nil means
// time.Now.
func NewSalts(store SaltStore, now func() time.Time) *Salts {
	if now == nil {
		now = time.Now
	}
	return &Salts{store: store, now: now}
}

// Today returns the salt of the current UTC day and the start of that day
// (midnight UTC). The returned slice is a copy the caller may keep.
func (s *Salts) Today() ([]byte, time.Time, error) {
	d, err := s.today()
	if err != nil {
		return nil, time.Time{}, err
	}
	return append([]byte(nil), d.salt...), d.day, nil
}

// today returns the cached salt of the current day, fetching or creating it
// in the store on the first call of a day.
func (s *Salts) today() (*saltDay, error) {
	if s == nil || s.store == nil {
		return nil, errors.New("no salt store configured")
	}
	dayNum := unixDay(s.now())
	if d := s.cur.Load(); d != nil && d.dayNum == dayNum {
		return d, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cur.Load(); d != nil && d.dayNum == dayNum {
		return d, nil
	}
	day := time.Unix(dayNum*secondsPerDay, 0).UTC()
	fresh := make([]byte, saltSize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("generating salt: %w", err)
	}
	got, err := s.store.GetOrCreate(saltKeyPrefix+day.Format(time.DateOnly), fresh, saltTTL)
	if err != nil {
		return nil, fmt.Errorf("loading salt for %s: %w", day.Format(time.DateOnly), err)
	}
	if len(got) < minSaltSize {
		return nil, fmt.Errorf("salt for %s is too short (%d bytes)", day.Format(time.DateOnly), len(got))
	}
	salt := append([]byte(nil), got...) // the store may reuse its buffer
	d := &saltDay{dayNum: dayNum, day: day, salt: salt}
	d.macs.New = func() any { return &macState{h: hmac.New(sha256.New, salt)} }
	s.cur.Store(d)
	return d, nil
}

// unixDay returns the number of whole UTC days between the Unix epoch and t,
// rounding towards minus infinity.
func unixDay(t time.Time) int64 {
	sec := t.Unix()
	day := sec / secondsPerDay
	if sec%secondsPerDay < 0 {
		day--
	}
	return day
}
