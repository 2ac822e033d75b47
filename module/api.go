package consentgate

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/consentgate/consentgate/module/internal/policy"
	"github.com/consentgate/consentgate/module/internal/store"
	"github.com/consentgate/consentgate/module/internal/token"
)

// maxBody bounds consent API request bodies.
const maxBody = 4 << 10

// Decision methods recorded in the store.
const (
	MethodAPI        = "api"
	MethodForm       = "form"
	MethodGPC        = "gpc"
	MethodWithdrawal = "withdrawal"
)

// State is the consent API's view of a decision.
type State struct {
	ID            string     `json:"id"`
	Decided       bool       `json:"decided"`
	Granted       []string   `json:"granted"`
	Denied        []string   `json:"denied"`
	PolicyVersion string     `json:"policy_version"`
	Regime        string     `json:"regime"`
	GPC           bool       `json:"gpc"`
	Expires       *time.Time `json:"expires"`
}

func stateOf(d *Decision) State {
	s := State{
		ID:            d.IDString(),
		Decided:       d.Decided,
		Granted:       d.GrantedNames(),
		Denied:        d.DeniedNames(),
		PolicyVersion: d.PolicyVersion,
		Regime:        d.Regime,
		GPC:           d.GPC,
	}
	if d.Decided {
		exp := d.Expires.UTC()
		s.Expires = &exp
	}
	return s
}

// appendState appends stateOf(d) as json.Marshal encodes it, without
// reflection or allocation: every rewritten page carries it.
func appendState(b []byte, d *Decision) []byte {
	b = append(b, `{"id":"`...)
	if d.Decided {
		b = hex.AppendEncode(b, d.ID[:])
	}
	b = append(b, '"')
	b = append(b, `,"decided":`...)
	b = strconv.AppendBool(b, d.Decided)
	b = append(b, `,"granted":[`...)
	b = appendCategoryNames(b, d, true)
	b = append(b, `],"denied":[`...)
	b = appendCategoryNames(b, d, false)
	b = append(b, `],"policy_version":`...)
	b = appendJSONString(b, d.PolicyVersion)
	b = append(b, `,"regime":`...)
	b = appendJSONString(b, d.Regime)
	b = append(b, `,"gpc":`...)
	b = strconv.AppendBool(b, d.GPC)
	b = append(b, `,"expires":`...)
	if !d.Decided {
		b = append(b, "null"...)
	} else if y := d.Expires.UTC().Year(); y < 0 || y > 9999 {
		// Outside what time.Time marshals: not a valid decision anyway.
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = d.Expires.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}')
}

func appendCategoryNames(b []byte, d *Decision, granted bool) []byte {
	if d.site == nil {
		return b
	}
	first := true
	for i, c := range d.site.categories {
		if d.Granted.Has(i) == granted {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, c.Name)
		}
	}
	return b
}

// appendJSONString appends s as encoding/json quotes it (with its HTML
// escaping); plain ASCII, the usual case, is copied as it is.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// choice is a POSTed decision.
type choice struct {
	Granted []string `json:"granted"`
	All     bool     `json:"all"`
	None    bool     `json:"none"`
}

// apiError is a client error answered as JSON.
type apiError struct {
	status int
	msg    string
}

func (e apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, d *Decision) error {
	w.Header().Set("Cache-Control", "no-store")
	err := h.routeAPI(w, r, d)
	var ae apiError
	if errors.As(err, &ae) {
		writeJSON(w, ae.status, map[string]string{"error": ae.msg})
		return nil
	}
	return err
}

func (h *Handler) routeAPI(w http.ResponseWriter, r *http.Request, d *Decision) error {
	name := r.URL.Path[len(h.APIPrefix):]
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && h.assets != nil {
		if h.serveAsset(w, r, name) || h.serveConfig(w, r, name) {
			return nil
		}
		if name == "settings" {
			return h.serveSettings(w, r, d)
		}
	}
	switch name {
	case "records":
		return h.serveRecords(w, r, d)
	case "state":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, stateOf(d))
			return nil
		case http.MethodPost:
			return h.postState(w, r, d)
		case http.MethodDelete:
			return h.withdraw(w, r, d, false)
		}
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	return errorf(http.StatusNotFound, "no consent endpoint %s", r.URL.Path)
}

// checkSameOrigin refuses cross-site state changes: browsers send
// Sec-Fetch-Site and Origin on every POST and DELETE; apps send neither.
func checkSameOrigin(r *http.Request) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return errorf(http.StatusForbidden, "cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return errorf(http.StatusForbidden, "cross-site request refused (Origin: %.100s)", origin)
	}
	if r.TLS != nil && u.Scheme != "https" {
		return errorf(http.StatusForbidden, "cross-site request refused (Origin: %.100s)", origin)
	}
	return nil
}

// checkRate refuses a client over its decision rate.
func (h *Handler) checkRate(w http.ResponseWriter, r *http.Request) error {
	ok, wait := h.limiter.allow(clientIP(r), h.now())
	if ok {
		return nil
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
	return errorf(http.StatusTooManyRequests, "too many consent decisions from this client; try again later")
}

func (h *Handler) postState(w http.ResponseWriter, r *http.Request, d *Decision) error {
	if err := checkSameOrigin(r); err != nil {
		return err
	}
	if err := h.checkRate(w, r); err != nil {
		return err
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return errorf(http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var c choice
	method := MethodAPI
	switch mediaType {
	case "application/json":
		if err := decodeJSON(r, &c); err != nil {
			return err
		}
	case "application/x-www-form-urlencoded":
		method = MethodForm
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", maxBody)
			}
			return errorf(http.StatusBadRequest, "malformed form: %v", err)
		}
		if r.PostForm.Get("action") == "withdraw" {
			return h.withdraw(w, r, d, true)
		}
		c, err = formChoice(r.PostForm)
		if err != nil {
			return err
		}
	default:
		return errorf(http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded")
	}
	granted, err := h.grantedSet(c, d)
	if err != nil {
		return err
	}
	nd, cookie, err := h.commit(r, d, granted, method, 0)
	if err != nil {
		return err
	}
	http.SetCookie(w, cookie)
	if r.Header.Get(TokenHeader) != "" {
		w.Header().Set(TokenHeader, cookie.Value)
	}
	// Categories refused now lose the cookies the browser still holds.
	for _, c := range h.expiredCookies(r, nd.Granted) {
		w.Header().Add("Set-Cookie", c)
	}
	if method == MethodForm {
		http.Redirect(w, r, returnTo(r), http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, stateOf(nd))
	return nil
}

func decodeJSON(r *http.Request, c *choice) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", maxBody)
		}
		return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed JSON: trailing data after the object")
	}
	return nil
}

// formChoice reads a form post: "granted" once per category (checkboxes),
// or "all"/"none", or the banner buttons' "action" of accept_all,
// reject_all or save.
func formChoice(form url.Values) (choice, error) {
	c := choice{Granted: form["granted"]}
	c.All = truthy(form.Get("all"))
	c.None = truthy(form.Get("none"))
	switch action := form.Get("action"); action {
	case "":
	case "accept_all":
		c.All = true
	case "reject_all":
		c.None = true
	case "save":
		if c.Granted == nil {
			// Saving with every box unticked means necessary only.
			c.Granted = []string{}
		}
	default:
		return c, errorf(http.StatusBadRequest, "unknown action %q", action)
	}
	return c, nil
}

func truthy(s string) bool { return s == "1" || s == "true" || s == "on" }

// grantedSet turns a choice into a category set, refusing unknown names
// and contradictions. Required categories are always in the set.
func (h *Handler) grantedSet(c choice, d *Decision) (policy.Set, error) {
	s := h.site
	if c.All && c.None {
		return 0, errorf(http.StatusBadRequest, `"all" and "none" contradict each other`)
	}
	if (c.All || c.None) && len(c.Granted) > 0 {
		return 0, errorf(http.StatusBadRequest, `"granted" cannot be combined with "all" or "none"`)
	}
	if !c.All && !c.None && c.Granted == nil {
		return 0, errorf(http.StatusBadRequest, `give "granted" (a list of categories), "all": true or "none": true`)
	}
	set := s.required
	for _, name := range c.Granted {
		i, ok := s.index[name]
		if !ok {
			return 0, errorf(http.StatusBadRequest, "unknown category %q", truncate(name, 40))
		}
		set = set.With(i)
	}
	if c.All {
		set |= s.optional
		if d.GPC || d.DNT {
			// "Accept all" is not an explicit grant of sale or sharing
			// while the browser asks not to be sold or shared.
			set &^= s.sale
		}
	}
	return set, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// commit records a decision durably and returns the new decision and its
// signed cookie. Nothing is answered to the client before the record is on
// disk.
func (h *Handler) commit(r *http.Request, d *Decision, granted policy.Set, method string, flags byte) (*Decision, *http.Cookie, error) {
	return h.commitAt(r, d, granted, method, flags, time.Time{}, h.PolicyVersion)
}

// commitAt is commit with the issue time of the new token given (zero for
// now): a revision the visitor did not make must not extend the decision.
// The policy version is the one the visitor decided under: a revision by
// signal keeps the decision's own version.
func (h *Handler) commitAt(r *http.Request, d *Decision, granted policy.Set, method string, flags byte, issued time.Time, policyVersion string) (*Decision, *http.Cookie, error) {
	id := d.ID
	if !d.Decided {
		id = d.previous
	}
	if id.IsZero() {
		var err error
		if id, err = token.NewID(); err != nil {
			return nil, nil, err
		}
	}
	if d.GPC || d.DNT {
		flags |= token.FlagGPCSeen
	}
	now := h.now().UTC().Truncate(time.Second)
	if issued.IsZero() {
		issued = now
	}
	nd := &Decision{
		ID: id, Decided: true, Granted: granted, Regime: d.Regime, Country: d.Country,
		GPC: d.GPC, DNT: d.DNT, Issued: issued, Expires: issued.Add(time.Duration(h.Lifetime)),
		PolicyVersion: policyVersion, flags: flags, site: h.site, SiteID: d.SiteID,
	}
	rec := store.Record{
		Site: d.SiteID, ID: id.String(), Time: now, PolicyVersion: policyVersion,
		Granted: nd.GrantedNames(), Denied: nd.DeniedNames(), Method: method,
		Regime: d.Regime, GPC: d.GPC, DNT: d.DNT, Country: d.Country,
		IP: truncateIP(clientIP(r)), Lang: h.recordLang(r),
	}
	rec.Shown = h.shown(d.SiteID, rec.Lang)
	if err := h.app.store.Append(rec); err != nil {
		h.logger.Error("recording consent decision", zap.Error(err))
		return nil, nil, caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("recording consent decision: %w", err))
	}
	m := h.app.metrics
	m.decisions.WithLabelValues(h.label, method).Inc()
	for _, c := range rec.Granted {
		m.choices.WithLabelValues(h.label, c, "granted", rec.Regime).Inc()
	}
	for _, c := range rec.Denied {
		m.choices.WithLabelValues(h.label, c, "denied", rec.Regime).Inc()
	}
	if method == MethodWithdrawal {
		m.withdrawals.WithLabelValues(h.label).Inc()
	}
	text, err := token.Encode(h.app.keys.Signing(), d.SiteID, token.Claims{
		Flags: flags, ID: id, Issued: issued, Policy: policyVersion, Granted: rec.Granted,
	})
	if err != nil {
		return nil, nil, err
	}
	caddyhttp.SetVar(r.Context(), decisionVarKey, nd)
	maxAge := int(nd.Expires.Sub(now) / time.Second)
	return nd, h.consentCookie(r, text, max(maxAge, 1)), nil
}

func (h *Handler) consentCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: h.CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
}

// truncateIP keeps the first two bytes of an IPv4 address (/16) and four of
// an IPv6 address (/32); the full address is never stored.
func truncateIP(s string) string {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is4() {
		bits = 16
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// withdraw records a withdrawal, resets the visitor to the required
// categories, and expires the cookies of withdrawn categories the browser
// sent.
func (h *Handler) withdraw(w http.ResponseWriter, r *http.Request, d *Decision, form bool) error {
	if err := checkSameOrigin(r); err != nil {
		return err
	}
	if !form {
		// A form withdrawal was already counted by postState.
		if err := h.checkRate(w, r); err != nil {
			return err
		}
	}
	nd, cookie, err := h.commit(r, d, h.site.required, MethodWithdrawal, token.FlagWithdrawn)
	if err != nil {
		return err
	}
	http.SetCookie(w, cookie)
	if r.Header.Get(TokenHeader) != "" {
		w.Header().Set(TokenHeader, cookie.Value)
	}
	for _, c := range h.expiredCookies(r, nd.Granted) {
		w.Header().Add("Set-Cookie", c)
	}
	if form {
		http.Redirect(w, r, returnTo(r), http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, stateOf(nd))
	return nil
}

// expiredCookies returns Set-Cookie values that delete every cookie the
// browser sent that granted no longer allows, on the host and on its
// registrable domain (trackers usually set their cookies there).
func (h *Handler) expiredCookies(r *http.Request, granted policy.Set) []string {
	domain := cookieDomain(r)
	var out []string
	seen := map[string]bool{}
	for _, line := range r.Header["Cookie"] {
		for _, part := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.TrimSpace(name)
			if name == "" || name == h.CookieName || seen[name] || !validCookieName(name) {
				continue
			}
			seen[name] = true
			if ok, _ := h.allowed(name, granted); ok {
				continue
			}
			out = appendExpired(out, name, domain)
		}
	}
	return out
}

// cookieDomain is the registrable domain of the request's host, where
// trackers usually set their cookies; "" for an IP address.
func cookieDomain(r *http.Request) string {
	host := r.Host
	// Parse only what may have a port or be an address: a name without
	// them would cost two errors, every page.
	if strings.IndexByte(host, ':') >= 0 {
		if hst, _, err := net.SplitHostPort(host); err == nil {
			host = hst
		}
	}
	if n := len(host); n > 0 && (host[n-1] <= '9' || strings.IndexByte(host, ':') >= 0) && net.ParseIP(host) != nil {
		return ""
	}
	d, _ := publicsuffix.EffectiveTLDPlusOne(host)
	return d
}

// appendExpired appends the Set-Cookie values that delete the cookie name
// on the host and on domain.
func appendExpired(out []string, name, domain string) []string {
	out = append(out, name+"=; Path=/; Max-Age=0")
	if domain != "" {
		out = append(out, name+"=; Path=/; Domain="+domain+"; Max-Age=0")
	}
	return out
}

// returnTo picks where a form post goes back to: the "return" field or the
// Referer, only when they stay on this site, else "/".
func returnTo(r *http.Request) string {
	if ret := r.PostForm.Get("return"); localPath(ret) {
		return ret
	}
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host != "" && strings.EqualFold(ref.Host, r.Host) && localPath(ref.RequestURI()) {
		return ref.RequestURI()
	}
	return "/"
}

func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\") && !strings.ContainsAny(p, "\r\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// recordSignal records that a GPC/DNT signal newly refused categories the
// visitor had granted, and reissues the token so it is recorded once.
func (h *Handler) recordSignal(r *http.Request, d *Decision, rw *responseWriter, appToken bool) {
	if ok, _ := h.limiter.allow(clientIP(r), h.now()); !ok {
		return // the signal still applies to this request; it is recorded later
	}
	_, cookie, err := h.commitAt(r, d, d.Granted, MethodGPC, d.flags, d.Issued, d.PolicyVersion)
	if err != nil {
		return // the signal is still applied to this request
	}
	rw.extra = append(rw.extra, cookie.String())
	if appToken {
		rw.Header().Set(TokenHeader, cookie.Value)
	}
	// commit replaced the request's decision; keep the one that filters.
	caddyhttp.SetVar(r.Context(), decisionVarKey, d)
}

// serveGPCJSON lets the site answer /.well-known/gpc.json and serves the
// gateway's own resource when the site has none (404).
func (h *Handler) serveGPCJSON(rw *responseWriter, r *http.Request, next caddyhttp.Handler) error {
	fb := &notFoundCatcher{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: rw}}
	err := next.ServeHTTP(fb, r)
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode == http.StatusNotFound {
		fb.notFound, err = true, nil
	}
	if err != nil || !fb.notFound {
		return err
	}
	for _, k := range []string{"Content-Length", "Content-Encoding", "Etag", "Last-Modified", "Content-Range", "Set-Cookie", "Via"} {
		rw.Header().Del(k)
	}
	rw.Header().Set("Cache-Control", "max-age=86400")
	writeJSON(rw, http.StatusOK, map[string]any{"gpc": true, "lastUpdate": h.gpcDate})
	return nil
}

// notFoundCatcher swallows a 404 answer so a fallback can replace it.
type notFoundCatcher struct {
	caddyhttp.ResponseWriterWrapper
	notFound bool
}

func (c *notFoundCatcher) WriteHeader(status int) {
	if status == http.StatusNotFound {
		c.notFound = true
		return
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *notFoundCatcher) Write(p []byte) (int, error) {
	if c.notFound {
		return len(p), nil
	}
	return c.ResponseWriter.Write(p)
}

// Interface guards
var (
	_ http.ResponseWriter = (*notFoundCatcher)(nil)
	_ error               = apiError{}
)
