// Package geo looks up the country (and region) of an IP address in a
// MaxMind-format database, such as GeoLite2 or GeoIP2 Country or City or a
// compatible DB-IP database, and reloads the database when its file changes.
//
// The package is pure logic with no Caddy dependency: the HTTP handler calls
// Lookup once per request, and a goroutine started by the module runs Watch.
package geo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// Location is the coarse location of an address. Country is the ISO 3166-1
// alpha-2 code of the country (upper case) and Region the ISO 3166-2
// subdivision code of the first (largest) subdivision, without the country
// prefix (e.g. "CA" for California), where the database has it. Unknown
// parts are "".
type Location struct{ Country, Region string }

// Reader answers look-ups from a MaxMind-format (GeoLite2/GeoIP2 Country or
// City, or compatible) database and reopens it when the file changes.
//
// A Reader is safe for concurrent use. Lookup never blocks: it reads the
// current database through an atomic pointer, which ReloadIfChanged swaps.
//
// Lifetime of replaced databases: the file is read into memory rather than
// memory-mapped, so a database generation is immutable once loaded and owns
// no operating-system resources. When ReloadIfChanged (or Close) swaps a
// generation out, nothing has to be closed: lookups that loaded the old
// pointer just before the swap finish on it, and the garbage collector frees
// it after the last of them returns. That makes reloads safe for in-flight
// lookups without reference counting on the per-request path or a guess at
// how long to delay closing. (Calling maxminddb.Reader.Close on a generation
// that lookups may still use would itself be a data race: it resets the
// reader's fields.) Reading the file also protects against it being rewritten
// in place (cp, or an editor truncating it): with a memory map, those bytes
// would change under running lookups and a truncation would crash the process
// with SIGBUS. The cost is that the database lives on the Go heap (pointer
// free, so the collector does not scan it), twice over during a reload.
type Reader struct {
	path string

	// db is the current database generation; nil after Close.
	db atomic.Pointer[database]

	// mu serializes reloads and Close; lookups never take it.
	mu     sync.Mutex
	seen   fs.FileInfo   // the file last read, loaded or rejected
	done   chan struct{} // closed by Close
	closed bool
}

// database is one loaded generation of the file.
type database struct {
	reader *maxminddb.Reader
	// city reports whether the database type has subdivisions, so that
	// Lookup reads the region of City records; Country records have none.
	city bool
}

// errClosed is returned by ReloadIfChanged after Close.
var errClosed = errors.New("geoip database is closed")

// Open reads the database at path into memory.
func Open(path string) (*Reader, error) {
	db, fi, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("opening geoip database %s: %w", path, err)
	}
	r := &Reader{path: path, seen: fi, done: make(chan struct{})}
	r.db.Store(db)
	return r, nil
}

// Lookup returns the location of ip. It returns the zero Location for an
// invalid, unspecified, loopback, link-local, multicast or private address,
// for an address the database does not know, on a nil or closed Reader, and
// when the record cannot be decoded; it never panics. IPv4-mapped IPv6
// addresses are looked up as IPv4.
func (r *Reader) Lookup(ip netip.Addr) Location {
	if r == nil {
		return Location{}
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return Location{}
	}
	db := r.db.Load()
	if db == nil {
		return Location{}
	}
	res := db.reader.Lookup(ip)
	if !res.Found() {
		return Location{}
	}
	rec := isoCodes{city: db.city}
	if err := res.Decode(&rec); err != nil {
		return Location{}
	}
	return Location{Country: strings.ToUpper(rec.country), Region: strings.ToUpper(rec.region)}
}

// isoCodes decodes only what Lookup returns from a GeoIP2/GeoLite2 City or
// Country record: the country's ISO code and, in City records, that of the
// first subdivision. Names in eight languages, coordinates, postal codes and
// time zones are skipped without being decoded: the gateway has no use for
// them, and decoding a whole City record took about 2 µs per look-up.
type isoCodes struct {
	city            bool // read the subdivisions
	country, region string
}

// maxISOCode bounds the ISO codes read; the longest real ones have 3 bytes.
const maxISOCode = 16

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (c *isoCodes) UnmarshalMaxMindDBCursor(cur mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	entries, err := cur.MapReader()
	if err != nil {
		return mmdbdata.Cursor{}, mmdbdata.NormalizeUnmarshalError[isoCodes](err)
	}
	next := entries.First()
	for range entries.Len() {
		key, value, err := next.ReadMapKey()
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
		switch string(key) {
		case "country":
			c.country, next, err = isoCode(value)
		case "subdivisions":
			if c.city {
				c.region, next, err = firstISOCode(value)
			} else {
				next, err = value.Skip()
			}
		default:
			next, err = value.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return entries.End(next)
}

// isoCode reads the iso_code of a country or subdivision map.
func isoCode(cur mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	entries, err := cur.MapReader()
	if err != nil {
		return "", mmdbdata.Cursor{}, mmdbdata.NormalizeUnmarshalError[map[string]any](err)
	}
	var code string
	next := entries.First()
	for range entries.Len() {
		key, value, err := next.ReadMapKey()
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
		if string(key) == "iso_code" {
			code, next, err = value.ReadStringMaxSize(maxISOCode)
		} else {
			next, err = value.Skip()
		}
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	next, err = entries.End(next)
	return code, next, err
}

// firstISOCode reads the iso_code of the first map of a list (the largest
// subdivision) and skips the others.
func firstISOCode(cur mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	list, err := cur.Slice()
	if err != nil {
		return "", mmdbdata.Cursor{}, mmdbdata.NormalizeUnmarshalError[[]any](err)
	}
	var code string
	var next mmdbdata.Cursor
	for {
		i, value, ok := list.Next(next)
		if !ok {
			break
		}
		if i == 0 {
			code, next, err = isoCode(value)
		} else {
			next, err = value.Skip()
		}
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	next, err = list.End()
	return code, next, err
}

// ReloadIfChanged reloads the database if its file has changed since it was
// last read: if it is a different file (e.g. renamed into place) or its
// modification time or size differ. It reports whether a new database is now
// being served. If the new file cannot be read or is not a usable database,
// ReloadIfChanged returns an error and the Reader keeps serving the previous
// database. A file rejected as unusable is not read again until it changes
// once more, so a watcher reports it once.
func (r *Reader) ReloadIfChanged() (bool, error) {
	if r == nil {
		return false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, errClosed
	}
	fi, err := os.Stat(r.path)
	if err != nil {
		return false, fmt.Errorf("checking geoip database: %w", err)
	}
	if sameFile(r.seen, fi) {
		return false, nil
	}
	db, fi, err := load(r.path)
	if err != nil {
		if fi != nil {
			r.seen = fi // the contents were read but rejected
		}
		return false, fmt.Errorf("reloading geoip database %s: %w", r.path, err)
	}
	r.seen = fi
	// The old generation is not closed: see the Reader documentation.
	r.db.Store(db)
	return true, nil
}

// Watch calls ReloadIfChanged every interval until ctx is done or the Reader
// is closed, passing errors to onErr (which may be nil). It blocks, so callers
// run it in a goroutine. A non-positive interval disables polling; Watch then
// just waits for ctx or Close.
func (r *Reader) Watch(ctx context.Context, every time.Duration, onErr func(error)) {
	if r == nil {
		return
	}
	var tick <-chan time.Time
	if every > 0 {
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-tick:
			_, err := r.ReloadIfChanged()
			if errors.Is(err, errClosed) {
				return
			}
			if err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// Close stops the Reader: later lookups return the zero Location and Watch
// returns. Lookups already running finish on the database they started with.
// Close is idempotent and safe to call on a nil Reader.
func (r *Reader) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	close(r.done)
	// Dropping the pointer is all that is needed to release the database;
	// see the Reader documentation.
	r.db.Store(nil)
	return nil
}

// load reads and parses the database file at path. It returns the file's
// information whenever the contents were read, even if they were rejected.
func load(path string) (*database, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, errors.New("not a regular file")
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + bytes.MinRead) // the file may still grow
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, err
	}
	// geoip2 is the authority on what the database is: it knows MaxMind's
	// and compatible (DB-IP, …) type names and which carry country data.
	// Look-ups then go through the same bytes with maxminddb directly,
	// decoding only the ISO codes (geoip2 decodes whole records: names in
	// every language, coordinates, postal codes).
	g, err := geoip2.OpenBytes(buf.Bytes())
	if err != nil {
		var unknown geoip2.UnknownDatabaseTypeError
		if errors.As(err, &unknown) {
			return nil, fi, fmt.Errorf("unsupported database type (want a GeoIP2 or GeoLite2 City or Country database, or a compatible one): %w", err)
		}
		return nil, fi, err
	}
	if _, err := g.Country(netip.IPv4Unspecified()); err != nil {
		var invalid geoip2.InvalidMethodError
		if errors.As(err, &invalid) {
			return nil, fi, fmt.Errorf("database type %q has no country data", g.Metadata().DatabaseType)
		}
	}
	reader, err := maxminddb.OpenBytes(buf.Bytes())
	if err != nil {
		return nil, fi, err
	}
	db := &database{reader: reader}
	// geoip2 allows City look-ups on Country databases; only the others
	// (City, Enterprise, DB-IP Location) carry subdivisions.
	db.city = !strings.Contains(g.Metadata().DatabaseType, "Country")
	return db, fi, nil
}

// sameFile reports whether b describes the same file, unchanged, as a.
func sameFile(a, b fs.FileInfo) bool {
	return a != nil && os.SameFile(a, b) &&
		a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// Interface guards
var _ mmdbdata.CursorUnmarshaler = (*isoCodes)(nil)
