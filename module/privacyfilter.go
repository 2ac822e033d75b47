package consentgate

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/anonymize"
	"github.com/consentgate/consentgate/module/internal/beacon"
	"github.com/consentgate/consentgate/module/internal/ua"
)

func init() {
	caddy.RegisterModule(PrivacyFilter{})
	httpcaddyfile.RegisterHandlerDirective("privacy_filter", parsePrivacyFilter)
	// Right after consent (which decides, and comes right after encode),
	// before the handlers that proxy.
	httpcaddyfile.RegisterDirectiveOrder("privacy_filter", httpcaddyfile.Before, "push")
}

// maxBeaconBody bounds analytics request bodies.
const maxBeaconBody = 64 << 10

// PrivacyFilter rewrites requests bound for analytics so that they carry no
// full IP address, no full User-Agent, no precise location and no
// identifier that outlives the visitor's consent. Place it before the
// reverse_proxy to the analytics upstream; it reads the decision of the
// consent handler (and treats the visitor as undecided without one).
//
// Placeholders set:
//
// | Placeholder | Description |
// |---|---|
// | `{http.ua.family}` | generalised browser family and major version |
// | `{http.ua.os}` | operating system family |
// | `{http.ua.device}` | desktop, mobile, tablet, bot or other |
// | `{http.geo.region}` | the visitor's region (subdivision code), when known |
// | `{http.privacy.visitor}` | the visitor pseudonym sent to analytics |
type PrivacyFilter struct {
	// Profile is the analytics format: ga4, matomo, plausible, umami,
	// yandex_metrica or generic (only the Fields rules).
	Profile string `json:"profile,omitempty"`

	// IPBytes is how many trailing bytes of the IP are masked: 1–3
	// (IPv4 /24, /16, /8; IPv6 /48, /32, /16), or 4 to remove it.
	// Default: 2.
	IPBytes int `json:"ip_bytes,omitempty"`

	// WithoutConsent is what happens to beacons of visitors without
	// analytics consent: "anonymize" (default: a daily cookieless hash
	// replaces identifiers) or "drop" (answered 204, never sent).
	WithoutConsent string `json:"without_consent,omitempty"`

	// KeepUnknown passes fields the profile does not know instead of
	// dropping them (the default is an allow-list).
	KeepUnknown bool `json:"keep_unknown,omitempty"`

	// Fields add or override rules: field name, "prefix*" or JSON path →
	// action (keep, drop, hash, truncate_ip, generalize_ua, language,
	// clean_url, referrer, redact, coarsen_geo).
	Fields map[string]string `json:"fields,omitempty"`

	// DenyParams replaces the list of query parameters removed from URLs
	// sent to analytics (default: e-mail, phone, token, password, session
	// and search terms such as q, query, search, s).
	DenyParams []string `json:"deny_params,omitempty"`

	// CountPageviews counts the beacons that pass, per site, day and
	// country, in the consent store's aggregate statistics (no
	// identifiers). Default: off.
	CountPageviews bool `json:"count_pageviews,omitempty"`

	profile *beacon.Profile
	urls    anonymize.URLPolicy
	app     *App
	pseudo  *anonymize.Pseudonymizer
	ua      *ua.Generalizer
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (PrivacyFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.privacy_filter",
		New: func() caddy.Module { return new(PrivacyFilter) },
	}
}

var (
	uaOnce sync.Once
	uaGen  *ua.Generalizer
	uaErr  error
)

// sharedUA is one UA generalizer (and cache) per process.
func sharedUA() (*ua.Generalizer, error) {
	uaOnce.Do(func() { uaGen, uaErr = ua.New(ua.Options{}) })
	return uaGen, uaErr
}

// Provision compiles the profile and gets keys from the consent app.
func (f *PrivacyFilter) Provision(ctx caddy.Context) error {
	f.logger = ctx.Logger()
	appIface, err := ctx.App("consent")
	if err != nil {
		return fmt.Errorf("getting consent app: %w", err)
	}
	f.app = appIface.(*App)
	return f.setup()
}

// setup is Provision once the app is known.
func (f *PrivacyFilter) setup() error {
	var err error
	if f.Profile == "" {
		f.Profile = "generic"
	}
	if f.IPBytes == 0 {
		f.IPBytes = 2
	}
	if f.WithoutConsent == "" {
		f.WithoutConsent = "anonymize"
	}
	unknown := beacon.Drop
	if f.KeepUnknown {
		unknown = beacon.Keep
	}
	if f.Profile == "generic" {
		f.profile = &beacon.Profile{Name: "generic", Query: beacon.NewFields(nil, unknown), JSON: beacon.JSONRules{Fields: beacon.NewFields(nil, unknown)}}
	} else {
		mk, ok := beacon.Profiles[f.Profile]
		if !ok {
			return fmt.Errorf("unknown profile %q", f.Profile)
		}
		f.profile = mk()
	}
	var rules []beacon.Rule
	for field, action := range f.Fields {
		a, err := beacon.ParseAction(action)
		if err != nil {
			return fmt.Errorf("field %s: %w", field, err)
		}
		rules = append(rules, beacon.Rule{Field: field, Action: a})
	}
	f.profile.Query = overlay(f.profile.Query, rules, unknown)
	f.profile.JSON.Fields = overlay(f.profile.JSON.Fields, rules, unknown)
	// Queries inside JSON (Matomo's bulk requests) follow the query rules.
	f.profile.JSON.Queries = f.profile.Query
	f.urls = anonymize.URLPolicy{DenyParams: f.DenyParams}
	if f.pseudo, err = f.app.pseudonymizer(); err != nil {
		return err
	}
	if f.ua, err = sharedUA(); err != nil {
		return fmt.Errorf("loading user agent parser: %w", err)
	}
	return nil
}

// overlay adds site rules in front of a profile's rules.
func overlay(base beacon.Fields, rules []beacon.Rule, unknown beacon.Action) beacon.Fields {
	if len(rules) == 0 {
		base.Unknown = unknown
		return base
	}
	return base.With(rules, unknown)
}

// Validate checks the configuration.
func (f *PrivacyFilter) Validate() error {
	if f.IPBytes < 1 || f.IPBytes > 4 {
		return fmt.Errorf("ip_bytes must be 1, 2, 3 or 4 (remove), got %d", f.IPBytes)
	}
	if f.WithoutConsent != "anonymize" && f.WithoutConsent != "drop" {
		return fmt.Errorf("without_consent must be anonymize or drop, got %q", f.WithoutConsent)
	}
	return nil
}

// dropHeaders never reach analytics: cookies, client addresses, cache
// validators (an ETag works like a cookie), device hints that add
// fingerprinting detail, and location headers the client may have sent
// itself (the filter sets its own), and Umami's session cache token (an
// identifier that would outlive the visitor's consent). Sec-CH-UA hints
// are reduced separately.
var dropHeaders = []string{
	"Cookie",
	"X-Forwarded-For", "X-Real-Ip", "Forwarded", "True-Client-Ip", "Cf-Connecting-Ip", "Client-Ip",
	"X-Client-Ip", "X-Cluster-Client-Ip", "Fastly-Client-Ip",
	"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range",
	"Device-Memory", "Dpr", "Viewport-Width", "Width", "Downlink", "Rtt", "Ect", "Save-Data",
	"Sec-Ch-Dpr", "Sec-Ch-Viewport-Width", "Sec-Ch-Viewport-Height", "Sec-Ch-Width", "Sec-Ch-Device-Memory",
	"Sec-Ch-Prefers-Color-Scheme", "Sec-Ch-Prefers-Reduced-Motion", "Sec-Ch-Prefers-Reduced-Transparency",
	"X-Geo-Country", "X-Geo-Region",
	"X-Umami-Cache",
}

// dropHeaderSet holds dropHeaders in the form dropsHeader compares.
var dropHeaderSet = func() map[string]bool {
	m := make(map[string]bool, len(dropHeaders))
	for _, h := range dropHeaders {
		m[strings.ToLower(h)] = true
	}
	return m
}()

// maxDropHeader is longer than every name in dropHeaders.
const maxDropHeader = 48

// dropsHeader reports whether the header named k must not reach analytics:
// a name of dropHeaders or a Sec-CH-UA hint, ignoring case and written
// with '_' for '-' (CGI and PHP, and so Matomo, read X_Forwarded_For as
// X-Forwarded-For).
func dropsHeader(k string) bool {
	if len(k) >= maxDropHeader {
		return false
	}
	var buf [maxDropHeader]byte
	key := buf[:len(k)]
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		key[i] = c
	}
	return dropHeaderSet[string(key)] || bytes.HasPrefix(key, []byte("sec-ch-ua"))
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (f *PrivacyFilter) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	d := DecisionFromRequest(r)
	analytics := d.Has("analytics")
	site := f.siteOf(r, d)
	if d != nil && d.Decided && f.app.sets.restrictedID(d.SiteID, d.ID) {
		// The visitor restricted processing: nothing reaches analytics.
		f.app.enforced(site, "beacon_dropped", "restricted", 1)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if !analytics && f.WithoutConsent == "drop" {
		f.app.enforced(site, "beacon_dropped", "analytics", 1)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	ip := clientIP(r)
	userAgent := firstValue(r.Header, "User-Agent")
	env := &filterEnv{f: f, d: d, analytics: analytics, ip: ip, ua: userAgent, site: site}
	env.urls = f.urls
	env.urls.KeepClickIDs = d.Has("marketing")

	// The query, then the body.
	if r.URL.RawQuery != "" {
		q := ""
		// A profile that takes no query (JSON-only formats) sends none.
		if f.profile.Query.Known() {
			var err error
			var st beacon.Stats
			if q, st, err = f.profile.Query.RewriteQuery(r.URL.RawQuery, env); err != nil {
				return caddyhttp.Error(http.StatusBadRequest, err)
			}
			env.add(st)
		}
		r.URL.RawQuery = q
		r.URL.ForceQuery = false
		r.RequestURI = r.URL.RequestURI()
	}
	if err := f.rewriteBody(r, env); err != nil {
		return err
	}

	// Headers: no cookie, no client address, a generalised UA, the
	// primary language, the referrer's origin, and the coarse location.
	addr, _ := netip.ParseAddr(ip)
	country, region := f.location(d, addr)
	// The keys written here are canonical, so the map is used directly.
	h := r.Header
	hints := readClientHints(h)
	for k, vs := range h {
		if dropsHeader(k) || carriesIP(vs, ip) {
			delete(h, k)
		}
	}
	hints.set(h)
	// One array holds the new values; each header gets a slice of it
	// that cannot grow into the next.
	vals := make([]string, 5)
	set := func(i int, k, v string) {
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
	}
	info := f.ua.Generalize(userAgent)
	set(0, "User-Agent", info.String())
	if al := firstValue(h, "Accept-Language"); al != "" {
		set(1, "Accept-Language", primaryLanguage(al))
	}
	if ref := firstValue(h, "Referer"); ref != "" {
		if o := anonymize.Origin(ref); o == "" {
			delete(h, "Referer")
		} else if len(ref) > len(o) && ref[len(o)] == '/' && ref[:len(o)] == o {
			set(2, "Referer", ref[:len(o)+1])
		} else {
			set(2, "Referer", o+"/")
		}
	}
	if country != "" {
		set(3, "X-Geo-Country", country)
	}
	if region != "" {
		set(4, "X-Geo-Region", region)
	}
	// The proxy derives X-Forwarded-For from RemoteAddr: hand it only the
	// truncated address (or none), so the full IP is forgotten here.
	truncated := truncatedOr(addr, ip, f.IPBytes)
	r.RemoteAddr = net.JoinHostPort(truncated, "0")
	caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, truncated)

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// Worked out only when read: most configurations never read the
		// visitor pseudonym, which costs a keyed hash.
		repl.Map(func(key string) (any, bool) {
			switch key {
			case "http.ua.family":
				return strings.TrimSpace(info.Family + " " + info.Major), true
			case "http.ua.os":
				return info.OS, true
			case "http.ua.device":
				return info.Device, true
			case "http.geo.region":
				return region, true
			case "http.privacy.visitor":
				return env.visitor(), true
			}
			return nil, false
		})
	}
	f.app.enforced(site, "field_removed", "analytics", env.stats.Dropped)
	f.app.enforced(site, "field_pseudonymised", "analytics", env.stats.Pseudonymised)
	if f.CountPageviews {
		f.app.pageview(site, country)
	}
	return next.ServeHTTP(&noCookieWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}, r)
}

// noCookieWriter drops Set-Cookie from analytics answers: the collector
// must not set identifiers in the visitor's browser through the gateway.
type noCookieWriter struct {
	caddyhttp.ResponseWriterWrapper
	wrote bool
}

func (w *noCookieWriter) WriteHeader(status int) {
	if !w.wrote {
		w.Header().Del("Set-Cookie")
		w.wrote = status >= 200
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *noCookieWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// carriesIP reports whether a header value holds the client's address as
// written by the server (a proxy's own header the list does not name).
func carriesIP(vs []string, ip string) bool {
	if len(ip) < len("1.1.1.1") {
		return false
	}
	for _, v := range vs {
		if strings.Contains(v, ip) {
			return true
		}
	}
	return false
}

// firstValue is Header.Get for a canonical key.
func firstValue(h http.Header, k string) string {
	if vs := h[k]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// clientHints are the Sec-CH-UA hints a generalised UA keeps: the browser
// brand and major version, the platform and the mobile flag; the full
// version list, model, platform version, architecture and bitness go.
type clientHints struct{ brands, platform, mobile string }

func readClientHints(h http.Header) clientHints {
	return clientHints{firstValue(h, "Sec-Ch-Ua"), firstValue(h, "Sec-Ch-Ua-Platform"), firstValue(h, "Sec-Ch-Ua-Mobile")}
}

// set writes the reduced hints, once every Sec-CH-UA header is gone.
func (c clientHints) set(h http.Header) {
	if c.brands == "" && c.platform == "" {
		return
	}
	info, ok := ua.FromClientHints(c.brands, c.platform, c.mobile)
	if ok {
		h["Sec-Ch-Ua"] = []string{strconv.Quote(info.Family) + `;v="` + info.Major + `"`}
	}
	if info.OS != "" && info.OS != "Other" {
		h["Sec-Ch-Ua-Platform"] = []string{strconv.Quote(info.OS)}
	}
	if c.mobile != "" {
		if info.Device == "mobile" {
			h["Sec-Ch-Ua-Mobile"] = []string{"?1"}
		} else {
			h["Sec-Ch-Ua-Mobile"] = []string{"?0"}
		}
	}
}

// truncatedOr truncates the client address (addr, parsed from ip when
// valid), or gives 0.0.0.0 when nothing is left of it.
func truncatedOr(addr netip.Addr, ip string, n int) string {
	var t string
	if addr.IsValid() {
		if a := anonymize.TruncateIP(addr, n).WithZone(""); a.IsValid() {
			t = a.String()
		}
	} else {
		t = anonymize.TruncateIPString(ip, n)
	}
	if t == "" {
		return "0.0.0.0"
	}
	return t
}

// siteOf names the site for pseudonyms: the consent decision's site, or the
// request host.
func (f *PrivacyFilter) siteOf(r *http.Request, d *Decision) string {
	if d != nil && d.SiteID != "" {
		return d.SiteID
	}
	return hostOnly(r.Host)
}

// location uses the full client IP inside the gateway, before it is
// truncated, or the decision's country.
func (f *PrivacyFilter) location(d *Decision, addr netip.Addr) (string, string) {
	var country, region string
	if d != nil {
		country = d.Country
	}
	if g := f.app.geo; g != nil {
		if addr.IsValid() {
			loc := g.Lookup(addr)
			if country == "" {
				country = loc.Country
			}
			if loc.Country == country {
				region = loc.Region
			}
		}
	}
	return country, region
}

func (f *PrivacyFilter) rewriteBody(r *http.Request, env *filterEnv) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBeaconBody+1))
	r.Body.Close()
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
	}
	if len(body) > maxBeaconBody {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, fmt.Errorf("beacon body over %d bytes", maxBeaconBody))
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	var out []byte
	switch {
	case len(trimmed) == 0:
		out = nil
	case mt == "application/json" || (len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && f.profile.JSON.Known()):
		if !f.profile.JSON.Known() {
			return caddyhttp.Error(http.StatusUnsupportedMediaType, errors.New("this profile takes no JSON body"))
		}
		var st beacon.Stats
		out, st, err = f.profile.JSON.RewriteJSON(trimmed, env)
		env.add(st)
		if err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
	case f.profile.Query.Known():
		// Form bodies, and GA4's batches: one query-encoded hit per line.
		lines := [][]byte{trimmed}
		if f.profile.Lines {
			lines = bytes.Split(trimmed, []byte("\n"))
		}
		var b bytes.Buffer
		for i, line := range lines {
			q, st, err := f.profile.Query.RewriteQuery(string(bytes.TrimSpace(line)), env)
			env.add(st)
			if err != nil {
				return caddyhttp.Error(http.StatusBadRequest, err)
			}
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(q)
		}
		out = b.Bytes()
	default:
		return caddyhttp.Error(http.StatusUnsupportedMediaType, fmt.Errorf("unsupported beacon body type %q", mt))
	}
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.ContentLength = int64(len(out))
	r.Header.Set("Content-Length", strconv.Itoa(len(out)))
	r.Header.Del("Transfer-Encoding")
	r.TransferEncoding = nil
	return nil
}

// filterEnv applies the beacon actions for one request.
type filterEnv struct {
	f         *PrivacyFilter
	d         *Decision
	analytics bool
	ip, ua    string
	site      string
	urls      anonymize.URLPolicy
	stats     beacon.Stats
}

func (e *filterEnv) add(st beacon.Stats) {
	e.stats.Dropped += st.Dropped
	e.stats.Pseudonymised += st.Pseudonymised
	e.stats.Changed += st.Changed
}

// ID replaces an identifier: with analytics consent, a keyed pseudonym of
// the consent ID, stable while the consent lasts; without, the daily
// cookieless hash, unlinkable across days.
func (e *filterEnv) ID(name, _ string) string {
	if e.analytics && e.d != nil && !e.d.ID.IsZero() {
		return e.f.pseudo.Consented(e.site, e.d.ID.String(), name)
	}
	v, err := e.f.pseudo.Daily(e.site, e.ip, e.ua, name)
	if err != nil {
		e.f.logger.Error("daily visitor hash", zap.Error(err))
		return ""
	}
	return v
}

// visitor is the pseudonym of {http.privacy.visitor}. It is worked out
// on every read (the same each time) rather than kept, because
// placeholders may be read from other goroutines.
func (e *filterEnv) visitor() string { return e.ID("visitor", "") }

func (e *filterEnv) IP(v string) string       { return anonymize.TruncateIPString(v, e.f.IPBytes) }
func (e *filterEnv) UA(v string) string       { return e.f.ua.Generalize(v).String() }
func (e *filterEnv) Lang(v string) string     { return primaryLanguage(v) }
func (e *filterEnv) URL(v string) string      { return e.urls.CleanURL(v) }
func (e *filterEnv) Referrer(v string) string { return anonymize.Origin(v) }
func (e *filterEnv) Redact(v string) string   { return anonymize.RedactPII(v) }

// primaryLanguage reduces "de-CH,de;q=0.9,en;q=0.8" to "de".
func primaryLanguage(al string) string {
	first, _, _ := strings.Cut(al, ",")
	first, _, _ = strings.Cut(first, ";")
	first, _, _ = strings.Cut(strings.TrimSpace(first), "-")
	first = strings.ToLower(first)
	if len(first) < 2 || len(first) > 3 {
		return ""
	}
	for i := 0; i < len(first); i++ {
		if first[i] < 'a' || first[i] > 'z' {
			return ""
		}
	}
	return first
}

// pseudonymizer returns the app's keyed pseudonymiser: its key is
// generated once and kept in the store; daily salts live there too.
func (a *App) pseudonymizer() (*anonymize.Pseudonymizer, error) {
	p := a.privacy
	p.once.Do(func() {
		var key []byte
		if a.PseudonymKeyFile != "" {
			data, err := os.ReadFile(a.PseudonymKeyFile)
			if err != nil {
				p.err = fmt.Errorf("reading pseudonym key file: %w", err)
				return
			}
			if key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(data))); err != nil {
				p.err = fmt.Errorf("pseudonym key file %s: want base64: %w", a.PseudonymKeyFile, err)
				return
			}
		} else {
			key = make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				p.err = err
				return
			}
			stored, err := a.store.PutIfAbsent("pseudo/key", key)
			if err != nil {
				p.err = fmt.Errorf("loading pseudonymisation key: %w", err)
				return
			}
			key = stored
		}
		p.pseudo, p.err = anonymize.NewPseudonymizer(key, anonymize.NewSalts(a.store, a.clock))
		if p.err != nil {
			p.err = fmt.Errorf("pseudonym key: %w", p.err)
		}
	})
	return p.pseudo, p.err
}

func (a *App) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func parsePrivacyFilter(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	f := new(PrivacyFilter)
	err := f.UnmarshalCaddyfile(h.Dispenser)
	return f, err
}

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. Syntax:
//
//	privacy_filter [<profile>] {
//		ip_bytes        1|2|3|remove
//		without_consent anonymize|drop
//		unknown_fields  drop|keep
//		field           <name|prefix*|json.path> <action>
//		deny_params     <name...>
//		count_pageviews
//	}
func (f *PrivacyFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		f.Profile = d.Val()
		if _, ok := beacon.Profiles[f.Profile]; !ok && f.Profile != "generic" {
			return d.Errf("unknown profile %q", f.Profile)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "ip_bytes":
			var v string
			if err = oneArg(d, &v); err == nil {
				if v == "remove" {
					f.IPBytes = 4
				} else if n, perr := strconv.Atoi(v); perr == nil && n >= 1 && n <= 3 {
					f.IPBytes = n
				} else {
					return d.Errf("ip_bytes must be 1, 2, 3 or remove, got %q", v)
				}
			}
		case "without_consent":
			err = enumArg(d, &f.WithoutConsent, "anonymize", "drop")
		case "unknown_fields":
			var v string
			if err = enumArg(d, &v, "drop", "keep"); err == nil {
				f.KeepUnknown = v == "keep"
			}
		case "field":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if _, perr := beacon.ParseAction(args[1]); perr != nil {
				return d.Err(perr.Error())
			}
			if f.Fields == nil {
				f.Fields = make(map[string]string)
			}
			f.Fields[args[0]] = args[1]
		case "deny_params":
			f.DenyParams = append(f.DenyParams, d.RemainingArgs()...)
		case "count_pageviews":
			if d.NextArg() {
				return d.ArgErr()
			}
			f.CountPageviews = true
		default:
			return d.Errf("unrecognized privacy_filter option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*PrivacyFilter)(nil)
	_ caddy.Validator             = (*PrivacyFilter)(nil)
	_ caddyhttp.MiddlewareHandler = (*PrivacyFilter)(nil)
	_ caddyfile.Unmarshaler       = (*PrivacyFilter)(nil)
	_ beacon.Env                  = (*filterEnv)(nil)
)
