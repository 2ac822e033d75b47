package geo_test

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgate/consentgate/module/internal/geo"
	"github.com/consentgate/consentgate/module/internal/geo/geotest"
)

// networksA is the database most tests use.
var networksA = map[string]geotest.Entry{
	"81.2.69.0/24":    {Country: "GB", Region: "ENG"},
	"81.2.69.128/25":  {Country: "GB", Region: "SCT"}, // more specific than the /24
	"89.160.20.0/24":  {Country: "SE", Region: "E"},
	"216.160.83.0/24": {Country: "US", Region: "CA"},
	"2.125.160.0/20":  {Country: "FR"},               // no region
	"67.43.156.0/24":  {},                            // record without country
	"2a02:ff00::/32":  {Country: "DE", Region: "BE"}, // IPv6
	"2001:480::/32":   {Country: "US", Region: "NY"},
	"10.0.0.0/8":      {Country: "US", Region: "CA"}, // private: never answered
	"fd00::/8":        {Country: "US", Region: "CA"}, // unique local: never answered
}

// networksB maps the same networks of interest to other places.
var networksB = map[string]geotest.Entry{
	"81.2.69.0/24":   {Country: "IE", Region: "D"},
	"2a02:ff00::/32": {Country: "AT", Region: "9"},
}

// networksC is networksB with other codes of the same lengths, so that its
// file has the same size.
var networksC = map[string]geotest.Entry{
	"81.2.69.0/24":   {Country: "NL", Region: "X"},
	"2a02:ff00::/32": {Country: "PL", Region: "Y"},
}

var (
	answerA = geo.Location{Country: "GB", Region: "ENG"} // 81.2.69.1 in A
	answerB = geo.Location{Country: "IE", Region: "D"}   // 81.2.69.1 in B
)

func writeDB(t testing.TB, networks map[string]geotest.Entry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "GeoLite2-City.mmdb")
	geotest.Write(t, path, networks)
	return path
}

func open(t testing.TB, path string) *geo.Reader {
	t.Helper()
	r, err := geo.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// touch moves the modification time of path a second past its current one,
// so that ReloadIfChanged notices a rewrite even when the size is unchanged
// and the file system's timestamps are coarse.
func touch(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	setMtime(t, path, fi.ModTime().Add(time.Second))
}

func setMtime(t testing.TB, path string, mtime time.Time) {
	t.Helper()
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces the contents of path in place with a database of
// networks, and moves its modification time past both the previous one and
// the time of writing, so that ReloadIfChanged notices the change without
// sleeping, however coarse the file system's timestamps.
func rewrite(t testing.TB, path string, networks map[string]geotest.Entry) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	geotest.Write(t, path, networks)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mtime := after.ModTime()
	if before.ModTime().After(mtime) {
		mtime = before.ModTime()
	}
	setMtime(t, path, mtime.Add(time.Second))
}

func TestLookup(t *testing.T) {
	r := open(t, writeDB(t, networksA))
	tests := []struct {
		name string
		ip   netip.Addr
		want geo.Location
	}{
		{"IPv4", netip.MustParseAddr("81.2.69.1"), geo.Location{Country: "GB", Region: "ENG"}},
		{"IPv4 more specific network", netip.MustParseAddr("81.2.69.200"), geo.Location{Country: "GB", Region: "SCT"}},
		{"IPv4 other country", netip.MustParseAddr("89.160.20.112"), geo.Location{Country: "SE", Region: "E"}},
		{"IPv4 region", netip.MustParseAddr("216.160.83.56"), geo.Location{Country: "US", Region: "CA"}},
		{"IPv4 country without region", netip.MustParseAddr("2.125.160.216"), geo.Location{Country: "FR"}},
		{"IPv4 record without country", netip.MustParseAddr("67.43.156.1"), geo.Location{}},
		{"IPv6", netip.MustParseAddr("2a02:ff00::1"), geo.Location{Country: "DE", Region: "BE"}},
		{"IPv6 other network", netip.MustParseAddr("2001:480:10::1"), geo.Location{Country: "US", Region: "NY"}},
		{"IPv4-mapped IPv6", netip.MustParseAddr("::ffff:81.2.69.1"), geo.Location{Country: "GB", Region: "ENG"}},
		{"IPv6 with zone", netip.MustParseAddr("2a02:ff00::1%eth0"), geo.Location{Country: "DE", Region: "BE"}},
		{"IPv4 miss", netip.MustParseAddr("8.8.8.8"), geo.Location{}},
		{"IPv6 miss", netip.MustParseAddr("2606:4700::1111"), geo.Location{}},
		{"private IPv4 in database", netip.MustParseAddr("10.1.2.3"), geo.Location{}},
		{"private IPv4-mapped IPv6", netip.MustParseAddr("::ffff:10.1.2.3"), geo.Location{}},
		{"unique local IPv6 in database", netip.MustParseAddr("fd00::1"), geo.Location{}},
		{"loopback", netip.MustParseAddr("127.0.0.1"), geo.Location{}},
		{"IPv6 loopback", netip.MustParseAddr("::1"), geo.Location{}},
		{"link-local", netip.MustParseAddr("fe80::1%eth0"), geo.Location{}},
		{"multicast", netip.MustParseAddr("224.0.0.1"), geo.Location{}},
		{"unspecified", netip.IPv4Unspecified(), geo.Location{}},
		{"IPv6 unspecified", netip.IPv6Unspecified(), geo.Location{}},
		{"invalid", netip.Addr{}, geo.Location{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Lookup(tt.ip); got != tt.want {
				t.Errorf("Lookup(%v) = %+v, want %+v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestLookupNilReader(t *testing.T) {
	var r *geo.Reader
	if got := r.Lookup(netip.MustParseAddr("81.2.69.1")); got != (geo.Location{}) {
		t.Errorf("nil Reader: Lookup = %+v, want zero", got)
	}
	if changed, err := r.ReloadIfChanged(); changed || err != nil {
		t.Errorf("nil Reader: ReloadIfChanged = %v, %v; want false, nil", changed, err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("nil Reader: Close = %v", err)
	}
	r.Watch(context.Background(), time.Millisecond, nil) // returns at once
}

func TestLookupCountryDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "GeoLite2-Country.mmdb")
	// The region is stored, but a Country database is decoded with the
	// Country layout, which has no subdivisions: this checks that the
	// decision follows the database type.
	geotest.WriteType(t, path, geotest.TypeCountry, map[string]geotest.Entry{
		"81.2.69.0/24":   {Country: "GB", Region: "ENG"},
		"2a02:ff00::/32": {Country: "DE"},
	})
	r := open(t, path)
	tests := []struct {
		ip   string
		want geo.Location
	}{
		{"81.2.69.1", geo.Location{Country: "GB"}},
		{"::ffff:81.2.69.1", geo.Location{Country: "GB"}},
		{"2a02:ff00::1", geo.Location{Country: "DE"}},
		{"8.8.8.8", geo.Location{}},
	}
	for _, tt := range tests {
		if got := r.Lookup(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tt.ip, got, tt.want)
		}
	}
}

func TestLookupLowerCaseCodes(t *testing.T) {
	r := open(t, writeDB(t, map[string]geotest.Entry{
		"81.2.69.0/24": {Country: "gb", Region: "eng"},
	}))
	want := geo.Location{Country: "GB", Region: "ENG"}
	if got := r.Lookup(netip.MustParseAddr("81.2.69.1")); got != want {
		t.Errorf("Lookup = %+v, want %+v", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("this is not a MaxMind database"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	asn := filepath.Join(dir, "asn.mmdb")
	geotest.WriteType(t, asn, "GeoLite2-ASN", map[string]geotest.Entry{"81.2.69.0/24": {}})
	unknown := filepath.Join(dir, "unknown.mmdb")
	geotest.WriteType(t, unknown, "Acme-Geo", map[string]geotest.Entry{"81.2.69.0/24": {Country: "GB"}})

	tests := []struct {
		name    string
		path    string
		is      error  // if set, errors.Is must match
		message string // substring of the message besides the path
	}{
		{"missing", filepath.Join(dir, "missing.mmdb"), fs.ErrNotExist, "no such file"},
		{"garbage", garbage, nil, "invalid MaxMind DB file"},
		{"empty", empty, nil, "invalid MaxMind DB file"},
		{"directory", dir, nil, "not a regular file"},
		{"ASN database", asn, nil, `database type "GeoLite2-ASN" has no country data`},
		{"unknown database type", unknown, nil, `"Acme-Geo" database type`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := geo.Open(tt.path)
			if err == nil {
				r.Close()
				t.Fatalf("Open(%s) succeeded, want error", tt.path)
			}
			if r != nil {
				t.Errorf("Open(%s) returned a Reader with its error", tt.path)
			}
			msg := err.Error()
			if prefix := "opening geoip database " + tt.path + ": "; !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.message) {
				t.Errorf("error %q does not mention %q", msg, tt.message)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", msg, tt.is)
			}
		})
	}
}

func TestReloadIfChanged(t *testing.T) {
	path := writeDB(t, networksA)
	r := open(t, path)
	ipv4 := netip.MustParseAddr("81.2.69.1")
	ipv6 := netip.MustParseAddr("2a02:ff00::1")
	check := func(step string, want4, want6 geo.Location) {
		t.Helper()
		if got := r.Lookup(ipv4); got != want4 {
			t.Errorf("%s: Lookup(%v) = %+v, want %+v", step, ipv4, got, want4)
		}
		if got := r.Lookup(ipv6); got != want6 {
			t.Errorf("%s: Lookup(%v) = %+v, want %+v", step, ipv6, got, want6)
		}
	}
	reload := func(step string, wantChanged, wantErr bool) {
		t.Helper()
		changed, err := r.ReloadIfChanged()
		if changed != wantChanged || (err != nil) != wantErr {
			t.Fatalf("%s: ReloadIfChanged = %v, %v; want changed %v, error %v", step, changed, err, wantChanged, wantErr)
		}
	}
	locA6 := geo.Location{Country: "DE", Region: "BE"}
	locB6 := geo.Location{Country: "AT", Region: "9"}

	check("A", answerA, locA6)
	reload("unchanged", false, false)

	rewrite(t, path, networksB)
	reload("rewritten to B", true, false)
	check("B", answerB, locB6)
	reload("B again", false, false)

	// A rewrite with the same size is noticed through the modification time.
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, path, networksC)
	if after, err := os.Stat(path); err != nil || after.Size() != before.Size() {
		t.Fatalf("rewritten database size %v (err %v), want the same %d", after.Size(), err, before.Size())
	}
	reload("same size", true, false)
	check("C", geo.Location{Country: "NL", Region: "X"}, geo.Location{Country: "PL", Region: "Y"})

	// A file renamed into place is a different file.
	next := filepath.Join(filepath.Dir(path), "next.mmdb")
	geotest.Write(t, next, networksA)
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	reload("renamed A", true, false)
	check("renamed A", answerA, locA6)

	// A broken file is reported and the old database kept, and the broken
	// file is reported only once.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	touch(t, path)
	changed, err := r.ReloadIfChanged()
	if changed || err == nil {
		t.Fatalf("garbage: ReloadIfChanged = %v, %v; want false and an error", changed, err)
	}
	if want := "reloading geoip database " + path + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("garbage: error %q does not start with %q", err, want)
	}
	check("after garbage", answerA, locA6)
	reload("garbage again", false, false)
	check("after garbage again", answerA, locA6)

	// A missing file is reported every time and the old database kept.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"missing", "missing again"} {
		changed, err := r.ReloadIfChanged()
		if changed || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: ReloadIfChanged = %v, %v; want false and a not-exist error", step, changed, err)
		}
		check(step, answerA, locA6)
	}

	// A good file replacing the missing one is picked up.
	geotest.Write(t, path, networksB)
	reload("fixed", true, false)
	check("fixed", answerB, locB6)
}

func TestClose(t *testing.T) {
	path := writeDB(t, networksA)
	r, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("81.2.69.1")
	if got := r.Lookup(ip); got != answerA {
		t.Fatalf("Lookup = %+v, want %+v", got, answerA)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := r.Lookup(ip); got != (geo.Location{}) {
		t.Errorf("Lookup after Close = %+v, want zero", got)
	}
	rewrite(t, path, networksB)
	if changed, err := r.ReloadIfChanged(); changed || err == nil {
		t.Errorf("ReloadIfChanged after Close = %v, %v; want false and an error", changed, err)
	}
	if got := r.Lookup(ip); got != (geo.Location{}) {
		t.Errorf("Lookup after Close and reload = %+v, want zero", got)
	}
}

// watch runs r.Watch in a goroutine and returns a channel closed when it
// returns.
func watch(ctx context.Context, r *geo.Reader, every time.Duration, onErr func(error)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Watch(ctx, every, onErr)
	}()
	return done
}

func waitFor(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

func TestWatchStops(t *testing.T) {
	t.Run("cancelled context", func(t *testing.T) {
		r := open(t, writeDB(t, networksA))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		waitFor(t, watch(ctx, r, time.Hour, nil), "Watch returning on a cancelled context")
	})
	t.Run("cancel while watching", func(t *testing.T) {
		r := open(t, writeDB(t, networksA))
		ctx, cancel := context.WithCancel(context.Background())
		done := watch(ctx, r, time.Millisecond, func(err error) { t.Errorf("onErr(%v)", err) })
		cancel()
		waitFor(t, done, "Watch returning on cancel")
	})
	t.Run("Close", func(t *testing.T) {
		r := open(t, writeDB(t, networksA))
		done := watch(context.Background(), r, time.Millisecond, func(err error) { t.Errorf("onErr(%v)", err) })
		r.Close()
		waitFor(t, done, "Watch returning on Close")
	})
	t.Run("no interval", func(t *testing.T) {
		r := open(t, writeDB(t, networksA))
		ctx, cancel := context.WithCancel(context.Background())
		done := watch(ctx, r, 0, nil)
		cancel()
		waitFor(t, done, "Watch returning on cancel without polling")
	})
}

func TestWatchReportsErrors(t *testing.T) {
	path := writeDB(t, networksA)
	r := open(t, path)
	errs := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := watch(ctx, r, time.Millisecond, func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	defer func() {
		cancel()
		waitFor(t, done, "Watch returning")
	}()

	// Rename into place so that the watcher never sees a half-written file.
	next := filepath.Join(filepath.Dir(path), "next.mmdb")
	if err := os.WriteFile(next, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "reloading geoip database") {
			t.Errorf("onErr(%v), want a reload error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not report the broken database")
	}
	if got := r.Lookup(netip.MustParseAddr("81.2.69.1")); got != answerA {
		t.Errorf("Lookup after broken reload = %+v, want %+v", got, answerA)
	}
}

// TestConcurrentReload looks addresses up while another goroutine keeps
// swapping the database (run it with -race).
func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "GeoLite2-City.mmdb")
	geotest.Write(t, path, networksA)
	// Prebuild both files so that the loop below only renames.
	fileA, fileB := filepath.Join(dir, "a.mmdb"), filepath.Join(dir, "b.mmdb")
	geotest.Write(t, fileA, networksA)
	geotest.Write(t, fileB, networksB)
	contents := map[string][]byte{}
	for _, f := range []string{fileA, fileB} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents[f] = b
	}

	r, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("81.2.69.1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Zero once Close has run below.
				if got := r.Lookup(ip); got != answerA && got != answerB && got != (geo.Location{}) {
					t.Errorf("Lookup during reloads = %+v", got)
					return
				}
			}
		})
	}
	// A watcher competes with the explicit reloads below.
	ctx, cancel := context.WithCancel(context.Background())
	done := watch(ctx, r, time.Millisecond, func(err error) { t.Errorf("Watch: %v", err) })

	for i := range 50 {
		src := fileA
		if i%2 == 0 {
			src = fileB
		}
		tmp := filepath.Join(dir, "tmp.mmdb")
		if err := os.WriteFile(tmp, contents[src], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReloadIfChanged(); err != nil {
			t.Fatalf("ReloadIfChanged: %v", err)
		}
		want := answerA
		if src == fileB {
			want = answerB
		}
		if got := r.Lookup(ip); got != want {
			t.Fatalf("Lookup after reload %d = %+v, want %+v", i, got, want)
		}
	}
	r.Close() // while lookups are still running
	cancel()
	waitFor(t, done, "Watch returning")
	close(stop)
	wg.Wait()
}

func FuzzLookup(f *testing.F) {
	path := filepath.Join(f.TempDir(), "GeoLite2-City.mmdb")
	geotest.Write(f, path, networksA)
	r, err := geo.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	known := map[string]bool{"": true}
	for _, e := range networksA {
		known[e.Country] = true
	}

	for _, s := range []string{"81.2.69.1", "10.1.2.3", "0.0.0.0", "255.255.255.255", "8.8.8.8"} {
		b := netip.MustParseAddr(s).As4()
		f.Add(b[:], "")
	}
	for _, s := range []string{"2a02:ff00::1", "::ffff:81.2.69.1", "::", "fe80::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:], "")
		f.Add(b[:], "eth0")
	}
	f.Add([]byte{1, 2, 3}, "")

	f.Fuzz(func(t *testing.T, b []byte, zone string) {
		// Take the longest address that fits, so that every input counts.
		var ip netip.Addr
		switch {
		case len(b) >= 16:
			ip = netip.AddrFrom16([16]byte(b[:16])).WithZone(zone)
		case len(b) >= 4:
			ip = netip.AddrFrom4([4]byte(b[:4]))
		}
		got := r.Lookup(ip)
		if !known[got.Country] {
			t.Errorf("Lookup(%v) = %+v, a country not in the database", ip, got)
		}
		if got.Country == "" && got.Region != "" {
			t.Errorf("Lookup(%v) = %+v, a region without a country", ip, got)
		}
		if want := r.Lookup(ip.Unmap()); ip.Is4In6() && got != want {
			t.Errorf("Lookup(%v) = %+v, but Lookup of the unmapped address = %+v", ip, got, want)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	cityPath := writeDB(b, networksA)
	countryPath := filepath.Join(b.TempDir(), "GeoLite2-Country.mmdb")
	geotest.WriteType(b, countryPath, geotest.TypeCountry, map[string]geotest.Entry{
		"81.2.69.0/24": {Country: "GB"},
	})
	fullPath := filepath.Join(b.TempDir(), "GeoLite2-City-full.mmdb")
	geotest.Write(b, fullPath, map[string]geotest.Entry{"81.2.69.0/24": {Country: "GB", Region: "ENG", Full: true}})
	city, country, full := open(b, cityPath), open(b, countryPath), open(b, fullPath)
	benchmarks := []struct {
		name string
		r    *geo.Reader
		ip   string
		want geo.Location
	}{
		{"city/IPv4", city, "81.2.69.1", answerA},
		{"city/IPv6", city, "2a02:ff00::1", geo.Location{Country: "DE", Region: "BE"}},
		{"city/miss", city, "8.8.8.8", geo.Location{}},
		{"city/private", city, "10.1.2.3", geo.Location{}},
		{"country/IPv4", country, "81.2.69.1", geo.Location{Country: "GB"}},
		// A record as full as GeoLite2 City's: names, coordinates, postal code.
		{"city/full", full, "81.2.69.1", answerA},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			ip := netip.MustParseAddr(bm.ip)
			if got := bm.r.Lookup(ip); got != bm.want {
				b.Fatalf("Lookup(%v) = %+v, want %+v", ip, got, bm.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				bm.r.Lookup(ip)
			}
		})
	}
}
