package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/consentgate/consentgate/module/internal/benchutil"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(site, id string, at time.Time, granted ...string) Record {
	return Record{Site: site, ID: id, Time: at, PolicyVersion: "1", Granted: granted, Method: "api", Regime: "opt-in", IP: "192.0.0.0"}
}

func TestAppendRecordsCurrent(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	t0 := time.Unix(1_700_000_000, 0).UTC()
	id := "0123456789abcdef0123456789abcdef"
	for i, g := range [][]string{{"necessary", "analytics"}, {"necessary"}, {"necessary", "marketing"}} {
		if err := s.Append(rec("shop", id, t0.Add(time.Duration(i)*time.Second), g...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(rec("blog", id, t0, "necessary")); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Records("shop", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || !slices.Equal(rs[0].Granted, []string{"necessary", "analytics"}) || !slices.Equal(rs[2].Granted, []string{"necessary", "marketing"}) {
		t.Fatalf("records = %+v", rs)
	}
	cur, err := s.Current("shop", id)
	if err != nil || !slices.Equal(cur.Granted, []string{"necessary", "marketing"}) {
		t.Fatalf("current = %+v, %v", cur, err)
	}
	if n, _ := s.CountRecords("shop"); n != 3 {
		t.Fatalf("count shop = %d", n)
	}
	if n, _ := s.CountRecords(""); n != 4 {
		t.Fatalf("count all = %d", n)
	}
	if _, err := s.Current("shop", "ffffffffffffffffffffffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing current: %v", err)
	}

	// Reopen: everything acknowledged is still there.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rec("shop", id, t0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if n, _ := s.CountRecords(""); n != 4 {
		t.Fatalf("after reopen count = %d", n)
	}
}

func TestAppendRejectsBadRecords(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	now := time.Now()
	for _, r := range []Record{
		rec("", "id", now), rec("shop", "", now), rec("a/b", "id", now), rec("shop", "x/y", now), rec("shop", "id", time.Time{}),
	} {
		if err := s.Append(r); err == nil {
			t.Errorf("accepted %+v", r)
		}
	}
	if n, _ := s.CountRecords(""); n != 0 {
		t.Fatalf("bad records stored: %d", n)
	}
}

func TestLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	_, err := Open(dir, Options{})
	if err == nil {
		t.Fatal("second open of a locked directory succeeded")
	}
	if want := "locked by another process"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}
}

func TestPutGetPutIfAbsent(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if _, err := s.Get("key/1"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.Put("key/1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	v, err := s.PutIfAbsent("key/1", []byte("b"))
	if err != nil || string(v) != "a" {
		t.Fatalf("PutIfAbsent existing = %q %v", v, err)
	}
	v, err = s.PutIfAbsent("key/2", []byte("c"))
	if err != nil || string(v) != "c" {
		t.Fatalf("PutIfAbsent new = %q %v", v, err)
	}
	var keys []string
	_ = s.Scan("key/", func(k string, _ []byte) error { keys = append(keys, k); return nil })
	if !slices.Equal(keys, []string{"key/1", "key/2"}) {
		t.Fatalf("scan = %v", keys)
	}
}

func TestConcurrentAppendsAreGrouped(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	const n = 400
	var wg sync.WaitGroup
	now := time.Now()
	for i := range n {
		wg.Go(func() {
			if err := s.Append(rec("shop", fmt.Sprintf("%032x", i), now)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c, _ := s.CountRecords("shop"); c != n {
		t.Fatalf("count = %d, want %d", c, n)
	}
	// Every append waits for a commit, and concurrent ones share commits.
	if s.Commits() >= n {
		t.Fatalf("%d commits for %d concurrent appends: no grouping", s.Commits(), n)
	}
}

// BenchmarkDurableDecisions appends decisions from 64 concurrent clients
// and reports durable decisions per second and the p99 append latency.
func BenchmarkDurableDecisions(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	id := atomic.Uint64{}
	benchutil.Clients(b, 64, "decisions", func(int) error {
		return s.Append(rec("shop", fmt.Sprintf("%032x", id.Add(1)), time.Now(), "necessary", "analytics"))
	})
	b.ReportMetric(float64(b.N)/float64(s.Commits()), "records/commit")
}

func TestGetOrCreateExpires(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	v, err := s.GetOrCreate("salt/2026-11-25", []byte("a"), time.Hour)
	if err != nil || string(v) != "a" {
		t.Fatalf("first: %q %v", v, err)
	}
	v, err = s.GetOrCreate("salt/2026-11-25", []byte("b"), time.Hour)
	if err != nil || string(v) != "a" {
		t.Fatalf("second: %q %v", v, err)
	}
	var expires uint64
	_ = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("salt/2026-11-25"))
		if err == nil {
			expires = item.ExpiresAt()
		}
		return err
	})
	if d := time.Until(time.Unix(int64(expires), 0)); d <= 0 || d > time.Hour {
		t.Fatalf("salt expires in %v, want within the hour", d)
	}
}

func TestGetOrCreateAgreesUnderConcurrency(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	var wg sync.WaitGroup
	got := make([]string, 32)
	for i := range got {
		wg.Go(func() {
			v, err := s.GetOrCreate("salt/today", []byte(fmt.Sprint(i)), time.Hour)
			if err != nil {
				t.Error(err)
			}
			got[i] = string(v)
		})
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] {
			t.Fatalf("creators disagree: %v", got)
		}
	}
}
