package consentgate

import (
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentgate/consentgate/module/internal/geo/geotest"
	"github.com/consentgate/consentgate/module/internal/token"
)

const globalOpts = `{
	admin {{ADMIN}}
	auto_https off
	persist_config off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}
	consent {
		storage {{STORAGE}}
		{{GLOBAL}}
	}
}
`

// siteConfig builds a Caddyfile with one gateway site in front of the
// upstream, with the given consent block body.
func gatewayCaddyfile(consentBlock string) string {
	return globalOpts + `
http://127.0.0.1:{{PORT}} {
	consent {
		` + consentBlock + `
	}
	@stats consent analytics
	handle /stats {
		respond @stats "counted {http.consent.id}" 200
		respond "not counted" 200
	}
	handle /echo {
		respond "decided={http.consent.decided} granted={http.consent.granted} denied={http.consent.denied} analytics={http.consent.analytics} regime={http.consent.regime} gpc={http.consent.gpc} country={http.geo.country}"
	}
	reverse_proxy {{UPSTREAM}} {
		header_up X-Consent-Granted {http.consent.granted}
	}
}
`
}

var trackerCookies = []string{
	"session=s1; Path=/; HttpOnly",
	"_ga=GA1.1.111.222; Path=/",
	"_fbp=fb.1.333.444; Path=/",
	"prefs=dark; Path=/",
	"mystery=42; Path=/",
}

func start(t *testing.T, consentBlock string, global ...string) (*gateway, *upstream) {
	t.Helper()
	up := newUpstream(t, trackerCookies...)
	vars := map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": strings.Join(global, "\n\t\t")}
	g := startGateway(t, gatewayCaddyfile(consentBlock), vars)
	return g, up
}

func setCookieNames(h http.Header) []string {
	var names []string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	return names
}

func cookieNames(header string) []string {
	var names []string
	for _, part := range strings.Split(header, ";") {
		name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

const sentCookies = "session=s1; _ga=GA1.1.111.222; _fbp=fb.1.333.444; _hjSessionUser_123=x; prefs=dark; mystery=42"

func TestEnforcementBeforeAndAfterConsent(t *testing.T) {
	g, up := start(t, `cookie prefs preferences`)
	c := newClient(t)

	// No decision (opt-in): only necessary and unclassified cookies pass.
	r := c.get(g.url("/page"), "Cookie", sentCookies)
	if r.status != 200 || r.body != "upstream says hi" {
		t.Fatalf("page: %d %q", r.status, r.body)
	}
	if got, want := cookieNames(up.lastCookie()), []string{"mystery", "session"}; !slices.Equal(got, want) {
		t.Errorf("upstream saw %v, want %v", got, want)
	}
	if got, want := setCookieNames(r.header), []string{"mystery", "session"}; !slices.Equal(got, want) {
		t.Errorf("browser got Set-Cookie %v, want %v", got, want)
	}
	if got := up.lastHeader().Get("X-Consent-Granted"); got != "necessary" {
		t.Errorf("placeholder to upstream = %q", got)
	}

	// Grant analytics: _ga and Hotjar pass, _fbp (marketing) and prefs don't.
	r = c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	if r.status != 200 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	st := r.json(t)
	if !st.Decided || len(st.ID) != 32 || !slices.Equal(st.Granted, []string{"necessary", "analytics"}) ||
		!slices.Equal(st.Denied, []string{"preferences", "marketing"}) || st.Expires == nil || st.Regime != "opt-in" {
		t.Fatalf("state after post: %+v", st)
	}
	ck := r.setCookie("cg_consent")
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge != 182*24*3600 || ck.Secure {
		t.Fatalf("consent cookie = %+v", ck)
	}
	r = c.get(g.url("/page"), "Cookie", sentCookies)
	if got, want := cookieNames(up.lastCookie()), []string{"_ga", "_hjSessionUser_123", "mystery", "session"}; !slices.Equal(got, want) {
		t.Errorf("upstream saw %v, want %v (the consent cookie itself must not be forwarded)", got, want)
	}
	if got, want := setCookieNames(r.header), []string{"_ga", "mystery", "session"}; !slices.Equal(got, want) {
		t.Errorf("browser got Set-Cookie %v, want %v", got, want)
	}

	// GET state agrees with the cookie; placeholders and matcher read it.
	st2 := c.get(g.url("/_consent/state")).json(t)
	if st2.ID != st.ID || !st2.Decided {
		t.Fatalf("state = %+v, want id %s", st2, st.ID)
	}
	if r := c.get(g.url("/stats")); r.body != "counted "+st.ID {
		t.Errorf("matcher with analytics: %q", r.body)
	}
	if r := c.get(g.url("/echo")); r.body != "decided=true granted=necessary,analytics denied=preferences,marketing analytics=true regime=opt-in gpc=false country=" {
		t.Errorf("placeholders: %q", r.body)
	}

	// Accept all: everything passes.
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	r = c.get(g.url("/page"), "Cookie", sentCookies)
	if got, want := cookieNames(up.lastCookie()), []string{"_fbp", "_ga", "_hjSessionUser_123", "mystery", "prefs", "session"}; !slices.Equal(got, want) {
		t.Errorf("after accept all upstream saw %v, want %v", got, want)
	}
	if len(setCookieNames(r.header)) != 5 {
		t.Errorf("after accept all Set-Cookie %v", setCookieNames(r.header))
	}

	// Reject all.
	c.postJSON(g.url("/_consent/state"), `{"none":true}`)
	c.get(g.url("/page"), "Cookie", sentCookies)
	if got, want := cookieNames(up.lastCookie()), []string{"mystery", "session"}; !slices.Equal(got, want) {
		t.Errorf("after reject all upstream saw %v, want %v", got, want)
	}
	if r := newClient(t).get(g.url("/stats")); r.body != "not counted" {
		t.Errorf("matcher without consent: %q", r.body)
	}

	// Every decision is a record with a truncated IP, and one visitor keeps one ID.
	recs, err := g.store().Records("127.0.0.1", st.ID)
	if err != nil || len(recs) != 3 {
		t.Fatalf("records = %d, %v", len(recs), err)
	}
	if recs[0].Method != "api" || recs[0].IP != "127.0.0.0" || recs[0].PolicyVersion != "1" || !slices.Equal(recs[2].Granted, []string{"necessary"}) {
		t.Errorf("record = %+v", recs[0])
	}
}

func TestUnknownCookiesBlock(t *testing.T) {
	g, up := start(t, `unknown_cookies block
		cookie session necessary`)
	c := newClient(t)
	c.get(g.url("/"), "Cookie", "session=1; mystery=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"session"}) {
		t.Errorf("blocked unknown cookie passed: %v", got)
	}
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics","preferences"]}`)
	c.get(g.url("/"), "Cookie", "session=1; mystery=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"session"}) {
		t.Errorf("unknown cookie passed without every category: %v", got)
	}
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	r := c.get(g.url("/"), "Cookie", "session=1; mystery=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"mystery", "session"}) {
		t.Errorf("unknown cookie blocked after accept all: %v", got)
	}
	if !slices.Contains(setCookieNames(r.header), "mystery") {
		t.Errorf("unknown Set-Cookie blocked after accept all")
	}
}

func TestFormPost(t *testing.T) {
	g, _ := start(t, ``)
	c := newClient(t)
	tests := []struct {
		body, referer, want string
		granted             []string
	}{
		{"granted=analytics&granted=preferences&return=/shop?x=1", "", "/shop?x=1", []string{"necessary", "preferences", "analytics"}},
		{"action=accept_all", g.url("/from/here"), "/from/here", []string{"necessary", "preferences", "analytics", "marketing"}},
		{"action=reject_all&return=//evil.example/", "http://evil.example/x", "/", []string{"necessary"}},
		{"none=1&return=https://evil.example/", "", "/", []string{"necessary"}},
	}
	for _, tt := range tests {
		hdr := []string{"Origin", "http://127.0.0.1:" + strconv.Itoa(g.port), "Sec-Fetch-Site", "same-origin"}
		if tt.referer != "" {
			hdr = append(hdr, "Referer", tt.referer)
		}
		r := c.do(http.MethodPost, g.url("/_consent/state"), "application/x-www-form-urlencoded", tt.body, hdr...)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != tt.want {
			t.Errorf("%s: %d Location %q, want 303 %q", tt.body, r.status, r.header.Get("Location"), tt.want)
		}
		if r.setCookie("cg_consent") == nil {
			t.Errorf("%s: no consent cookie", tt.body)
		}
		if st := c.get(g.url("/_consent/state")).json(t); !slices.Equal(st.Granted, tt.granted) {
			t.Errorf("%s: granted %v, want %v", tt.body, st.Granted, tt.granted)
		}
	}
	st := c.get(g.url("/_consent/state")).json(t)
	recs, _ := g.store().Records("127.0.0.1", st.ID)
	if len(recs) != len(tests) || recs[0].Method != "form" {
		t.Errorf("form records: %+v", recs)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	g, _ := start(t, ``)
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	before := c.get(g.url("/_consent/state")).json(t)
	n := g.countRecords()

	big := `{"granted":["` + strings.Repeat("a", 5000) + `"]}`
	tests := []struct {
		name, method, ctype, body string
		hdr                       []string
		status                    int
		msg                       string
	}{
		{"unknown category", "POST", "application/json", `{"granted":["analytics","spying"]}`, nil, 400, `unknown category \"spying\"`},
		{"malformed json", "POST", "application/json", `{"granted":[`, nil, 400, "malformed JSON"},
		{"not an object", "POST", "application/json", `["analytics"]`, nil, 400, "malformed JSON"},
		{"unknown field", "POST", "application/json", `{"grant":["analytics"]}`, nil, 400, "malformed JSON"},
		{"trailing data", "POST", "application/json", `{"all":true} {"none":true}`, nil, 400, "trailing data"},
		{"empty object", "POST", "application/json", `{}`, nil, 400, `give \"granted\"`},
		{"empty body", "POST", "application/json", ``, nil, 400, "malformed JSON"},
		{"all and none", "POST", "application/json", `{"all":true,"none":true}`, nil, 400, "contradict"},
		{"granted and all", "POST", "application/json", `{"all":true,"granted":["analytics"]}`, nil, 400, "cannot be combined"},
		{"too large", "POST", "application/json", big, nil, 413, "larger than"},
		{"too large form", "POST", "application/x-www-form-urlencoded", "granted=" + strings.Repeat("a", 5000), nil, 413, "larger than"},
		{"unknown form category", "POST", "application/x-www-form-urlencoded", "granted=spying", nil, 400, "unknown category"},
		{"unknown form action", "POST", "application/x-www-form-urlencoded", "action=everything", nil, 400, "unknown action"},
		{"text/plain", "POST", "text/plain", `{"all":true}`, nil, 415, "content type"},
		{"no content type", "POST", "", `{"all":true}`, nil, 415, "content type"},
		{"cross-site origin", "POST", "application/json", `{"all":true}`, []string{"Origin", "https://evil.example"}, 403, "cross-site"},
		{"null origin", "POST", "application/json", `{"all":true}`, []string{"Origin", "null"}, 403, "cross-site"},
		{"cross-site fetch", "POST", "application/json", `{"all":true}`, []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
		{"same-site fetch", "POST", "application/json", `{"all":true}`, []string{"Sec-Fetch-Site", "same-site"}, 403, "cross-site"},
		{"cross-site withdrawal", "DELETE", "", ``, []string{"Origin", "https://evil.example"}, 403, "cross-site"},
		{"method", "PUT", "application/json", `{"all":true}`, nil, 405, "not allowed"},
		{"unknown endpoint", "GET", "", ``, nil, 404, "no consent endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/_consent/state"
			if tt.name == "unknown endpoint" {
				path = "/_consent/nope"
			}
			r := c.do(tt.method, g.url(path), tt.ctype, tt.body, tt.hdr...)
			if r.status != tt.status || r.header.Get("Content-Type") != "application/json" || !strings.Contains(r.body, `"error":`) || !strings.Contains(r.body, tt.msg) {
				t.Fatalf("got %d %s %q, want %d JSON error containing %q", r.status, r.header.Get("Content-Type"), r.body, tt.status, tt.msg)
			}
			if r.setCookie("cg_consent") != nil {
				t.Fatal("a rejected request set the consent cookie")
			}
		})
	}
	if got := g.countRecords(); got != n {
		t.Errorf("rejected requests wrote %d records", got-n)
	}
	if after := c.get(g.url("/_consent/state")).json(t); after.ID != before.ID || !slices.Equal(after.Granted, before.Granted) {
		t.Errorf("state changed: %+v -> %+v", before, after)
	}
	// A same-origin browser post is accepted.
	if r := c.postJSON(g.url("/_consent/state"), `{"none":true}`, "Origin", "http://127.0.0.1:"+strconv.Itoa(g.port), "Sec-Fetch-Site", "same-origin"); r.status != 200 {
		t.Errorf("same-origin post: %d %s", r.status, r.body)
	}
}

func TestWithdrawal(t *testing.T) {
	g, up := start(t, ``)
	c := newClient(t)
	st := c.postJSON(g.url("/_consent/state"), `{"all":true}`).json(t)
	r := c.do(http.MethodDelete, g.url("/_consent/state"), "", "", "Cookie", "_ga=1; _fbp=2; session=3; _pk_id.1.abcd=4")
	if r.status != 200 {
		t.Fatalf("withdraw: %d %s", r.status, r.body)
	}
	after := r.json(t)
	if after.ID != st.ID || !after.Decided || !slices.Equal(after.Granted, []string{"necessary"}) {
		t.Fatalf("after withdrawal: %+v", after)
	}
	var expired []string
	for _, line := range r.header.Values("Set-Cookie") {
		if strings.Contains(line, "Max-Age=0") {
			name, _, _ := strings.Cut(line, "=")
			expired = append(expired, name)
		}
	}
	slices.Sort(expired)
	if want := []string{"_fbp", "_ga", "_pk_id.1.abcd"}; !slices.Equal(expired, want) {
		t.Errorf("expired %v, want %v", expired, want)
	}
	c.get(g.url("/"), "Cookie", sentCookies)
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"mystery", "prefs", "session"}) {
		t.Errorf("after withdrawal upstream saw %v", got)
	}
	recs, _ := g.store().Records("127.0.0.1", st.ID)
	if len(recs) != 2 || recs[1].Method != "withdrawal" || !slices.Equal(recs[1].Denied, []string{"preferences", "analytics", "marketing"}) {
		t.Errorf("records: %+v", recs)
	}
}

func TestExpiredCookiesOnRegistrableDomain(t *testing.T) {
	g, _ := start(t, ``)
	h := caddyHandler(t, g)
	req, _ := http.NewRequest(http.MethodDelete, "http://shop.example.co.uk/_consent/state", nil)
	req.Header.Set("Cookie", "_ga=1; session=2")
	got := h.expiredCookies(req, h.site.required)
	want := []string{"_ga=; Path=/; Max-Age=0", "_ga=; Path=/; Domain=example.co.uk; Max-Age=0"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestForgedAndForeignTokens(t *testing.T) {
	g, up := start(t, `lifetime 1h`)
	c := newClient(t)
	r := c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	good := r.setCookie("cg_consent").Value
	kr := g.app().Keyring()
	claims, err := token.Decode(kr, "127.0.0.1", good)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	altered := append([]byte(nil), raw...)
	altered[len(altered)-40] ^= 1
	other, _ := token.GenerateKey()
	forged, _ := token.Encode(other, "127.0.0.1", claims)
	foreign, _ := token.Encode(kr.Signing(), "other.example", claims)
	old := claims
	old.Issued = time.Now().Add(-2 * time.Hour)
	expired, _ := token.Encode(kr.Signing(), "127.0.0.1", old)
	future := claims
	future.Issued = time.Now().Add(24 * time.Hour)
	fromFuture, _ := token.Encode(kr.Signing(), "127.0.0.1", future)

	for name, tok := range map[string]string{
		"altered":     base64.RawURLEncoding.EncodeToString(altered),
		"truncated":   good[:len(good)-4],
		"forged key":  forged,
		"other site":  foreign,
		"expired":     expired,
		"future":      fromFuture,
		"garbage":     "%%%;;;",
		"empty value": "",
	} {
		t.Run(name, func(t *testing.T) {
			fresh := newClient(t)
			st := fresh.get(g.url("/_consent/state"), "Cookie", "cg_consent="+tok).json(t)
			if st.Decided || st.ID != "" || !slices.Equal(st.Granted, []string{"necessary"}) {
				t.Fatalf("%s token counted as a decision: %+v", name, st)
			}
			fresh.get(g.url("/"), "Cookie", "cg_consent="+tok+"; _ga=1; session=2")
			if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"session"}) {
				t.Fatalf("%s token let cookies through: %v", name, got)
			}
			st = fresh.get(g.url("/_consent/state"), "Consent-Token", tok).json(t)
			if st.Decided {
				t.Fatalf("%s token in header counted as a decision", name)
			}
		})
	}
	// The genuine token still works, as cookie and as header.
	if st := newClient(t).get(g.url("/_consent/state"), "Cookie", "cg_consent="+good).json(t); !st.Decided {
		t.Fatal("genuine token rejected")
	}
}

func TestConsentTokenHeaderForApps(t *testing.T) {
	g, up := start(t, ``)
	app := newClient(t)
	app.c.Jar = nil // the mobile app shares no cookie jar with the site
	r := app.postJSON(g.url("/_consent/state"), `{"granted":["marketing"]}`, "Consent-Token", "new")
	tok := r.header.Get("Consent-Token")
	if r.status != 200 || tok == "" {
		t.Fatalf("post: %d, token %q", r.status, tok)
	}
	st := app.get(g.url("/_consent/state"), "Consent-Token", tok).json(t)
	if !st.Decided || !slices.Equal(st.Granted, []string{"necessary", "marketing"}) {
		t.Fatalf("state with header token: %+v", st)
	}
	app.get(g.url("/api"), "Consent-Token", tok, "Cookie", "_fbp=1; _ga=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"_fbp"}) {
		t.Errorf("upstream saw %v", got)
	}
	// A browser post does not expose the token to scripts.
	if r := newClient(t).postJSON(g.url("/_consent/state"), `{"all":true}`); r.header.Get("Consent-Token") != "" {
		t.Error("token exposed in a response header without Consent-Token in the request")
	}
}

func TestGPC(t *testing.T) {
	g, up := start(t, `regime opt-out US
		country_header CF-IPCountry`)
	gpc := []string{"Sec-GPC", "1"}

	// Opt-out regime: optional categories granted until refused, except
	// sale/sharing under GPC.
	c := newClient(t)
	st := c.get(g.url("/_consent/state"), "CF-IPCountry", "US").json(t)
	if st.Regime != "opt-out" || !slices.Equal(st.Granted, []string{"necessary", "preferences", "analytics", "marketing"}) {
		t.Fatalf("opt-out without GPC: %+v", st)
	}
	st = c.get(g.url("/_consent/state"), "CF-IPCountry", "US", "Sec-GPC", "1").json(t)
	if !st.GPC || !slices.Equal(st.Granted, []string{"necessary", "preferences", "analytics"}) {
		t.Fatalf("opt-out with GPC: %+v", st)
	}
	c.get(g.url("/"), "CF-IPCountry", "US", "Sec-GPC", "1", "Cookie", "_fbp=1; _ga=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"_ga"}) {
		t.Errorf("GPC in opt-out: upstream saw %v", got)
	}

	// "Accept all" under GPC does not grant marketing; naming it does.
	st = c.postJSON(g.url("/_consent/state"), `{"all":true}`, gpc...).json(t)
	if slices.Contains(st.Granted, "marketing") {
		t.Fatalf("accept all under GPC granted marketing: %+v", st)
	}
	st = c.postJSON(g.url("/_consent/state"), `{"granted":["analytics","marketing"]}`, gpc...).json(t)
	if !slices.Contains(st.Granted, "marketing") {
		t.Fatalf("explicit grant under GPC refused: %+v", st)
	}
	st = c.get(g.url("/_consent/state"), gpc...).json(t)
	if !slices.Contains(st.Granted, "marketing") {
		t.Fatalf("explicit grant under GPC not kept: %+v", st)
	}
	recs, _ := g.store().Records("127.0.0.1", st.ID)
	if len(recs) != 2 || !recs[0].GPC || !recs[1].GPC {
		t.Errorf("records do not note GPC: %+v", recs)
	}

	// A visitor who accepted all without GPC and later turns it on: marketing
	// is refused and the change recorded once, with a new token.
	v := newClient(t)
	st = v.postJSON(g.url("/_consent/state"), `{"all":true}`).json(t)
	r := v.get(g.url("/"), "Sec-GPC", "1", "Cookie", "_fbp=1; _ga=2")
	if got := cookieNames(up.lastCookie()); !slices.Equal(got, []string{"_ga"}) {
		t.Errorf("newly seen GPC: upstream saw %v", got)
	}
	if r.setCookie("cg_consent") == nil || slices.Contains(setCookieNames(r.header), "_fbp") {
		t.Errorf("newly seen GPC: Set-Cookie %v", setCookieNames(r.header))
	}
	v.get(g.url("/"), "Sec-GPC", "1")
	recs, _ = g.store().Records("127.0.0.1", st.ID)
	if len(recs) != 2 || recs[1].Method != "gpc" || slices.Contains(recs[1].Granted, "marketing") {
		t.Errorf("gpc records: %+v", recs)
	}
	if st := v.get(g.url("/_consent/state")).json(t); slices.Contains(st.Granted, "marketing") {
		t.Errorf("marketing granted again after GPC: %+v", st)
	}

	// The GPC support resource.
	r = newClient(t).get(g.url("/.well-known/gpc.json"))
	if r.status != 200 || !strings.Contains(r.body, `"gpc":true`) || !strings.Contains(r.body, `"lastUpdate":"`) {
		t.Errorf("gpc.json: %d %s", r.status, r.body)
	}
}

func TestSiteServesItsOwnGPCJSON(t *testing.T) {
	up := newUpstream(t)
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent
	handle /.well-known/gpc.json {
		respond "{\"gpc\": false, \"site\": \"own\"}" 200
	}
	handle /missing {
		respond 404
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
	r := newClient(t).get(g.url("/.well-known/gpc.json"))
	if r.body != `{"gpc": false, "site": "own"}` {
		t.Errorf("site's own gpc.json replaced: %q", r.body)
	}
	if r := newClient(t).get(g.url("/missing")); r.status != 404 {
		t.Errorf("other 404s must stay 404: %d", r.status)
	}
}

func TestDNTHonor(t *testing.T) {
	g, _ := start(t, `dnt honor`)
	st := newClient(t).postJSON(g.url("/_consent/state"), `{"all":true}`, "DNT", "1").json(t)
	if slices.Contains(st.Granted, "marketing") || !slices.Contains(st.Granted, "analytics") {
		t.Errorf("DNT honoured: accept all granted %v", st.Granted)
	}
}

func TestDNTIgnoredByDefault(t *testing.T) {
	g, _ := start(t, ``)
	st := newClient(t).postJSON(g.url("/_consent/state"), `{"all":true}`, "DNT", "1").json(t)
	if !slices.Contains(st.Granted, "marketing") {
		t.Errorf("DNT ignored by default, yet marketing refused: %+v", st)
	}
}

func TestRegimesFromGeoIP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, db, map[string]geotest.Entry{
		"203.0.113.0/24":  {Country: "US", Region: "CA"},
		"198.51.100.0/24": {Country: "DE"},
		"2001:db8::/32":   {Country: "KZ"},
	})
	g, _ := start(t, `regime opt-out US
		regime notice KZ`, "geoip "+db)
	tests := []struct {
		ip, country, regime string
		granted             int
	}{
		{"203.0.113.9", "US", "opt-out", 4},
		{"198.51.100.7", "DE", "opt-in", 1},
		{"2001:db8::1", "KZ", "notice", 4},
		{"192.0.2.1", "", "opt-in", 1}, // unknown address: strictest
	}
	for _, tt := range tests {
		c := newClient(t)
		st := c.get(g.url("/_consent/state"), "X-Forwarded-For", tt.ip).json(t)
		if st.Regime != tt.regime || len(st.Granted) != tt.granted {
			t.Errorf("%s: regime %s granted %v, want %s with %d", tt.ip, st.Regime, st.Granted, tt.regime, tt.granted)
		}
		if r := c.get(g.url("/echo"), "X-Forwarded-For", tt.ip); !strings.HasSuffix(r.body, "country="+tt.country) {
			t.Errorf("%s: %q", tt.ip, r.body)
		}
	}
	// GPC always wins over the opt-out default.
	st := newClient(t).get(g.url("/_consent/state"), "X-Forwarded-For", "203.0.113.9", "Sec-GPC", "1").json(t)
	if slices.Contains(st.Granted, "marketing") {
		t.Errorf("GPC lost to opt-out: %+v", st)
	}
	// The record keeps only the truncated IP and the country.
	st = newClient(t).postJSON(g.url("/_consent/state"), `{"none":true}`, "X-Forwarded-For", "203.0.113.9").json(t)
	recs, _ := g.store().Records("127.0.0.1", st.ID)
	if len(recs) != 1 || recs[0].IP != "203.0.0.0" || recs[0].Country != "US" || recs[0].Regime != "opt-out" {
		t.Fatalf("record: %+v", recs)
	}
	if err := g.store().Close(); err != nil { // flush everything to files
		t.Fatal(err)
	}
	if hits := grepDir(t, g.storage, "203.0.113.9"); len(hits) > 0 {
		t.Errorf("full IP stored in %v", hits)
	}
	// Untrusted country header is ignored without a trusted proxy: tested
	// in TestCountryHeaderNeedsTrustedProxy.
}

func TestCountryHeaderNeedsTrustedProxy(t *testing.T) {
	up := newUpstream(t)
	g := startGateway(t, `{
	admin {{ADMIN}}
	auto_https off
	persist_config off
	consent {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT}} {
	consent {
		regime opt-out US
		country_header CF-IPCountry
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String()})
	st := newClient(t).get(g.url("/_consent/state"), "CF-IPCountry", "US").json(t)
	if st.Regime != "opt-in" {
		t.Errorf("country header believed from an untrusted client: %+v", st)
	}
}

func TestReconsentAfterPolicyChange(t *testing.T) {
	g, _ := start(t, `policy_version 1.9`)
	c := newClient(t)
	first := c.postJSON(g.url("/_consent/state"), `{"all":true}`).json(t)
	up := newUpstream(t)
	cfg := func(block string) string {
		g.vars["UPSTREAM"] = up.Listener.Addr().String()
		return gatewayCaddyfile(block)
	}
	// A minor version that does not require re-consent keeps the decision.
	if code, body := g.reload(cfg(`policy_version 1.10`)); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided || st.PolicyVersion != "1.9" {
		t.Fatalf("decision lost without reconsent: %+v", st)
	}
	if code, body := g.reload(cfg("policy_version 2.0\n\t\treconsent_since 2.0")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	st := c.get(g.url("/_consent/state")).json(t)
	if st.Decided || st.ID != "" || st.PolicyVersion != "2.0" || len(st.Granted) != 1 {
		t.Fatalf("stale decision still counts: %+v", st)
	}
	again := c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`).json(t)
	if again.ID != first.ID || again.PolicyVersion != "2.0" {
		t.Fatalf("re-consent: %+v (want the same consent id %s)", again, first.ID)
	}
	recs, _ := g.store().Records("127.0.0.1", first.ID)
	if len(recs) != 2 || recs[0].PolicyVersion != "1.9" || recs[1].PolicyVersion != "2.0" {
		t.Errorf("records: %+v", recs)
	}
}

func TestReloadAndRestartKeepStoreAndKeys(t *testing.T) {
	g, up := start(t, ``)
	c := newClient(t)
	st := c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`).json(t)
	g.vars["UPSTREAM"] = up.Listener.Addr().String()

	// Admin POST /load with a changed config: the store stays open and usable.
	for i, block := range []string{`policy_url /privacy`, `lifetime 30d`, ``} {
		if code, body := g.reload(gatewayCaddyfile(block)); code != 200 {
			t.Fatalf("reload %d: %d %s", i, code, body)
		}
		if got := c.get(g.url("/_consent/state")).json(t); !got.Decided || got.ID != st.ID {
			t.Fatalf("after reload %d: %+v", i, got)
		}
		if r := c.postJSON(g.url("/_consent/state"), `{"all":true}`); r.status != 200 {
			t.Fatalf("decision after reload %d: %d %s", i, r.status, r.body)
		}
	}
	n := g.countRecords()
	if n != 4 {
		t.Fatalf("records after reloads = %d", n)
	}

	// Stop and start again (a restart): records and keys survive.
	if err := caddy_Stop(); err != nil {
		t.Fatal(err)
	}
	g.load(gatewayCaddyfile(``))
	if got := g.countRecords(); got != n {
		t.Fatalf("records after restart = %d, want %d", got, n)
	}
	if got := c.get(g.url("/_consent/state")).json(t); !got.Decided || got.ID != st.ID {
		t.Fatalf("token after restart: %+v", got)
	}
}

func TestKeyFileSharedByNodesAndRotation(t *testing.T) {
	dir := t.TempDir()
	k1, _ := token.GenerateKey()
	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte(token.MarshalKey(k1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, up := start(t, ``, "key_file "+keyFile)
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	g.vars["UPSTREAM"] = up.Listener.Addr().String()

	// Another node: other storage, same key file.
	if err := caddy_Stop(); err != nil {
		t.Fatal(err)
	}
	g.storage = filepath.Join(dir, "node2")
	g.load(gatewayCaddyfile(``))
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("token from node 1 rejected by node 2 sharing the key file")
	}
	// Rotation: append a key; old tokens still verify, new ones use the new key.
	k2, _ := token.GenerateKey()
	if err := os.WriteFile(keyFile, []byte(token.MarshalKey(k1)+"\n"+token.MarshalKey(k2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := g.reload(gatewayCaddyfile(`policy_url /p`)); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("old token rejected after rotation")
	}
	r := newClient(t).postJSON(g.url("/_consent/state"), `{"all":true}`)
	cl, err := token.Decode(g.app().Keyring(), "127.0.0.1", r.setCookie("cg_consent").Value)
	if err != nil || cl.KeyID != k2.ID {
		t.Fatalf("new token key %d (%v), want %d", cl.KeyID, err, k2.ID)
	}
	if _, err := g.app().RotateKey(); err == nil {
		t.Error("RotateKey with a key file succeeded")
	}
}

func TestGeneratedKeysRotate(t *testing.T) {
	g, _ := start(t, ``)
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	k, err := g.app().RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("token signed before rotation rejected")
	}
	// The rotated key persists in the store across a reload.
	if code, body := g.reload(gatewayCaddyfile(`policy_url /x`)); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if g.app().Keyring().Signing().ID != k.ID {
		t.Fatal("rotated key does not sign after reload")
	}
	if st := c.get(g.url("/_consent/state")).json(t); !st.Decided {
		t.Fatal("token signed before rotation rejected after reload")
	}
}

func TestZeroConfig(t *testing.T) {
	up := newUpstream(t, trackerCookies...)
	g := startGateway(t, `{
	admin {{ADMIN}}
	auto_https off
	persist_config off
}
http://127.0.0.1:{{PORT}} {
	consent
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String()})
	c := newClient(t)
	if r := c.postJSON(g.url("/_consent/state"), `{"all":true}`); r.status != 200 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	dataDir := os.Getenv("XDG_DATA_HOME")
	if _, err := os.Stat(filepath.Join(dataDir, "caddy", "consentgate")); err != nil {
		t.Fatalf("store not under Caddy's data directory: %v", err)
	}
}

func TestSettingsFormSaveWithNothingTicked(t *testing.T) {
	g, _ := start(t, ``)
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	r := c.do(http.MethodPost, g.url("/_consent/state"), "application/x-www-form-urlencoded", "action=save&return=/settings")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/settings" {
		t.Fatalf("save: %d %s", r.status, r.body)
	}
	if st := c.get(g.url("/_consent/state")).json(t); !slices.Equal(st.Granted, []string{"necessary"}) {
		t.Fatalf("save with nothing ticked granted %v", st.Granted)
	}
}

func TestAppTokenStaysAtTheGateway(t *testing.T) {
	g, up := start(t, ``)
	app := newClient(t)
	app.c.Jar = nil
	tok := app.postJSON(g.url("/_consent/state"), `{"all":true}`, "Consent-Token", "new").header.Get("Consent-Token")
	app.get(g.url("/api/items"), "Consent-Token", tok)
	if got := up.lastHeader().Get("Consent-Token"); got != "" {
		t.Fatalf("upstream received the consent token %q", got)
	}
	// GPC newly seen on an app token: recorded once, and the app gets the
	// reissued token in the header (it has no cookie jar).
	r := app.get(g.url("/api/items"), "Consent-Token", tok, "Sec-GPC", "1")
	next := r.header.Get("Consent-Token")
	if next == "" || next == tok {
		t.Fatalf("reissued token not sent to the app: %q", next)
	}
	app.get(g.url("/api/items"), "Consent-Token", next, "Sec-GPC", "1")
	app.get(g.url("/api/items"), "Consent-Token", next, "Sec-GPC", "1")
	st := app.get(g.url("/_consent/state"), "Consent-Token", next, "Sec-GPC", "1").json(t)
	recs, _ := g.store().Records("127.0.0.1", st.ID)
	if len(recs) != 2 || recs[1].Method != "gpc" {
		t.Fatalf("want one grant and one gpc record, got %+v", recs)
	}
	// The revision by signal does not extend the decision.
	first, _ := token.Decode(g.app().Keyring(), "127.0.0.1", tok)
	second, _ := token.Decode(g.app().Keyring(), "127.0.0.1", next)
	if !first.Issued.Equal(second.Issued) {
		t.Errorf("GPC revision moved the issue time %v -> %v", first.Issued, second.Issued)
	}
}

func TestDefaultRegimeWithGeoIPAlone(t *testing.T) {
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, db, map[string]geotest.Entry{"203.0.113.0/24": {Country: "US"}})
	g, _ := start(t, `default_regime opt-out`, "geoip "+db)
	if st := newClient(t).get(g.url("/_consent/state"), "X-Forwarded-For", "203.0.113.9").json(t); st.Regime != "opt-out" {
		t.Errorf("known country with default_regime opt-out: %+v", st)
	}
	if st := newClient(t).get(g.url("/_consent/state"), "X-Forwarded-For", "192.0.2.1").json(t); st.Regime != "opt-in" {
		t.Errorf("unknown country must get opt-in: %+v", st)
	}
}

func TestGeoIPHotReload(t *testing.T) {
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.Write(t, db, map[string]geotest.Entry{"203.0.113.0/24": {Country: "DE"}})
	g, _ := start(t, `regime opt-out US`, "geoip "+db)
	if st := newClient(t).get(g.url("/_consent/state"), "X-Forwarded-For", "203.0.113.9").json(t); st.Regime != "opt-in" {
		t.Fatalf("before: %+v", st)
	}
	geotest.Write(t, db, map[string]geotest.Entry{"203.0.113.0/24": {Country: "US"}, "198.51.100.0/24": {Country: "FR"}})
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, future, future); err != nil {
		t.Fatal(err)
	}
	// The app's watcher polls every minute; trigger the same check now.
	if changed, err := g.app().Geo().ReloadIfChanged(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if st := newClient(t).get(g.url("/_consent/state"), "X-Forwarded-For", "203.0.113.9").json(t); st.Regime != "opt-out" {
		t.Fatalf("after reload: %+v", st)
	}
}

func TestMetricsCountWhatWasHeldBack(t *testing.T) {
	g, _ := start(t, ``)
	c := newClient(t)
	c.get(g.url("/"), "Cookie", "_fbp=1; mystery=2; session=3")
	c.postJSON(g.url("/_consent/state"), `{"none":true}`)
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`consentgate_cookies_blocked_total{category="marketing",direction="request",site="any"} 1`,
		`consentgate_cookies_blocked_total{category="marketing",direction="response",site="any"} 1`,
		`consentgate_unclassified_cookies_total{site="any"}`,
		`consentgate_decisions_recorded_total{method="api",site="any"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestDecisionRateLimit(t *testing.T) {
	g, _ := start(t, `rate_limit 3 1h`)
	c := newClient(t)
	for i := range 3 {
		if r := c.postJSON(g.url("/_consent/state"), `{"all":true}`); r.status != 200 {
			t.Fatalf("decision %d: %d %s", i, r.status, r.body)
		}
	}
	n := g.countRecords()
	r := c.postJSON(g.url("/_consent/state"), `{"none":true}`)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "too many") || r.setCookie("cg_consent") != nil {
		t.Fatalf("over the limit: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := c.do(http.MethodDelete, g.url("/_consent/state"), "", ""); r.status != http.StatusTooManyRequests {
		t.Fatalf("withdrawal over the limit: %d", r.status)
	}
	if g.countRecords() != n {
		t.Fatal("a limited request was recorded")
	}
	// Another client is not affected.
	if r := c.postJSON(g.url("/_consent/state"), `{"all":true}`, "X-Forwarded-For", "198.51.100.4"); r.status != 200 {
		t.Fatalf("another client: %d", r.status)
	}
}
