package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/consentgate/consentgate/module/internal/benchutil"
)

var t0 = time.Unix(1_700_000_000, 0).UTC()

func visitor(n int) string { return fmt.Sprintf("%032x", 0xabc000+n) }

// fill appends n records to site, cycling through three visitors.
func fill(t testing.TB, s *Store, site string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		r := rec(site, visitor(i%3), t0.Add(time.Duration(i)*time.Minute), "necessary", "analytics")
		r.Denied = []string{"marketing"}
		r.Country = "DE"
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

// rawSet writes a key directly, as someone editing the files would.
func rawSet(t *testing.T, s *Store, key, val []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var out []byte
	if err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func rawDelete(t *testing.T, s *Store, key []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		t.Fatal(err)
	}
}

func TestChainVerifyDetectsTampering(t *testing.T) {
	tamper := []struct {
		name string
		do   func(t *testing.T, s *Store)
		seq  uint64
		kind string
	}{
		{"record edited", func(t *testing.T, s *Store) {
			v := rawGet(t, s, logKey("shop", 4))
			rawSet(t, s, logKey("shop", 4), bytes.Replace(v, []byte(`analytics`), []byte(`marketing`), 1))
		}, 4, "altered"},
		{"record and digest edited", func(t *testing.T, s *Store) {
			e, _ := readEntry(rawGet(t, s, logKey("shop", 4)))
			r, _ := e.DecodeRecord()
			r.Seq, r.Hash, r.Country = 0, "", "FR"
			e.Record, _ = json.Marshal(r)
			e.Digest = fmt.Sprintf("%x", sha256Sum(e.Record))
			v, _ := json.Marshal(e)
			rawSet(t, s, logKey("shop", 4), v)
		}, 4, "altered"},
		{"record removed", func(t *testing.T, s *Store) { rawDelete(t, s, logKey("shop", 6)) }, 6, "removed"},
		{"records swapped", func(t *testing.T, s *Store) {
			a, b := rawGet(t, s, logKey("shop", 3)), rawGet(t, s, logKey("shop", 5))
			rawSet(t, s, logKey("shop", 3), b)
			rawSet(t, s, logKey("shop", 5), a)
		}, 3, "reordered"},
		{"renumbered to hide a removal", func(t *testing.T, s *Store) {
			// Remove 5 and move 6 into its place, fixing the seq field.
			e, _ := readEntry(rawGet(t, s, logKey("shop", 6)))
			e.Seq = 5
			v, _ := json.Marshal(e)
			rawSet(t, s, logKey("shop", 5), v)
			rawDelete(t, s, logKey("shop", 6))
		}, 5, "reordered"},
		{"last record removed", func(t *testing.T, s *Store) { rawDelete(t, s, logKey("shop", 10)) }, 10, "truncated"},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			defer s.Close()
			fill(t, s, "shop", 10)
			fill(t, s, "blog", 2)
			v, err := s.Verify("shop")
			if err != nil || !v.OK || v.Entries != 10 || v.FirstSeq != 1 || v.LastSeq != 10 {
				t.Fatalf("before tampering: %+v, %v", v, err)
			}
			tc.do(t, s)
			v, err = s.Verify("shop")
			if err != nil {
				t.Fatal(err)
			}
			if v.OK || v.Problem == nil || v.Problem.Seq != tc.seq || v.Problem.Kind != tc.kind {
				t.Fatalf("after tampering: %+v problem %+v; want %s at %d", v, v.Problem, tc.kind, tc.seq)
			}
			// Another site's chain is untouched.
			if v, _ := s.Verify("blog"); !v.OK {
				t.Fatalf("blog: %+v", v.Problem)
			}
		})
	}
}

// storeFiles returns the bytes of every file in dir.
func storeFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestEraseLeavesTombstonesAndNothingPersonal(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	erased, kept := visitor(1), visitor(2)
	for i := 0; i < 5; i++ {
		for _, id := range []string{erased, kept} {
			r := rec("shop", id, t0.Add(time.Duration(i)*time.Second), "necessary")
			r.IP = "198.51.0.0"
			if id == kept {
				r.IP = "203.0.0.0"
			}
			if err := s.Append(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Restrict(Restriction{Site: "shop", ID: erased, Time: t0}, true); err != nil {
		t.Fatal(err)
	}
	n, err := s.Erase("shop", erased, NewRequestID(t0), t0.Add(time.Hour))
	if err != nil || n != 5 {
		t.Fatalf("erase = %d, %v", n, err)
	}
	if rs, _ := s.Records("shop", erased); len(rs) != 0 {
		t.Fatalf("records after erasure: %+v", rs)
	}
	if _, err := s.Current("shop", erased); !errors.Is(err, ErrNotFound) {
		t.Fatalf("current after erasure: %v", err)
	}
	if rs, _ := s.Records("shop", kept); len(rs) != 5 {
		t.Fatalf("the other visitor lost records: %d", len(rs))
	}
	v, err := s.Verify("shop")
	if err != nil || !v.OK || v.Tombstones != 5 || v.Entries != 10 {
		t.Fatalf("verify after erasure: %+v %+v %v", v, v.Problem, err)
	}
	// Nothing of the erased visitor is left in any file, even while open.
	files := storeFiles(t, dir)
	for _, secret := range []string{erased, "198.51.0.0"} {
		if bytes.Contains(files, []byte(secret)) {
			t.Fatalf("%s still in the store files after erasure", secret)
		}
	}
	if !bytes.Contains(files, []byte("203.0.0.0")) {
		t.Fatal("the scan cannot see plain records: the test proves nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(storeFiles(t, dir), []byte(erased)) {
		t.Fatal("erased id in the store files after close")
	}
}

func TestInterruptedErasureFinishesOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	fill(t, s, "shop", 6)
	id := visitor(0)
	receipt := NewRequestID(t0)
	// Write the intent the way Erase does, then "crash" before the rest.
	in := erasure{Site: "shop", ID: id, Receipt: receipt}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, seq := range s.visitorSeqs(txn, "shop", id, false) {
			in.Seqs = append(in.Seqs, seq)
			e, err := s.entry(txn, "shop", seq)
			if err != nil {
				return err
			}
			e.Record, e.Erased = nil, &Erasure{Time: t0, Receipt: receipt}
			in.Tombstones = append(in.Tombstones, tombstone{Entry: e})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	val, _ := json.Marshal(in)
	if err := s.Put("erasing/"+receipt, val); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir)
	defer s.Close()
	if rs, _ := s.Records("shop", id); len(rs) != 0 {
		t.Fatalf("erasure not finished: %d records", len(rs))
	}
	if v, _ := s.Verify("shop"); !v.OK || v.Tombstones != 2 {
		t.Fatalf("verify: %+v %+v", v, v.Problem)
	}
	if _, err := s.Get("erasing/" + receipt); !errors.Is(err, ErrNotFound) {
		t.Fatalf("intent left behind: %v", err)
	}
}

func TestCorrectionAppliesToCurrent(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	id := visitor(7)
	r := rec("shop", id, t0, "necessary", "analytics")
	r.Country = "DE"
	if err := s.Append(r); err != nil {
		t.Fatal(err)
	}
	c, err := s.Correct("shop", id, 0, map[string]string{"country": "AT"}, t0.Add(time.Hour))
	if err != nil || c.Corrects != 1 {
		t.Fatalf("correct = %+v, %v", c, err)
	}
	cur, err := s.Current("shop", id)
	if err != nil || cur.Country != "AT" || cur.Method != "api" {
		t.Fatalf("current = %+v, %v", cur, err)
	}
	if rs, _ := s.Records("shop", id); len(rs) != 2 || rs[0].Country != "DE" {
		t.Fatalf("the original record must stay as it was: %+v", rs)
	}
	if _, err := s.Correct("shop", id, 0, map[string]string{"granted": "marketing"}, t0); err == nil {
		t.Fatal("a choice must not be correctable")
	}
	if v, _ := s.Verify("shop"); !v.OK {
		t.Fatalf("verify: %+v", v.Problem)
	}
}

func TestEncryptedStoreHasNoPlainText(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	s, err := Open(dir, Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	id := visitor(3)
	r := rec("shop", id, t0, "necessary", "analytics")
	r.IP = "198.51.0.0"
	if err := s.Append(r); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := s.Backup(&backup, key); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"store": storeFiles(t, dir), "backup": backup.Bytes()} {
		for _, plain := range []string{id, "198.51.0.0", `"analytics"`, "policy_version"} {
			if bytes.Contains(b, []byte(plain)) {
				t.Fatalf("%q in plain text in the %s", plain, name)
			}
		}
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("opened an encrypted store without its key")
	}
	if _, err := Open(dir, Options{EncryptionKey: bytes.Repeat([]byte{8}, 32)}); err == nil || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("wrong key: %v", err)
	}

	// Rotation: the new key opens it, the old one no longer does.
	newKey := bytes.Repeat([]byte{9}, 32)
	if err := RotateEncryptionKey(dir, key, newKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{EncryptionKey: key}); err == nil {
		t.Fatal("the old key still opens the store")
	}
	s, err = Open(dir, Options{EncryptionKey: newKey})
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := s.Current("shop", id); err != nil || cur.IP != "198.51.0.0" {
		t.Fatalf("after rotation: %+v, %v", cur, err)
	}
	s.Close()

	// The backup restores into a new encrypted store, chain intact.
	dir2 := t.TempDir()
	s2, err := Open(dir2, Options{EncryptionKey: newKey})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Restore(bytes.NewReader(backup.Bytes()), nil); err == nil {
		t.Fatal("restored an encrypted backup without a key")
	}
	if err := s2.Restore(bytes.NewReader(backup.Bytes()), key); err != nil {
		t.Fatal(err)
	}
	if cur, err := s2.Current("shop", id); err != nil || cur.IP != "198.51.0.0" {
		t.Fatalf("restored: %+v, %v", cur, err)
	}
	if v, _ := s2.Verify("shop"); !v.OK || v.Entries != 1 {
		t.Fatalf("restored chain: %+v", v)
	}
	// Appends continue the restored chain.
	if err := s2.Append(rec("shop", id, t0.Add(time.Hour), "necessary")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s2.Verify("shop"); !v.OK || v.Entries != 2 {
		t.Fatalf("chain after restore and append: %+v %+v", v, v.Problem)
	}
}

func TestStatsCountDecisionsAndRequests(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	fill(t, s, "shop", 6)
	req := Request{ID: NewRequestID(t0), Type: RequestErasure, Site: "shop", Subject: Subject("shop", visitor(1)),
		ConsentID: visitor(1), Via: "admin", Status: StatusPending, Received: t0, Deadline: t0.Add(RequestDeadline)}
	if err := s.PutRequest(req); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRequest(req.ID)
	if err != nil || got.ConsentID != visitor(1) {
		t.Fatalf("pending request = %+v, %v", got, err)
	}
	if !got.Overdue(t0.Add(31*24*time.Hour)) || got.Overdue(t0.Add(time.Hour)) {
		t.Fatal("overdue is wrong")
	}
	done := t0.Add(time.Hour)
	got.Status, got.Completed = StatusCompleted, &done
	if err := s.PutRequest(got); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetRequest(req.ID); got.ConsentID != "" || got.Status != StatusCompleted {
		t.Fatalf("completed request keeps the consent id: %+v", got)
	}
	cells, err := s.Stats("shop", "", "")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, c := range cells {
		counts[c.Kind+":"+strings.Join(c.Dims, ",")] += c.Count
	}
	want := map[string]uint64{
		"decisions:opt-in,DE,analytics,granted": 6,
		"decisions:opt-in,DE,marketing,denied":  6,
		"methods:api":                           6,
		"requests:erasure":                      1,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s = %d, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	if err := s.Add(CounterKey("e", "shop", Day(t0), "script", "marketing"), 3); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Counter(CounterKey("e", "shop", Day(t0), "script", "marketing")); n != 3 {
		t.Fatalf("enforcement counter = %d", n)
	}
}

func TestPurgeDisposesOfOldRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	old := rec("shop", visitor(1), now.Add(-48*time.Hour), "necessary")
	old.IP = "198.51.0.0"
	if err := s.Append(old); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rec("shop", visitor(2), now, "necessary")); err != nil {
		t.Fatal(err)
	}
	res, err := s.Purge(now)
	if err != nil || res.Deleted != 1 || !res.Compacted {
		t.Fatalf("purge = %+v, %v", res, err)
	}
	if n, _ := s.CountRecords("shop"); n != 1 {
		t.Fatalf("records after purge = %d", n)
	}
	v, err := s.Verify("shop")
	if err != nil || !v.OK || v.FirstSeq != 2 {
		t.Fatalf("chain after purge: %+v %+v %v", v, v.Problem, err)
	}
	u, err := s.Usage(now)
	if err != nil || u.Records != 1 || u.NextDisposal == nil || u.Retention != "24h0m0s" {
		t.Fatalf("usage = %+v, %v", u, err)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// BenchmarkDurableDecisionsEncrypted is BenchmarkDurableDecisions with
// encryption at rest on: hash chain, counters and AES together.
func BenchmarkDurableDecisionsEncrypted(b *testing.B) {
	s, err := Open(b.TempDir(), Options{EncryptionKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	id := atomic.Uint64{}
	benchutil.Clients(b, 64, "decisions", func(int) error {
		r := rec("shop", fmt.Sprintf("%032x", id.Add(1)), time.Now(), "necessary", "analytics")
		r.Denied, r.Country = []string{"marketing"}, "DE"
		return s.Append(r)
	})
	b.ReportMetric(float64(b.N)/float64(s.Commits()), "records/commit")
}

// BenchmarkExport streams a store of CONSENTGATE_EXPORT_RECORDS records
// (default 200000; the target is 1 million in under 30 s with flat
// memory) to a discarding writer as JSON Lines. It reports records/s and
// the live heap (after a GC) before the walk and, at most, during it.
func BenchmarkExport(b *testing.B) {
	n := 200_000
	if v := os.Getenv("CONSENTGATE_EXPORT_RECORDS"); v != "" {
		fmt.Sscan(v, &n)
	}
	s := openTest(b, b.TempDir())
	defer s.Close()
	// Fill through the group commit, many writers at once.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				r := rec("shop", fmt.Sprintf("%032x", i), t0.Add(time.Duration(i)*time.Second), "necessary", "analytics")
				if err := s.Append(r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	live := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	before := live()
	var peak float64
	b.ResetTimer()
	for b.Loop() {
		count := 0
		w := bufio.NewWriter(io.Discard)
		err := s.Export("shop", time.Time{}, time.Time{}, func(site string, e Entry) error {
			line, err := json.Marshal(struct {
				Site string `json:"site"`
				Entry
			}{site, e})
			if err != nil {
				return err
			}
			w.Write(append(line, '\n'))
			count++
			if count%(n/5) == 0 {
				b.StopTimer()
				peak = max(peak, live())
				b.StartTimer()
			}
			return nil
		})
		if err != nil || count != n {
			b.Fatalf("exported %d of %d: %v", count, n, err)
		}
		w.Flush()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(before, "live-heap-before-MB")
	b.ReportMetric(peak, "live-heap-peak-MB")
}
