package consentgate

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/store"
	"github.com/consentgate/consentgate/module/internal/token"
)

// visitorSets are the visitors whose tokens no longer count (erased) and
// whose processing is restricted. They belong to the store, not to one
// config, so a reload neither loses nor duplicates them; reads are
// lock-free (copy on write, writes are rare).
type visitorSets struct {
	mu         sync.Mutex
	revoked    atomic.Pointer[map[string]struct{}] // store.Subject of erased visitors
	restricted atomic.Pointer[map[string]struct{}] // site + "/" + consent ID
}

func newVisitorSets(s *store.Store) (*visitorSets, error) {
	v := new(visitorSets)
	revoked, restricted := map[string]struct{}{}, map[string]struct{}{}
	err := s.Scan("revoked/", func(k string, _ []byte) error {
		revoked[k[len("revoked/"):]] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading erased visitors: %w", err)
	}
	err = s.Restrictions(func(r store.Restriction) error {
		restricted[r.Site+"/"+r.ID] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading restrictions: %w", err)
	}
	v.revoked.Store(&revoked)
	v.restricted.Store(&restricted)
	return v, nil
}

func (v *visitorSets) update(p *atomic.Pointer[map[string]struct{}], key string, on bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	next := maps.Clone(*p.Load())
	if on {
		next[key] = struct{}{}
	} else {
		delete(next, key)
	}
	p.Store(&next)
}

// isRevoked reports whether the visitor's records were erased, so their
// token must count as no decision. It hashes only when someone was erased.
func (v *visitorSets) isRevoked(site, id string) bool {
	if v == nil {
		return false
	}
	m := *v.revoked.Load()
	if len(m) == 0 {
		return false
	}
	_, ok := m[store.Subject(site, id)]
	return ok
}

// revokedID is isRevoked for a token's ID, formatting it only when
// someone was erased.
func (v *visitorSets) revokedID(site string, id token.ID) bool {
	if v == nil || len(*v.revoked.Load()) == 0 {
		return false
	}
	return v.isRevoked(site, id.String())
}

// restrictedID is isRestricted for a decision's ID, formatting it only
// when some visitor is restricted.
func (v *visitorSets) restrictedID(site string, id token.ID) bool {
	if v == nil || len(*v.restricted.Load()) == 0 {
		return false
	}
	return v.isRestricted(site, id.String())
}

func (v *visitorSets) isRestricted(site, id string) bool {
	if v == nil {
		return false
	}
	m := *v.restricted.Load()
	if len(m) == 0 {
		return false
	}
	_, ok := m[site+"/"+id]
	return ok
}

// Via values of data-subject requests.
const (
	viaSelfService = "self-service"
	viaAdmin       = "admin"
)

// errNoRecords answers rights requests for a visitor with no records.
var errNoRecords = errors.New("no consent records for this visitor")

// completeRequest stores an answered request and counts it.
func (a *App) completeRequest(req store.Request, result string) (store.Request, error) {
	now := a.clock().UTC()
	if req.Received.IsZero() {
		req.Received = now
		req.Deadline = now.Add(store.RequestDeadline)
	}
	if req.ID == "" {
		req.ID = store.NewRequestID(now)
	}
	req.Status, req.Completed, req.Result = store.StatusCompleted, &now, result
	if req.Subject == "" {
		req.Subject = store.Subject(req.Site, req.ConsentID)
	}
	if err := a.store.PutRequest(req); err != nil {
		return req, fmt.Errorf("recording the %s request: %w", req.Type, err)
	}
	a.metrics.requests.WithLabelValues(req.Site, req.Type).Inc()
	a.logger.Info("data-subject request answered",
		zap.String("request", req.ID), zap.String("type", req.Type), zap.String("site", req.Site),
		zap.String("via", req.Via), zap.String("result", result))
	return req, nil
}

// visitorRecords returns a visitor's records and records the access.
func (a *App) visitorRecords(site, id, typ, via string) ([]store.Record, store.Request, error) {
	rs, err := a.store.Records(site, id)
	if err != nil {
		return nil, store.Request{}, err
	}
	if len(rs) == 0 {
		return nil, store.Request{}, errNoRecords
	}
	req, err := a.completeRequest(store.Request{Type: typ, Site: site, ConsentID: id, Via: via}, fmt.Sprintf("%d records", len(rs)))
	return rs, req, err
}

// eraseVisitor erases a visitor's records (tombstones keep the chain),
// revokes their token, lifts any restriction and records the request.
func (a *App) eraseVisitor(req store.Request) (store.Request, int, error) {
	now := a.clock().UTC()
	if req.ID == "" {
		req.ID = store.NewRequestID(now)
	}
	n, err := a.store.Erase(req.Site, req.ConsentID, req.ID, now)
	if err != nil {
		return req, 0, fmt.Errorf("erasing: %w", err)
	}
	if n == 0 {
		return req, 0, errNoRecords
	}
	subject := store.Subject(req.Site, req.ConsentID)
	if err := a.store.PutWithRetention("revoked/"+subject, []byte(now.Format(time.RFC3339))); err != nil {
		return req, n, fmt.Errorf("revoking the erased visitor's token: %w", err)
	}
	a.sets.update(&a.sets.revoked, subject, true)
	a.sets.update(&a.sets.restricted, req.Site+"/"+req.ConsentID, false)
	req.Type = store.RequestErasure
	req, err = a.completeRequest(req, fmt.Sprintf("%d records erased", n))
	return req, n, err
}

// restrictVisitor restricts (or lifts the restriction of) a visitor's
// processing and records the request.
func (a *App) restrictVisitor(req store.Request, on bool) (store.Request, error) {
	if _, err := a.store.Current(req.Site, req.ConsentID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return req, errNoRecords
		}
		return req, err
	}
	r := store.Restriction{Site: req.Site, ID: req.ConsentID, Time: a.clock().UTC(), Reason: req.Note}
	if err := a.store.Restrict(r, on); err != nil {
		return req, err
	}
	a.sets.update(&a.sets.restricted, req.Site+"/"+req.ConsentID, on)
	req.Type = store.RequestRestriction
	result := "processing restricted"
	if !on {
		result = "restriction lifted"
	}
	return a.completeRequest(req, result)
}

// correctVisitor appends a correction of a visitor's record.
func (a *App) correctVisitor(req store.Request, seq uint64) (store.Request, store.Record, error) {
	c, err := a.store.Correct(req.Site, req.ConsentID, seq, req.Fields, a.clock().UTC())
	if errors.Is(err, store.ErrNotFound) {
		return req, c, errNoRecords
	}
	if err != nil {
		return req, c, err
	}
	req.Type = store.RequestCorrection
	req, err = a.completeRequest(req, fmt.Sprintf("record %d corrected by record %d", c.Corrects, c.Seq))
	return req, c, err
}

// tally counts what the gateway held back, per site, day and kind, in
// memory; flush adds the counts to the store's aggregate counters. Keys are
// structs of strings the callers already hold, so counting allocates only
// for a new cell.
type tally struct {
	mu  sync.Mutex
	m   map[tallyKey]uint64
	day atomic.Pointer[tallyDay]
	// flushing is held through a whole flush, so one runs at a time.
	flushing sync.Mutex
}

// tallyKey is one counter: enforcement ("e") counts what by category,
// page views ("p") count by country (in what) alone.
type tallyKey struct{ kind, site, day, what, category string }

func (k tallyKey) counterKey() string {
	if k.kind == "p" {
		return store.CounterKey(k.kind, k.site, k.day, k.what)
	}
	return store.CounterKey(k.kind, k.site, k.day, k.what, k.category)
}

// tallyDay caches the formatted UTC day.
type tallyDay struct {
	n    int64 // days since the epoch
	name string
}

func (t *tally) dayOf(now time.Time) string {
	n := now.Unix() / 86400
	if d := t.day.Load(); d != nil && d.n == n {
		return d.name
	}
	d := &tallyDay{n: n, name: store.Day(now)}
	t.day.Store(d)
	return d.name
}

func (t *tally) add(k tallyKey, n uint64) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[tallyKey]uint64)
	}
	t.m[k] += n
	t.mu.Unlock()
}

// enforced counts n enforcement events (cookies removed, elements
// neutralised, analytics fields removed, beacons dropped) for proof of
// enforcement.
func (a *App) enforced(site, what, category string, n int) {
	if n <= 0 || a.tally == nil {
		return
	}
	a.tally.add(tallyKey{"e", site, a.tally.dayOf(a.clock()), what, category}, uint64(n))
}

// pageview counts a page view by site, day and country (privacy filter,
// count_pageviews on).
func (a *App) pageview(site, country string) {
	if a.tally == nil {
		return
	}
	a.tally.add(tallyKey{"p", site, a.tally.dayOf(a.clock()), country, ""}, 1)
}

// flushTally writes the counted events to the store. One flush runs at a
// time: a caller that flushes before reading the counters (the stats API)
// must not return while the periodic flush is still writing what it took
// from the tally. Counts the store refused go back to the tally for the
// next flush.
func (a *App) flushTally() error {
	if a.tally == nil {
		return nil
	}
	a.tally.flushing.Lock()
	defer a.tally.flushing.Unlock()
	a.tally.mu.Lock()
	m := a.tally.m
	a.tally.m = nil
	a.tally.mu.Unlock()
	var errs []error
	for k, n := range m {
		if err := a.store.Add(k.counterKey(), n); err != nil {
			errs = append(errs, err)
			a.tally.add(k, n)
		}
	}
	return errors.Join(errs...)
}

// checkRequests updates the pending and overdue request gauges and logs
// each overdue request.
func (a *App) checkRequests() (pending, overdue int, err error) {
	now := a.clock()
	err = a.store.Requests(func(r store.Request) error {
		if r.Status != store.StatusPending {
			return nil
		}
		pending++
		if r.Overdue(now) {
			overdue++
			a.logger.Warn("data-subject request overdue",
				zap.String("request", r.ID), zap.String("type", r.Type), zap.String("site", r.Site),
				zap.Time("deadline", r.Deadline))
		}
		return nil
	})
	a.metrics.pending.Set(float64(pending))
	a.metrics.overdue.Set(float64(overdue))
	return pending, overdue, err
}

// maintain flushes the tally and checks request deadlines until stopped.
func (a *App) maintain(stop <-chan struct{}) {
	flush := time.NewTicker(10 * time.Second)
	defer flush.Stop()
	check := time.NewTicker(time.Hour)
	defer check.Stop()
	if _, _, err := a.checkRequests(); err != nil {
		a.logger.Error("checking data-subject requests", zap.Error(err))
	}
	for {
		select {
		case <-stop:
			return
		case <-flush.C:
			if err := a.flushTally(); err != nil {
				a.logger.Error("storing enforcement counts", zap.Error(err))
			}
		case <-check.C:
			if _, _, err := a.checkRequests(); err != nil {
				a.logger.Error("checking data-subject requests", zap.Error(err))
			}
		}
	}
}
