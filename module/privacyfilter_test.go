package consentgate

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/consentgate/consentgate/module/internal/geo"
	"github.com/consentgate/consentgate/module/internal/geo/geotest"
)

// collector is a real analytics upstream that records what it receives.
type collector struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
}

type hit struct {
	method, uri, remote string
	header              http.Header
	body                string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.hits = append(c.hits, hit{r.Method, r.RequestURI, r.RemoteAddr, r.Header.Clone(), string(b)})
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) last(t *testing.T) hit {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hits) == 0 {
		t.Fatal("the collector received nothing")
	}
	return c.hits[len(c.hits)-1]
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hits)
}

// everything renders a hit for leak checks.
func (h hit) everything() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", h.method, h.uri)
	for k, vs := range h.header {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ", "))
	}
	b.WriteString(h.body)
	return b.String()
}

const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36"

func startAnalytics(t *testing.T, filter string) (*gateway, *collector) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, db, map[string]geotest.Entry{"203.0.113.0/24": {Country: "DE", Region: "BE"}, "2001:db8::/32": {Country: "KZ"}})
	col := newCollector(t)
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent
	handle /collect/* {
		uri strip_prefix /collect
		`+filter+`
		reverse_proxy {{UPSTREAM}}
	}
	respond "site"
}
`, map[string]string{"UPSTREAM": col.Listener.Addr().String(), "GLOBAL": "geoip " + db})
	return g, col
}

func TestPrivacyFilterGA4(t *testing.T) {
	g, col := startAnalytics(t, "privacy_filter ga4")
	dl := url.QueryEscape("https://shop.example/search?q=red+shoes&gclid=CLICK123&email=jane%40example.com&page=2")
	query := "v=2&tid=G-TEST&cid=1234567890.1700000000&uid=jane%40example.com&_uip=203.0.113.77&ul=de-de&dl=" + dl +
		"&dr=" + url.QueryEscape("https://www.google.com/search?q=jane+doe") + "&dt=" + url.QueryEscape("Order for jane@example.com") +
		"&en=page_view&ep.note=" + url.QueryEscape("call +49 30 1234 5678") + "&up.email=jane%40example.com&uafvl=Chromium%3B124"
	for _, visitor := range []struct {
		name    string
		consent string
	}{{"no consent", ""}, {"analytics consent", `{"granted":["analytics"]}`}} {
		t.Run(visitor.name, func(t *testing.T) {
			c := newClient(t)
			if visitor.consent != "" {
				c.postJSON(g.url("/_consent/state"), visitor.consent)
			}
			r := c.do(http.MethodPost, g.url("/collect/g/collect?"+query), "text/plain", "en=scroll&cid=1234567890.1700000000&_uip=2001:db8:1:2::77\nen=click&ep.link="+url.QueryEscape("mailto:jane@example.com"),
				"User-Agent", chromeUA, "X-Forwarded-For", "203.0.113.77", "X-Real-IP", "203.0.113.77", "Forwarded", "for=203.0.113.77",
				"CF-Connecting-IP", "203.0.113.77", "Cookie", "_ga=GA1.1.1234567890.1700000000; session=abc",
				"Referer", "https://shop.example/private/page?token=secret", "Accept-Language", "de-DE,de;q=0.9,en;q=0.8",
				"Sec-CH-UA-Full-Version-List", `"Chromium";v="124.0.6367.91"`,
				"Sec-CH-UA", `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`,
				"Sec-CH-UA-Platform", `"Windows"`, "Sec-CH-UA-Mobile", "?0", "Sec-CH-UA-Model", `"Pixel 8"`)
			if r.status != http.StatusNoContent {
				t.Fatalf("beacon: %d %s", r.status, r.body)
			}
			h := col.last(t)
			all := h.everything()
			// The full browser version is looked for with a dot beside
			// it: a pseudonym's hex may hold "6367" by chance.
			for _, leak := range []string{"203.0.113.77", "2001:db8:1:2::77", "1234567890.1700000000", "jane", "example.com/search?q", "red+shoes", "CLICK123", chromeUA, "0.6367", "6367.91", "session=abc", "secret", "1234 5678", "_ga=", "up.email", "uafvl"} {
				if strings.Contains(all, leak) {
					t.Errorf("%q reached analytics:\n%s", leak, all)
				}
			}
			q, _ := url.ParseQuery(h.uri[strings.IndexByte(h.uri, '?')+1:])
			if q.Get("tid") != "G-TEST" || q.Get("en") != "page_view" || q.Get("_uip") != "203.0.0.0" || q.Get("ul") != "de" {
				t.Errorf("query: %v", q)
			}
			if got := q.Get("dl"); got != "https://shop.example/search?page=2" {
				t.Errorf("dl = %q", got)
			}
			if q.Get("dr") != "https://www.google.com" || q.Get("cid") == "" || len(q.Get("cid")) != 32 {
				t.Errorf("dr %q cid %q", q.Get("dr"), q.Get("cid"))
			}
			if h.header.Get("X-Geo-Country") != "DE" || h.header.Get("X-Geo-Region") != "BE" {
				t.Errorf("geo headers: %v %v", h.header.Get("X-Geo-Country"), h.header.Get("X-Geo-Region"))
			}
			if ua := h.header.Get("User-Agent"); !strings.Contains(ua, "Chrome") || strings.Contains(ua, "537.36") {
				t.Errorf("User-Agent = %q", ua)
			}
			if got := h.header.Get("Sec-Ch-Ua"); got != `"Chrome";v="124"` || h.header.Get("Sec-Ch-Ua-Platform") != `"Windows"` || h.header.Get("Sec-Ch-Ua-Model") != "" {
				t.Errorf("client hints: %q %q %q", got, h.header.Get("Sec-Ch-Ua-Platform"), h.header.Get("Sec-Ch-Ua-Model"))
			}
			if xff := h.header.Get("X-Forwarded-For"); xff != "203.0.0.0" {
				t.Errorf("X-Forwarded-For = %q", xff)
			}
			if !strings.Contains(h.body, "_uip=2001%3Adb8%3A%3A") || strings.Count(h.body, "\n") != 1 {
				t.Errorf("batched body: %q", h.body)
			}
		})
	}
}

func TestPrivacyFilterPseudonyms(t *testing.T) {
	g, col := startAnalytics(t, "privacy_filter ga4")
	send := func(c *client, ip string) string {
		c.do(http.MethodGet, g.url("/collect/g/collect?v=2&cid=555.666&en=x"), "", "", "User-Agent", chromeUA, "X-Forwarded-For", ip)
		q, _ := url.ParseQuery(col.last(t).uri[strings.IndexByte(col.last(t).uri, '?')+1:])
		return q.Get("cid")
	}
	// Without consent: a daily hash of site, IP and UA — the same for the
	// same visitor today, different for another visitor.
	anon := newClient(t)
	a1, a2 := send(anon, "203.0.113.5"), send(anon, "203.0.113.5")
	if a1 == "" || a1 != a2 || a1 == send(newClient(t), "203.0.113.6") {
		t.Errorf("daily hash: %q %q", a1, a2)
	}
	// With consent: a keyed pseudonym of the consent ID, stable across IPs.
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	p1, p2 := send(c, "203.0.113.5"), send(c, "198.51.100.1")
	if p1 == "" || p1 != p2 || p1 == a1 {
		t.Errorf("consented pseudonym: %q %q (anon %q)", p1, p2, a1)
	}
	other := newClient(t)
	other.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	if send(other, "203.0.113.5") == p1 {
		t.Error("two consented visitors share a pseudonym")
	}
}

func TestPrivacyFilterDropWithoutConsent(t *testing.T) {
	g, col := startAnalytics(t, "privacy_filter matomo {\n\t\t\twithout_consent drop\n\t\t}")
	r := newClient(t).get(g.url("/collect/matomo.php?idsite=1&rec=1&_id=abc&cip=203.0.113.9"))
	if r.status != http.StatusNoContent || col.count() != 0 {
		t.Fatalf("without consent: %d, collector got %d", r.status, col.count())
	}
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	c.get(g.url("/collect/matomo.php?idsite=1&rec=1&_id=abc&cip=203.0.113.9&lat=52.5&long=13.4&ua="+url.QueryEscape(chromeUA)), "User-Agent", chromeUA)
	h := col.last(t)
	if strings.Contains(h.uri, "lat=") || strings.Contains(h.uri, "long=") || strings.Contains(h.uri, "203.0.113.9") || strings.Contains(h.uri, "537.36") {
		t.Errorf("matomo hit: %s", h.uri)
	}
}

func TestPrivacyFilterMalformed(t *testing.T) {
	g, col := startAnalytics(t, "privacy_filter ga4")
	c := newClient(t)
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	for name, req := range map[string][3]string{
		"bad percent": {http.MethodGet, "/collect/g/collect?cid=%zz", ""},
		"bad json":    {http.MethodPost, "/collect/mp/collect", `{"client_id":`},
		"deep json":   {http.MethodPost, "/collect/mp/collect", deep},
		"huge body":   {http.MethodPost, "/collect/g/collect", "cid=" + strings.Repeat("x", 70<<10)},
		"bad batch":   {http.MethodPost, "/collect/g/collect", "cid=1\ncid=%zz"},
		"binary":      {http.MethodPost, "/collect/g/collect", "\x00\x01\x02"},
	} {
		ctype := "text/plain"
		if strings.HasPrefix(req[2], "{") {
			ctype = "application/json"
		}
		r := c.do(req[0], g.url(req[1]), ctype, req[2])
		if r.status < 400 || r.status > 499 {
			t.Errorf("%s: status %d", name, r.status)
		}
	}
	if col.count() != 0 {
		t.Errorf("malformed beacons reached analytics: %d", col.count())
	}
}

func TestPrivacyFilterWorksAlone(t *testing.T) {
	col := newCollector(t)
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	privacy_filter plausible
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": col.Listener.Addr().String(), "GLOBAL": ""})
	r := newClient(t).do(http.MethodPost, g.url("/api/event?uid=42&mail=alice%40x.com"), "application/json",
		`{"n":"pageview","u":"https://site.example/?email=a%40b.c&q=secret","d":"site.example","r":"https://ref.example/path","p":{"who":"a@b.c"}}`,
		"User-Agent", chromeUA, "X-Forwarded-For", "203.0.113.9")
	if r.status != http.StatusNoContent {
		t.Fatalf("plausible: %d %s", r.status, r.body)
	}
	h := col.last(t)
	if h.uri != "/api/event" {
		t.Errorf("a JSON-only profile forwarded a query: %s", h.uri)
	}
	for _, leak := range []string{"a@b.c", "a%40b.c", "secret", "/path", "203.0.113.9", "537.36", "alice"} {
		if strings.Contains(h.everything(), leak) {
			t.Errorf("%q reached analytics: %s", leak, h.everything())
		}
	}
}

// newTestFilter sets up a privacy filter on a real store without Caddy.
func newTestFilter(tb testing.TB, f *PrivacyFilter) *PrivacyFilter {
	tb.Helper()
	h := newTestHandler(tb, &Handler{Site: "shop"})
	f.app = h.app
	f.logger = h.logger
	if err := f.setup(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		tb.Fatal(err)
	}
	return f
}

// BenchmarkPrivacyFilterGA4 is the per-beacon cost of a GA4 hit with a
// warm UA cache: query rewrite, pseudonym, IP truncation, GeoIP look-up,
// header clean-up.
func BenchmarkPrivacyFilterGA4(b *testing.B) {
	benchmarkBeacon(b, &PrivacyFilter{Profile: "ga4"}, "/g/collect?v=2&tid=G-1&cid=123.456&_uip=203.0.113.7&ul=de-de&dl=https%3A%2F%2Fshop.example%2Fp%3Fgclid%3Dx%26page%3D2&dr=https%3A%2F%2Fwww.google.com%2F&dt=Shoes&en=page_view&_s=1")
}

// BenchmarkPrivacyFilterMatomo is the same for a Matomo hit.
func BenchmarkPrivacyFilterMatomo(b *testing.B) {
	benchmarkBeacon(b, &PrivacyFilter{Profile: "matomo"}, "/matomo.php?idsite=1&rec=1&_id=abcdef0123456789&cip=203.0.113.7&url=https%3A%2F%2Fshop.example%2Fp&urlref=https%3A%2F%2Fref.example%2Fx&action_name=Shoes&res=1920x1080&h=12&m=3&s=4")
}

// BenchmarkPrivacyFilterNone is what the beacon benchmarks count besides
// the filter: making each request as Caddy's server does, and the handler
// after the filter (which does nothing).
func BenchmarkPrivacyFilterNone(b *testing.B) {
	benchmarkBeacon(b, nil, "/g/collect?v=2&tid=G-1&cid=123.456&_uip=203.0.113.7&ul=de-de&dl=https%3A%2F%2Fshop.example%2Fp%3Fgclid%3Dx%26page%3D2&dr=https%3A%2F%2Fwww.google.com%2F&dt=Shoes&en=page_view&_s=1")
}

// benchmarkBeacon reports, besides ns/op (wall time, which on a shared
// machine counts waiting for a core), the process's CPU time per beacon.
// The GeoIP database holds records as full as GeoLite2 City's and, like a
// real one, shares what neighbouring networks have in common (country,
// city, names) through pointers; the app counts enforcement as in
// production. Each beacon gets a fresh request as Caddy's server hands it
// over (a new replacer, the client IP in the variables), built from reused
// maps so that the numbers are the filter's own cost.
func benchmarkBeacon(b *testing.B, f *PrivacyFilter, uri string) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	serve := func(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
		return next.ServeHTTP(w, r)
	}
	if f != nil {
		f = newTestFilter(b, f)
		db := filepath.Join(b.TempDir(), "geo.mmdb")
		geotest.Write(b, db, map[string]geotest.Entry{
			"203.0.112.0/24": {Country: "DE", Region: "BY", Full: true},
			"203.0.113.0/24": {Country: "DE", Region: "BE", Full: true},
		})
		var err error
		if f.app.geo, err = geo.Open(db); err != nil {
			b.Fatal(err)
		}
		f.app.tally = new(tally)
		f.ua.Generalize(chromeUA) // warm the cache
		serve = f.ServeHTTP
	}
	w := &discardWriter{h: http.Header{}}
	base := httptest.NewRequest(http.MethodGet, "http://shop"+uri, nil)
	base.Header.Set("User-Agent", chromeUA)
	base.Header.Set("Accept-Language", "de-DE,de;q=0.9")
	base.Header.Set("Cookie", "_ga=GA1.1.1.2")
	base.Header.Set("X-Forwarded-For", "203.0.113.9")
	vars := map[string]any{}
	withVars := context.WithValue(base.Context(), caddyhttp.VarsCtxKey, vars)
	header := make(http.Header, len(base.Header))
	var u url.URL
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		clear(vars)
		vars[caddyhttp.ClientIPVarKey] = "203.0.113.9"
		clear(header)
		for k, v := range base.Header {
			header[k] = v // the filter replaces values, never edits them
		}
		u = *base.URL
		r := base.WithContext(context.WithValue(withVars, caddy.ReplacerCtxKey, caddy.NewReplacer()))
		r.URL, r.Header = &u, header
		if err := serve(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	if cpu := processCPU() - cpu; cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

func TestPseudonymKeyFileSharedByNodes(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "pseudonym.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	col := newCollector(t)
	site := globalOpts + `
http://127.0.0.1:{{PORT}} {
	consent {
		site shop
	}
	privacy_filter ga4
	reverse_proxy {{UPSTREAM}}
}
`
	g := startGateway(t, site, map[string]string{"UPSTREAM": col.Listener.Addr().String(), "GLOBAL": "pseudonym_key_file " + keyFile})
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	cid := func() string {
		c.get(g.url("/g/collect?v=2&cid=1.2&en=x"))
		q, _ := url.ParseQuery(col.last(t).uri[strings.IndexByte(col.last(t).uri, '?')+1:])
		return q.Get("cid")
	}
	first := cid()
	// The pseudonym is the key file's: another node with its own store and
	// the same key file gives the same consent ID the same pseudonym.
	p, err := g.app().pseudonymizer()
	if err != nil {
		t.Fatal(err)
	}
	st := c.get(g.url("/_consent/state")).json(t)
	want := p.Consented("shop", st.ID, "cid")
	if first != want {
		t.Fatalf("pseudonym %q, want %q", first, want)
	}
	if err := caddy_Stop(); err != nil {
		t.Fatal(err)
	}
	g.storage = filepath.Join(dir, "node2")
	g.load(site)
	p2, err := g.app().pseudonymizer()
	if err != nil {
		t.Fatal(err)
	}
	if p2.Consented("shop", st.ID, "cid") != first {
		t.Fatal("a node with the same key file gives another pseudonym")
	}
	if err := os.WriteFile(keyFile, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := caddy_Stop(); err != nil {
		t.Fatal(err)
	}
	g.storage = filepath.Join(dir, "node3")
	cfg := adapt(t, g.render(site))
	if err := caddyLoad(cfg); err == nil || !strings.Contains(err.Error(), "pseudonym key") {
		t.Fatalf("bad key file: %v", err)
	}
	g.vars["GLOBAL"] = ""
	g.load(globalOpts + "\nhttp://127.0.0.1:{{PORT}} {\n\trespond ok\n}\n")
}
