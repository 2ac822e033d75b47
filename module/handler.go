package consentgate

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/consentgate/consentgate/module/internal/cookies"
	"github.com/consentgate/consentgate/module/internal/htmlrewrite"
	"github.com/consentgate/consentgate/module/internal/policy"
	"github.com/consentgate/consentgate/module/internal/token"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's configuration.
const (
	DefaultLifetime   = 182 * 24 * time.Hour
	DefaultAPIPrefix  = "/_consent/"
	DefaultCookieName = "cg_consent"
	DefaultPolicy     = "1"
	// TokenHeader carries the signed token for apps without a cookie jar.
	TokenHeader = "Consent-Token"
	// maxUnknownReported bounds the memory spent remembering which
	// unclassified cookie names were already logged.
	maxUnknownReported = 1024
)

// Handler enforces a site's consent policy on the wire: it decides the
// visitor's consent once per request, removes request cookies and response
// Set-Cookie headers of categories the visitor has not granted, serves the
// consent API under its prefix and /.well-known/gpc.json, and exposes the
// decision to later handlers.
//
// Placeholders set for every request:
//
// | Placeholder | Description |
// |---|---|
// | `{http.consent.id}` | consent ID of a valid decision, empty otherwise |
// | `{http.consent.decided}` | `true` when the visitor has a valid, current decision |
// | `{http.consent.granted}` | granted categories, comma-separated |
// | `{http.consent.denied}` | refused (or not yet granted) categories, comma-separated |
// | `{http.consent.<category>}` | `true` or `false` for each category |
// | `{http.consent.regime}` | `opt-in`, `opt-out` or `notice` |
// | `{http.consent.gpc}` | `true` when the request carried Sec-GPC: 1 |
// | `{http.geo.country}` | the visitor's country, when known |
type Handler struct {
	// Site identifies the site in records and tokens; a token issued for
	// another site is never accepted. Default: the request's host name
	// (lower case, without port), so every host is its own site.
	Site string `json:"site,omitempty"`

	// Categories are the purposes visitors can grant or refuse. Default:
	// necessary (required), preferences, analytics, marketing (sale or
	// sharing). A required "necessary" category is added when none of the
	// configured categories is required.
	Categories []policy.Category `json:"categories,omitempty"`

	// PolicyVersion is the version of the privacy policy visitors decide
	// on. Default: "1".
	PolicyVersion string `json:"policy_version,omitempty"`

	// ReconsentSince makes decisions made under a policy version older than
	// this one stale: the visitor is asked again. Versions compare segment
	// by segment, numerically where numeric ("1.10" > "1.9",
	// "2024-05-01" > "2024-04-30"). Default: none.
	ReconsentSince string `json:"reconsent_since,omitempty"`

	// PolicyURL is the address of the privacy policy shown to visitors.
	PolicyURL string `json:"policy_url,omitempty"`

	// Lifetime is how long a decision holds before the visitor is asked
	// again. Default: 182 days (4368h).
	Lifetime caddy.Duration `json:"lifetime,omitempty"`

	// Services are the site's own tools, each in a category, with the
	// cookies they set. Their cookie rules win over the built-in catalog.
	Services []policy.Service `json:"services,omitempty"`

	// Cookies classify cookies by name or glob pattern; they win over
	// services and the built-in catalog.
	Cookies []policy.CookieRule `json:"cookies,omitempty"`

	// UnknownCookies is what happens to cookies no rule classifies:
	// "allow" (default; logged at first sight and counted) or "block"
	// (they pass only when every optional category is granted).
	UnknownCookies string `json:"unknown_cookies,omitempty"`

	// APIPrefix is the path prefix of the consent API. Default: "/_consent/".
	APIPrefix string `json:"api_prefix,omitempty"`

	// CookieName is the name of the consent cookie. Default: "cg_consent".
	CookieName string `json:"cookie_name,omitempty"`

	// DefaultRegime applies to visitors whose country maps to no regime.
	// Default: "opt-in". Visitors whose country is unknown always get
	// "opt-in", the strictest.
	DefaultRegime string `json:"default_regime,omitempty"`

	// Regimes maps ISO 3166-1 alpha-2 country codes to a regime: "opt-in",
	// "opt-out" or "notice".
	Regimes map[string]string `json:"regimes,omitempty"`

	// CountryHeader is a request header set by a trusted CDN with the
	// visitor's country (e.g. CF-IPCountry). It is believed only on
	// requests from the server's trusted_proxies. Default: none (the GeoIP
	// database of the consent app is used).
	CountryHeader string `json:"country_header,omitempty"`

	// DNT is "honor" to treat DNT: 1 like Sec-GPC: 1, or "ignore"
	// (default).
	DNT string `json:"dnt,omitempty"`

	// GPCJSON serves /.well-known/gpc.json (unless the site serves its
	// own). Default: true.
	GPCJSON *bool `json:"gpc_json,omitempty"`

	// Banner injects the consent banner into HTML pages. Default: true.
	// Scripts, embeds and pixels of refused categories are neutralised in
	// HTML pages either way, so a site with its own UI on the consent API
	// is still enforced.
	Banner *bool `json:"banner,omitempty"`

	// Lang fixes the banner language (a translation code such as "en",
	// "ru", "kk"). Default: the page's lang attribute, else the visitor's
	// Accept-Language, else English.
	Lang string `json:"lang,omitempty"`

	// Texts override banner strings: language code ("*" for all) → string
	// key (see static/i18n/en.json) → text.
	Texts map[string]map[string]string `json:"texts,omitempty"`

	// CSP sends a Content-Security-Policy with HTML pages that allows only
	// the hosts of granted services (plus 'self' and CSPSources), so a
	// tracker that slips past the rewriting still cannot load or send:
	// "enforce", "report" (Content-Security-Policy-Report-Only) or "off"
	// (default). A policy the upstream sends is kept; browsers enforce
	// both, so it is never weakened.
	CSP string `json:"csp,omitempty"`

	// CSPSources are extra sources allowed in every directive of the
	// per-visitor policy: the site's own CDNs and third parties that need
	// no consent (e.g. "https://cdn.example.com").
	CSPSources []string `json:"csp_sources,omitempty"`

	// RateLimit bounds state-changing consent API calls per client: at
	// most Burst at once, refilled by one every Interval. Default: 120 and
	// 100ms (10 a second sustained). Burst -1 turns the limit off.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	app     *App
	site    *siteConfig
	limiter *decisionLimiter
	assets  *bannerAssets
	hosts   *policy.HostIndex
	inline  *policy.InlineIndex
	logger  *zap.Logger
	now     func() time.Time
	unknown *unknownCookies
	gpcDate string
	label   string // Site, or "any" when sites follow the host: for metrics and logs
	held    heldCounters
	scratch *sync.Pool // *[token.ScratchLen]byte for token verification
	// shownHashes caches the hash of the policy snapshot per language.
	shownHashes *shownCache
	// injections caches the constant part of the banner injection per
	// language (*injectionParts).
	injections *sync.Map
	// unreadable holds the Content-Encodings of HTML pages already
	// logged as unreadable.
	unreadable *sync.Map
	// consentModes caches the Consent Mode default script by granted set.
	consentModes *sync.Map
}

// heldCounters are the blocked-cookie counters of this handler, resolved
// once so the request path does no label look-ups.
type heldCounters struct {
	request, response map[string]prometheus.Counter
	unclassified      prometheus.Counter
	// Elements the HTML rewriter held back.
	scripts, iframes, images prometheus.Counter
}

func (hc *heldCounters) init(m *metrics, site string, categories []policy.Category) {
	hc.request = make(map[string]prometheus.Counter)
	hc.response = make(map[string]prometheus.Counter)
	names := []string{"malformed", "unmapped", "unclassified"}
	for _, c := range categories {
		names = append(names, c.Name)
	}
	for _, n := range names {
		hc.request[n] = m.cookiesHeld.WithLabelValues(site, n, "request")
		hc.response[n] = m.cookiesHeld.WithLabelValues(site, n, "response")
	}
	hc.unclassified = m.unclassified.WithLabelValues(site)
	hc.scripts = m.elements.WithLabelValues(site, "script")
	hc.iframes = m.elements.WithLabelValues(site, "iframe")
	hc.images = m.elements.WithLabelValues(site, "img")
}

// RateLimit is a per-client token bucket.
type RateLimit struct {
	// Burst is how many decisions a client may make at once; -1 for no
	// limit.
	Burst int `json:"burst,omitempty"`
	// Interval is how long one more decision takes to become available.
	Interval caddy.Duration `json:"interval,omitempty"`
}

// siteConfig is the compiled policy a Decision refers to.
type siteConfig struct {
	categories []policy.Category
	index      map[string]int
	required   policy.Set
	optional   policy.Set
	sale       policy.Set
	classifier *policy.Classifier
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.consent",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, compiles the policy and gets the consent app.
func (h *Handler) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("consent")
	if err != nil {
		return fmt.Errorf("getting consent app: %w", err)
	}
	return h.setup(appIface.(*App), ctx.Logger())
}

// setup is Provision once the app is known.
func (h *Handler) setup(app *App, logger *zap.Logger) error {
	h.app, h.logger = app, logger
	h.unknown = new(unknownCookies)
	if h.now == nil {
		h.now = time.Now
	}
	if len(h.Categories) == 0 {
		h.Categories = policy.DefaultCategories()
	}
	hasRequired, necessary := false, -1
	for i, c := range h.Categories {
		hasRequired = hasRequired || c.Required
		if c.Name == policy.Necessary {
			necessary = i
		}
	}
	switch {
	case hasRequired:
	case necessary >= 0:
		h.Categories[necessary].Required = true
	default:
		h.Categories = append([]policy.Category{policy.DefaultCategories()[0]}, h.Categories...)
	}
	if h.PolicyVersion == "" {
		h.PolicyVersion = DefaultPolicy
	}
	if h.Lifetime == 0 {
		h.Lifetime = caddy.Duration(DefaultLifetime)
	}
	if h.UnknownCookies == "" {
		h.UnknownCookies = "allow"
	}
	if h.APIPrefix == "" {
		h.APIPrefix = DefaultAPIPrefix
	}
	if !strings.HasPrefix(h.APIPrefix, "/") || strings.Trim(h.APIPrefix, "/") == "" {
		return fmt.Errorf("api_prefix must be a path below the root such as /_consent/, got %q", h.APIPrefix)
	}
	if !strings.HasSuffix(h.APIPrefix, "/") {
		h.APIPrefix += "/"
	}
	if h.CookieName == "" {
		h.CookieName = DefaultCookieName
	}
	if h.DefaultRegime == "" {
		h.DefaultRegime = policy.OptIn
	}
	if h.DNT == "" {
		h.DNT = "ignore"
	}
	normalized := make(map[string]string, len(h.Regimes))
	for country, regime := range h.Regimes {
		normalized[strings.ToUpper(country)] = regime
	}
	h.Regimes = normalized

	if err := policy.ValidateCategories(h.Categories); err != nil {
		return err
	}
	site := &siteConfig{categories: h.Categories, index: make(map[string]int, len(h.Categories))}
	for i, c := range h.Categories {
		site.index[c.Name] = i
		switch {
		case c.Required:
			site.required = site.required.With(i)
		default:
			site.optional = site.optional.With(i)
		}
		if c.SaleOrSharing && !c.Required {
			site.sale = site.sale.With(i)
		}
	}
	for _, s := range h.Services {
		if _, ok := site.index[s.Category]; !ok {
			return fmt.Errorf("service %s: unknown category %q", s.Name, s.Category)
		}
	}
	var err error
	site.classifier, err = policy.NewClassifier(h.Categories, h.Cookies, h.Services, policy.Catalog())
	if err != nil {
		return err
	}
	h.site = site

	h.label = h.Site
	if h.label == "" {
		h.label = "any"
	}
	if err := h.setupBanner(); err != nil {
		return err
	}
	burst, interval := DefaultRateBurst, DefaultRateInterval
	if h.RateLimit != nil {
		if h.RateLimit.Burst != 0 {
			burst = h.RateLimit.Burst
		}
		if h.RateLimit.Interval > 0 {
			interval = time.Duration(h.RateLimit.Interval)
		}
	}
	if burst > 0 {
		h.limiter = newDecisionLimiter(burst, interval)
	}
	h.held.init(h.app.metrics, h.label, h.Categories)
	h.scratch = &sync.Pool{New: func() any { return new([token.ScratchLen]byte) }}
	h.shownHashes = new(shownCache)
	h.injections = new(sync.Map)
	h.unreadable = new(sync.Map)
	h.consentModes = new(sync.Map)
	h.gpcDate = h.now().UTC().Format("2006-01-02")
	if stored, err := h.app.store.PutIfAbsent("gpc/"+h.label, []byte(h.gpcDate)); err == nil {
		h.gpcDate = string(stored)
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if strings.ContainsAny(h.Site, "/\x00") || len(h.Site) > 253 {
		return fmt.Errorf("invalid site %q", h.Site)
	}
	if h.Lifetime < 0 {
		return errors.New("lifetime must be positive")
	}
	if h.UnknownCookies != "allow" && h.UnknownCookies != "block" {
		return fmt.Errorf("unknown_cookies must be allow or block, got %q", h.UnknownCookies)
	}
	if !strings.HasPrefix(h.APIPrefix, "/") {
		return fmt.Errorf("api_prefix must start with '/', got %q", h.APIPrefix)
	}
	if !validCookieName(h.CookieName) {
		return fmt.Errorf("invalid cookie_name %q", h.CookieName)
	}
	if !policy.ValidRegime(h.DefaultRegime) {
		return fmt.Errorf("invalid default_regime %q: use opt-in, opt-out or notice", h.DefaultRegime)
	}
	for country, regime := range h.Regimes {
		if len(country) != 2 {
			return fmt.Errorf("regimes: %q is not an ISO 3166-1 alpha-2 country code", country)
		}
		if !policy.ValidRegime(regime) {
			return fmt.Errorf("regimes: invalid regime %q for %s", regime, country)
		}
	}
	if h.CSP != "" && h.CSP != "enforce" && h.CSP != "report" && h.CSP != "off" {
		return fmt.Errorf("csp must be enforce, report or off, got %q", h.CSP)
	}
	for _, src := range h.CSPSources {
		if src == "" || strings.ContainsAny(src, ";,\r\n") {
			return fmt.Errorf("invalid csp source %q", src)
		}
	}
	if h.DNT != "honor" && h.DNT != "ignore" {
		return fmt.Errorf("dnt must be honor or ignore, got %q", h.DNT)
	}
	if len(h.PolicyVersion) > 64 || len(h.ReconsentSince) > 64 {
		return errors.New("policy versions are limited to 64 bytes")
	}
	return nil
}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	st := new(requestState)
	d := &st.decision
	h.decide(r, d)
	caddyhttp.SetVar(r.Context(), decisionVarKey, d)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(d.placeholder)
	}

	if strings.HasPrefix(r.URL.Path, h.APIPrefix) {
		return h.serveAPI(w, r, d)
	}

	refusedCookies := h.filterRequestCookies(r, d)
	if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
		// Pages must come back readable to be rewritten: ask for identity.
		// And whole: a 304 would let the browser reuse a page rewritten
		// for an earlier consent state.
		r.Header.Del("Accept-Encoding")
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Modified-Since")
	}
	appToken := r.Header.Get(TokenHeader) != ""
	// Like the consent cookie, the app's token is the gateway's alone.
	r.Header.Del(TokenHeader)
	rw := &st.writer
	*rw = responseWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, d: d, r: r, refused: refusedCookies}
	if d.gpcRevoked {
		h.recordSignal(r, d, rw, appToken)
	}
	if r.URL.Path == "/.well-known/gpc.json" && (h.GPCJSON == nil || *h.GPCJSON) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return h.serveGPCJSON(rw, r, next)
	}
	// If next panics (reverse_proxy aborts a broken copy with
	// http.ErrAbortHandler), the rewriter must not wait for more body.
	defer rw.abortHTML()
	err := next.ServeHTTP(rw, r)
	if ferr := rw.finish(err); err == nil {
		err = ferr
	}
	return err
}

// requestState holds what the handler allocates per request, in one
// allocation.
type requestState struct {
	decision Decision
	writer   responseWriter
}

// decide computes the visitor's consent for r into d: regime from the
// country, the signed token, then GPC/DNT.
func (h *Handler) decide(r *http.Request, d *Decision) {
	s := h.site
	*d = Decision{site: s, PolicyVersion: h.PolicyVersion, SiteID: h.siteID(r)}
	d.Country = h.country(r)
	d.Regime = h.regimeFor(d.Country)
	d.GPC = r.Header.Get("Sec-GPC") == "1"
	d.DNT = h.DNT == "honor" && r.Header.Get("DNT") == "1"

	var explicit policy.Set
	if text := h.tokenText(r); text != "" {
		buf := h.scratch.Get().(*[token.ScratchLen]byte)
		defer h.scratch.Put(buf)
		var v token.View
		if token.Verify(h.app.keys, d.SiteID, text, buf[:0], &v) == nil && !h.app.sets.revokedID(d.SiteID, v.ID) {
			now := h.now()
			issued := time.Unix(v.Issued, 0)
			expires := issued.Add(time.Duration(h.Lifetime))
			policyVersion := h.PolicyVersion
			if string(v.Policy) != h.PolicyVersion {
				policyVersion = string(v.Policy)
			}
			stale := h.ReconsentSince != "" && policy.CompareVersions(policyVersion, h.ReconsentSince) < 0
			switch {
			case now.After(expires) || issued.After(now.Add(5*time.Minute)):
				// Expired or issued in the future: no decision.
			case stale:
				d.previous = v.ID
			default:
				d.Decided = true
				d.ID = v.ID
				d.Issued, d.Expires = issued, expires
				d.flags = v.Flags
				d.PolicyVersion = policyVersion
				explicit = s.setOf(v.Granted)
			}
		}
	}

	switch {
	case d.Decided:
		d.Granted = explicit | s.required
	case d.Regime == policy.OptOut || d.Regime == policy.Notice:
		d.Granted = s.required | s.optional
	default:
		d.Granted = s.required
	}
	if d.GPC || d.DNT {
		refused := d.Granted & s.sale
		if d.Decided && d.flags&token.FlagGPCSeen != 0 {
			// Granted explicitly while the signal was on: the choice wins.
			refused = 0
		}
		if refused != 0 {
			d.Granted &^= refused
			d.gpcRevoked = d.Decided
		}
	}
}

// siteID is the configured site, or the request's host name in lower case
// without port, with characters unfit for a store key replaced.
func (h *Handler) siteID(r *http.Request) string {
	if h.Site != "" {
		return h.Site
	}
	host := hostOnly(r.Host)
	if host == "" {
		return "default"
	}
	if len(host) > 253 {
		host = host[:253]
	}
	clean := true
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '_') {
			clean = false
			break
		}
	}
	if clean {
		return host
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':' || r == '_':
			return r
		}
		return '_'
	}, host)
}

// hostOnly strips the port and IPv6 brackets from a Host header value
// without allocating.
func hostOnly(host string) string {
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			return host[1:end]
		}
		return host
	}
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		return host[:i]
	}
	return host
}

// setOf maps a comma-separated list of category names to a set, ignoring
// names the site no longer defines.
func (s *siteConfig) setOf(names []byte) policy.Set {
	var set policy.Set
	for len(names) > 0 {
		var name []byte
		if i := indexByte(names, ','); i >= 0 {
			name, names = names[:i], names[i+1:]
		} else {
			name, names = names, nil
		}
		if i, ok := s.index[string(name)]; ok {
			set = set.With(i)
		}
	}
	return set
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// tokenText finds the consent token: the Consent-Token header (apps) wins
// over the consent cookie (browsers).
func (h *Handler) tokenText(r *http.Request) string {
	if v := r.Header.Get(TokenHeader); v != "" {
		return v
	}
	for _, line := range r.Header["Cookie"] {
		if v, ok := cookies.Get(line, h.CookieName); ok {
			return v
		}
	}
	return ""
}

// country returns the visitor's country from the trusted CDN header or the
// GeoIP database, "" when unknown or when there is neither.
func (h *Handler) country(r *http.Request) string {
	if h.CountryHeader != "" {
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
			if c := strings.ToUpper(strings.TrimSpace(r.Header.Get(h.CountryHeader))); validCountry(c) {
				return c
			}
		}
	}
	if g := h.app.geo; g != nil {
		if addr, err := netip.ParseAddr(clientIP(r)); err == nil {
			return g.Lookup(addr).Country
		}
	}
	return ""
}

func validCountry(c string) bool {
	// XX and T1 are the "unknown" and "Tor" codes CDNs send.
	return len(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c != "XX"
}

func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

func (h *Handler) regimeFor(country string) string {
	if country == "" {
		return policy.OptIn
	}
	if regime, ok := h.Regimes[country]; ok {
		return regime
	}
	return h.DefaultRegime
}

// allowed reports whether a cookie may pass, and its category for metrics.
func (h *Handler) allowed(name string, granted policy.Set) (bool, string) {
	if name == "" {
		return false, "malformed"
	}
	if name == h.CookieName {
		// The consent cookie is ours; the upstream never sees or sets it.
		return false, "consent"
	}
	i, _ := h.site.classifier.Classify(name)
	switch i {
	case policy.Orphan:
		return false, "unmapped"
	case policy.Unclassified:
		h.reportUnknown(name)
		if h.UnknownCookies == "block" {
			return granted&h.site.optional == h.site.optional, "unclassified"
		}
		return true, "unclassified"
	}
	return granted.Has(i), h.site.categories[i].Name
}

func (h *Handler) reportUnknown(name string) {
	h.held.unclassified.Inc()
	if !h.unknown.firstSight(name) {
		return
	}
	if c := h.logger.Check(zapcore.InfoLevel, "unclassified cookie"); c != nil {
		c.Write(zap.String("cookie", name), zap.String("site", h.label), zap.String("unknown_cookies", h.UnknownCookies))
	}
}

// countHeld counts what the HTML rewriter held back.
func (h *Handler) countHeld(site string, st htmlrewrite.Stats) {
	h.app.enforced(site, "script_neutralised", "-", st.Scripts)
	h.app.enforced(site, "embed_neutralised", "-", st.Iframes)
	h.app.enforced(site, "pixel_removed", "-", st.Images)
	if st.Scripts > 0 {
		h.held.scripts.Add(float64(st.Scripts))
	}
	if st.Iframes > 0 {
		h.held.iframes.Add(float64(st.Iframes))
	}
	if st.Images > 0 {
		h.held.images.Add(float64(st.Images))
	}
}

// unknownCookies remembers which unclassified cookie names were reported,
// up to maxUnknownReported names so a client cannot grow it without bound.
// Look-ups read an immutable map without locking or allocating; the rare
// first sight copies it.
type unknownCookies struct {
	mu    sync.Mutex
	names atomic.Pointer[map[string]struct{}]
}

func (u *unknownCookies) firstSight(name string) bool {
	if m := u.names.Load(); m != nil {
		if _, seen := (*m)[name]; seen || len(*m) >= maxUnknownReported {
			return false
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.names.Load()
	next := make(map[string]struct{}, 1)
	if old != nil {
		if _, seen := (*old)[name]; seen || len(*old) >= maxUnknownReported {
			return false
		}
		next = make(map[string]struct{}, len(*old)+1)
		for k := range *old {
			next[k] = struct{}{}
		}
	}
	next[name] = struct{}{}
	u.names.Store(&next)
	return true
}

// filterRequestCookies removes cookies the visitor has not granted (and
// the consent cookie itself) before any later handler or upstream sees
// them. The header is rebuilt only when something is removed.
func (h *Handler) filterRequestCookies(r *http.Request, d *Decision) (removed []string) {
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return nil
	}
	var keptBuf [32]string
	kept := keptBuf[:0]
	changed := false
	for _, line := range lines {
		sc := cookies.NewScanner(line)
		for {
			p, ok := sc.Next()
			if !ok {
				break
			}
			if ok, category := h.allowed(p.Name, d.Granted); !ok {
				changed = true
				if c, ok := h.held.request[category]; ok {
					c.Inc()
				}
				if category != "consent" { // our own cookie stays at the edge
					h.app.enforced(d.SiteID, "cookie_removed", category, 1)
					if validCookieName(p.Name) && !slices.Contains(removed, p.Name) {
						removed = append(removed, p.Name)
					}
				}
				continue
			}
			kept = append(kept, p.Raw)
		}
	}
	if !changed {
		return removed
	}
	if len(kept) == 0 {
		r.Header.Del("Cookie")
		return removed
	}
	// Reuse the header's own slice: it belongs to this request.
	lines[0] = strings.Join(kept, "; ")
	r.Header["Cookie"] = lines[:1]
	return removed
}

// filterSetCookies drops Set-Cookie headers of categories not granted.
func (h *Handler) filterSetCookies(hdr http.Header, d *Decision) {
	lines := hdr["Set-Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := lines[:0]
	for _, line := range lines {
		if ok, category := h.allowed(cookies.SetCookieName(line), d.Granted); !ok {
			if c, ok := h.held.response[category]; ok {
				c.Inc()
			}
			h.app.enforced(d.SiteID, "cookie_dropped", category, 1)
			if c := h.logger.Check(zapcore.DebugLevel, "dropped set-cookie"); c != nil {
				c.Write(zap.String("cookie", cookies.SetCookieName(line)), zap.String("category", category))
			}
			continue
		}
		kept = append(kept, line)
	}
	if len(kept) == 0 {
		hdr.Del("Set-Cookie")
		return
	}
	hdr["Set-Cookie"] = kept
}

// placeholder resolves the http.consent.* and http.geo.* placeholders.
func (d *Decision) placeholder(key string) (any, bool) {
	const prefix = "http.consent."
	if key == "http.geo.country" {
		return d.Country, true
	}
	if !strings.HasPrefix(key, prefix) {
		return nil, false
	}
	switch name := key[len(prefix):]; name {
	case "id":
		return d.IDString(), true
	case "decided":
		return strconv.FormatBool(d.Decided), true
	case "granted":
		return strings.Join(d.GrantedNames(), ","), true
	case "denied":
		return strings.Join(d.DeniedNames(), ","), true
	case "regime":
		return d.Regime, true
	case "gpc":
		return strconv.FormatBool(d.GPC), true
	default:
		if _, ok := d.site.index[name]; ok {
			return strconv.FormatBool(d.Has(name)), true
		}
	}
	return nil, false
}

// responseWriter filters Set-Cookie headers before they are written.
type responseWriter struct {
	caddyhttp.ResponseWriterWrapper
	h     *Handler
	d     *Decision
	r     *http.Request
	html  *htmlStream // set while an HTML body is being rewritten
	extra []string
	// refused are the names of the cookies the request carried that the
	// visitor's choice does not allow: a page answer expires them.
	refused     []string
	wroteHeader bool
}

func (rw *responseWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	hdr := rw.Header()
	rw.h.filterSetCookies(hdr, rw.d)
	if status >= 200 || status == http.StatusSwitchingProtocols {
		rw.wroteHeader = true
		for _, c := range rw.extra {
			hdr.Add("Set-Cookie", c)
		}
		if rw.h.assets != nil && rw.h.shouldRewrite(rw.r, status, hdr) && rw.startHTML(status) {
			return
		}
	}
	rw.ResponseWriter.WriteHeader(status)
}

// Header is the client writer's header, read under the rewriter's lock
// while a page is rewritten: the rewriter may be writing to the client
// from another goroutine (the flush timer, or the decoding goroutine).
func (rw *responseWriter) Header() http.Header {
	if s := rw.html; s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	return rw.ResponseWriter.Header()
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.html != nil {
		return rw.html.pw.Write(p)
	}
	return rw.ResponseWriter.Write(p)
}

// ReadFrom keeps io.Copy fast while making sure headers are filtered first.
func (rw *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.html != nil {
		return io.Copy(rw.html.pw, src)
	}
	return rw.ResponseWriterWrapper.ReadFrom(src)
}

// FlushError flushes, writing (filtered) headers first if needed, so a
// flush can never send unfiltered headers.
func (rw *responseWriter) FlushError() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.html != nil {
		// The rewriter goroutine owns the client writer while it runs: ask
		// it to flush when it has consumed what came before.
		rw.html.flush.Store(true)
		return nil
	}
	return http.NewResponseController(rw.ResponseWriter).Flush()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.ResponseWriter         = (*responseWriter)(nil)
)
