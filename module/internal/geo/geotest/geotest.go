// Package geotest builds small MaxMind-format databases for tests of package
// geo and of the code that uses it.
package geotest

import (
	"bytes"
	"cmp"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Database types for WriteType: the names MaxMind gives its free City and
// Country databases. WriteType records any other string as given.
const (
	TypeCity    = "GeoLite2-City"
	TypeCountry = "GeoLite2-Country"
)

// Entry is one network of a test database.
type Entry struct {
	// Country is the ISO 3166-1 alpha-2 code stored as country.iso_code
	// and registered_country.iso_code; "" stores neither.
	Country string
	// Region is the ISO 3166-2 subdivision code (without the country
	// prefix, e.g. "CA") stored as subdivisions[0].iso_code; "" stores no
	// subdivisions.
	Region string
	// Full fills the record the way GeoLite2 City does: names in eight
	// languages, geoname ids, a city, a postal code, coordinates and a
	// time zone, so that benchmarks decode what a real database holds.
	Full bool
}

// Write writes a MaxMind-format database at path with the given networks
// (CIDR string → Entry). The database type is "GeoLite2-City" so that region
// look-ups work, and the tree is an IPv6 tree with the IPv4 space mapped into
// it, so that IPv4 and IPv6 look-ups both work. Reserved networks such as
// 10.0.0.0/8 may be used. An existing file at path is overwritten in place.
// Write fails the test on error.
func Write(t testing.TB, path string, networks map[string]Entry) {
	t.Helper()
	WriteType(t, path, TypeCity, networks)
}

// WriteType is like Write but sets the database type recorded in the
// metadata, e.g. TypeCountry. The records are laid out the same whatever the
// type; leave Region empty for a realistic Country database.
func WriteType(t testing.TB, path, dbType string, networks map[string]Entry) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "consentgate test database"},
		Languages:               []string{"en"},
		IncludeReservedNetworks: true,
		IPVersion:               6,
		RecordSize:              24,
	})
	if err != nil {
		t.Fatalf("creating test database tree: %v", err)
	}
	// Insert broader networks first so that more specific ones carve their
	// records out of them, whatever the map's iteration order.
	type network struct {
		cidr string
		net  *net.IPNet
		bits int
	}
	nets := make([]network, 0, len(networks))
	for cidr := range networks {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatalf("parsing test network %q: %v", cidr, err)
		}
		bits, _ := n.Mask.Size()
		if n.IP.To4() != nil {
			bits += 96 // position in the IPv6 tree
		}
		nets = append(nets, network{cidr, n, bits})
	}
	slices.SortFunc(nets, func(a, b network) int {
		return cmp.Or(cmp.Compare(a.bits, b.bits), strings.Compare(a.cidr, b.cidr))
	})
	for _, n := range nets {
		if err := tree.Insert(n.net, record(networks[n.cidr])); err != nil {
			t.Fatalf("inserting test network %s: %v", n.cidr, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatalf("encoding test database: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("writing test database: %v", err)
	}
}

// record lays an Entry out the way GeoIP2/GeoLite2 City and Country databases
// do, so that the geo package (and geoip2-golang) decode it.
func record(e Entry) mmdbtype.Map {
	m := mmdbtype.Map{}
	if e.Country != "" {
		country := mmdbtype.Map{"iso_code": mmdbtype.String(e.Country)}
		m["country"] = country
		m["registered_country"] = country
		if c, ok := continents[e.Country]; ok {
			m["continent"] = mmdbtype.Map{"code": mmdbtype.String(c)}
		}
	}
	if e.Region != "" {
		m["subdivisions"] = mmdbtype.Slice{
			mmdbtype.Map{"iso_code": mmdbtype.String(e.Region)},
		}
	}
	if e.Full {
		fill(m, e)
	}
	return m
}

// fill adds what a GeoLite2 City record holds besides the ISO codes.
func fill(m mmdbtype.Map, e Entry) {
	names := func(base string) mmdbtype.Map {
		n := mmdbtype.Map{}
		for _, lang := range []string{"de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"} {
			n[mmdbtype.String(lang)] = mmdbtype.String(base + " (" + lang + ")")
		}
		return n
	}
	for _, key := range []mmdbtype.String{"country", "registered_country"} {
		if c, ok := m[key].(mmdbtype.Map); ok {
			c["geoname_id"] = mmdbtype.Uint32(2921044)
			c["is_in_european_union"] = mmdbtype.Bool(continents[e.Country] == "EU")
			c["names"] = names("Country " + e.Country)
		}
	}
	if c, ok := m["continent"].(mmdbtype.Map); ok {
		c["geoname_id"] = mmdbtype.Uint32(6255148)
		c["names"] = names("Continent")
	}
	if s, ok := m["subdivisions"].(mmdbtype.Slice); ok {
		for _, sub := range s {
			sub.(mmdbtype.Map)["geoname_id"] = mmdbtype.Uint32(2950157)
			sub.(mmdbtype.Map)["names"] = names("Region " + e.Region)
		}
	}
	m["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(2950159), "names": names("City")}
	m["postal"] = mmdbtype.Map{"code": mmdbtype.String("10115")}
	m["location"] = mmdbtype.Map{
		"accuracy_radius": mmdbtype.Uint16(20),
		"latitude":        mmdbtype.Float64(52.5196),
		"longitude":       mmdbtype.Float64(13.4069),
		"time_zone":       mmdbtype.String("Europe/Berlin"),
	}
}

// continents maps the countries tests commonly use to their continent codes;
// others get no continent record.
var continents = map[string]string{
	"AT": "EU", "BE": "EU", "CH": "EU", "DE": "EU", "DK": "EU", "ES": "EU",
	"FI": "EU", "FR": "EU", "GB": "EU", "IE": "EU", "IT": "EU", "NL": "EU",
	"NO": "EU", "PL": "EU", "PT": "EU", "SE": "EU",
	"CA": "NA", "MX": "NA", "US": "NA",
	"AR": "SA", "BR": "SA",
	"CN": "AS", "IN": "AS", "JP": "AS", "KR": "AS", "SG": "AS",
	"AU": "OC", "NZ": "OC",
	"EG": "AF", "NG": "AF", "ZA": "AF",
}
