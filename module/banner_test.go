package consentgate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/consentgate/consentgate/static"
)

const trackedPage = `<!doctype html>
<html lang="%s">
<head>
<meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST"></script>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date()); gtag('config', 'G-TEST');</script>
<script>!function(f,b,e,v){}(window, document,'script','https://connect.facebook.net/en_US/fbevents.js'); fbq('init', '123'); fbq('track', 'PageView');</script>
<script src="/app.js"></script>
</head>
<body>
<h1>Welcome</h1>
<iframe width="560" height="315" src="https://www.youtube.com/embed/dQw4w9WgXcQ" allowfullscreen></iframe>
<noscript><img height="1" width="1" src="https://www.facebook.com/tr?id=123&ev=PageView&noscript=1"/></noscript>
<img src="/logo.png" alt="logo">
</body>
</html>`

// htmlUpstream serves the tracked page (gzip-compressed when asked and
// allowed), a JSON document and a plain page.
func htmlUpstream(t *testing.T, lang string) *httptest.Server {
	page := fmt.Sprintf(trackedPage, lang)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/data.json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"html":"<script src=\"https://www.googletagmanager.com/x\"></script>"}`)
			return
		case "/range.html":
			http.ServeContent(w, r, "range.html", time.Time{}, strings.NewReader(page))
			return
		case "/tricky":
			// Tracker URLs written as browsers still load them, and a
			// <base> that points relative URLs at a tracker.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><html><head><base href="https://www.youtube.com/">`+
				`<script src="ht&#9;tps://www.googletagmanager%2Ecom/gtag/js?id=G-X"></script>`+
				`<script src="https:///connect.facebook.net/en_US/fbevents.js"></script></head>`+
				`<body><iframe src="embed/abc"></iframe><img src="/&Tab;/www.facebook.com/tr?id=1"><p>end</p></body></html>`)
			return
		case "/odd-type":
			// Upper case and a parameter that does not parse: still a
			// page a browser renders, so still rewritten.
			w.Header().Set("Content-Type", "TEXT/HTML; charset")
			fmt.Fprint(w, page)
			return
		case "/gz":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			fmt.Fprint(zw, page)
			zw.Close()
			return
		case "/enc/gzip", "/enc/x-gzip", "/enc/deflate", "/enc/deflate-raw", "/enc/br", "/enc/zstd", "/enc/compress":
			// Compressed whatever the request asked for, as some
			// upstreams do.
			enc := strings.TrimPrefix(r.URL.Path, "/enc/")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Encoding", strings.TrimSuffix(enc, "-raw"))
			var zw io.WriteCloser
			switch enc {
			case "gzip", "x-gzip":
				zw = gzip.NewWriter(w)
			case "deflate":
				zw = zlib.NewWriter(w)
			case "deflate-raw":
				zw, _ = flate.NewWriter(w, flate.DefaultCompression)
			case "br":
				zw = brotli.NewWriter(w)
			case "zstd":
				zw, _ = zstd.NewWriter(w)
			case "compress":
				// Not a real LZW stream: the gateway must not touch it.
				w.Write([]byte("\x1f\x9d" + page))
				return
			}
			if r.URL.Query().Has("corrupt") {
				// A page that is not in the encoding it claims.
				fmt.Fprint(w, page)
				return
			}
			fmt.Fprint(zw, page)
			zw.Close()
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		w.Header().Set("ETag", `"v1"`)
		w.Header().Add("Set-Cookie", "_ga=GA1.1.1.1; Path=/")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func startHTML(t *testing.T, lang, block string) *gateway {
	up := htmlUpstream(t, lang)
	return startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent {
		policy_url /privacy
		`+block+`
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
}

var (
	neutralGTM     = `<script type="text/plain" data-consent="analytics" data-cg-src="https://www.googletagmanager.com/gtag/js?id=G-TEST" async="">`
	neutralInline  = `<script type="text/plain" data-consent="analytics">window.dataLayer`
	neutralPixel   = `<script type="text/plain" data-consent="marketing">!function`
	neutralYouTube = `<iframe src="about:blank" hidden data-cg-src="https://www.youtube.com/embed/dQw4w9WgXcQ" data-consent="marketing" data-cg-service="YouTube"`
	embedHolder    = `<div class="cg-embed" data-consent="marketing" data-cg-service="YouTube"></div>`
)

func TestHTMLInjectionAndBlocking(t *testing.T) {
	g := startHTML(t, "en", "")
	c := newClient(t)
	r := c.get(g.url("/"), "Accept", "text/html")
	if r.status != 200 {
		t.Fatalf("page: %d", r.status)
	}
	for _, want := range []string{neutralGTM, neutralInline, neutralPixel, neutralYouTube, embedHolder, `<script src="/app.js"></script>`, `<img src="/logo.png" alt="logo">`, `<h1>Welcome</h1>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(r.body, "facebook.com/tr") {
		t.Error("tracking pixel not removed")
	}
	inj := regexp.MustCompile(`<link rel="stylesheet" href="/_consent/(banner\.[0-9a-f]{12}\.css)"><script type="application/json" id="consentgate-config">.*</script><script src="/_consent/(banner\.[0-9a-f]{12}\.js)" defer></script></head>`).FindStringSubmatch(r.body)
	if inj == nil {
		t.Fatalf("banner not injected before </head>:\n%s", r.body)
	}
	if !strings.Contains(r.body, `"show":true`) || !strings.Contains(r.body, `"lang":"en"`) || !strings.Contains(r.body, `"accept_all":"Accept all"`) {
		t.Error("config lacks state, language or strings")
	}
	// The page ends before the first flush: it is sent with its own,
	// corrected length.
	if r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) || r.header.Get("ETag") != "" || r.header.Get("Cache-Control") != "private, no-cache" || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Cookie") {
		t.Errorf("headers: Content-Length %q ETag %q Cache-Control %q Vary %q", r.header.Get("Content-Length"), r.header.Get("ETag"), r.header.Get("Cache-Control"), r.header.Values("Vary"))
	}
	if r := c.get(g.url("/tricky"), "Accept", "text/html"); strings.Count(r.body, "data-cg-src=") != 3 || strings.Contains(r.body, "<img") || !strings.Contains(r.body, "<p>end</p>") {
		t.Errorf("tracker URLs in browser spellings or behind <base> not held back:\n%s", r.body)
	} else if origin := strings.TrimSuffix(g.url(""), "/"); !strings.Contains(r.body, `<link rel="stylesheet" href="`+origin+`/_consent/banner.`) ||
		!strings.Contains(r.body, `"api":"`+origin+`/_consent/"`) || strings.Contains(r.body, `"/_consent/`) {
		// The page's <base> points at YouTube: the banner's own URLs must
		// name the gateway, or they would follow it.
		t.Errorf("banner URLs under a foreign <base> are relative:\n%s", r.body)
	}
	if r := c.get(g.url("/odd-type"), "Accept", "text/html"); !strings.Contains(r.body, neutralGTM) || !strings.Contains(r.body, "consentgate-config") {
		t.Errorf("page with an odd Content-Type not rewritten:\n%s", r.body)
	}
	// A conditional request still gets the page rewritten for the current
	// state, never a 304 for a page rewritten for an earlier one.
	if r := c.get(g.url("/range.html"), "Accept", "text/html", "If-Modified-Since", "Mon, 01 Jan 2035 00:00:00 GMT"); r.status != 200 || !strings.Contains(r.body, "consentgate-config") {
		t.Errorf("conditional page request: %d", r.status)
	}
	if got := setCookieNames(r.header); len(got) != 0 {
		t.Errorf("Set-Cookie %v", got)
	}
	// The assets are served under their hashed names, cached for a year.
	for i, ct := range map[int]string{1: "text/css", 2: "text/javascript"} {
		a := c.get(g.url("/_consent/" + inj[i]))
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), ct) || !strings.Contains(a.header.Get("Cache-Control"), "immutable") {
			t.Errorf("%s: %d %q %q", inj[i], a.status, a.header.Get("Content-Type"), a.header.Get("Cache-Control"))
		}
	}
	if r := c.get(g.url("/_consent/banner.000000000000.js")); r.status != 404 {
		t.Errorf("unknown asset: %d", r.status)
	}

	// Compressed upstream answers are decoded and rewritten too.
	gz := c.get(g.url("/gz"), "Accept", "text/html")
	if !strings.Contains(gz.body, neutralGTM) || !strings.Contains(gz.body, `id="consentgate-config"`) || gz.header.Get("Content-Encoding") != "" {
		t.Errorf("gzip page not rewritten: %q", gz.header.Get("Content-Encoding"))
	}

	// And in every encoding browsers accept, whatever the request asked
	// for; an encoding the gateway cannot read passes untouched.
	for _, enc := range []string{"gzip", "x-gzip", "deflate", "deflate-raw", "br", "zstd"} {
		r := c.get(g.url("/enc/"+enc), "Accept", "text/html")
		if r.status != 200 || !strings.Contains(r.body, neutralGTM) || !strings.Contains(r.body, `id="consentgate-config"`) || r.header.Get("Content-Encoding") != "" {
			t.Errorf("%s page not decoded and rewritten: %d %q", enc, r.status, r.header.Get("Content-Encoding"))
		}
	}
	// A body that is not in the encoding it claims ends the response
	// with an error: never the raw page, never a hang.
	for _, enc := range []string{"gzip", "deflate", "br", "zstd"} {
		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, g.url("/enc/"+enc+"?corrupt"), nil)
			req.Header.Set("Accept", "text/html")
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				done <- ""
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(body)
		}()
		if body := <-done; strings.Contains(body, `<script async src="https://www.googletagmanager.com`) {
			t.Errorf("%s: a body not in its encoding reached the client unrewritten", enc)
		}
	}
	if r := c.get(g.url("/enc/compress"), "Accept", "text/html"); r.header.Get("Content-Encoding") != "compress" || !strings.HasPrefix(r.body, "\x1f\x9d<!doctype") {
		t.Errorf("page in an unknown encoding changed: %q %q", r.header.Get("Content-Encoding"), r.body[:min(len(r.body), 20)])
	}

	// After accepting all, the page passes as the upstream wrote it, with
	// only what reopens the settings.
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	r = c.get(g.url("/"), "Accept", "text/html")
	if strings.Contains(r.body, `data-cg-src`) || !strings.Contains(r.body, `src="https://www.youtube.com/embed/dQw4w9WgXcQ"`) || !strings.Contains(r.body, "facebook.com/tr") {
		t.Error("granted page still rewritten")
	}
	if !strings.Contains(r.body, `"show":false`) || !strings.Contains(r.body, `"decided":true`) {
		t.Error("decided visitor's config wrong")
	}
	// Analytics only: GA runs, Meta and YouTube stay held back.
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	r = c.get(g.url("/"), "Accept", "text/html")
	if strings.Contains(r.body, neutralGTM) || !strings.Contains(r.body, neutralPixel) || !strings.Contains(r.body, neutralYouTube) {
		t.Error("analytics-only page rewritten wrongly")
	}
}

func TestHTMLPassesUntouched(t *testing.T) {
	g := startHTML(t, "en", "")
	c := newClient(t)
	page := fmt.Sprintf(trackedPage, "en")
	if r := c.get(g.url("/data.json")); strings.Contains(r.body, "data-cg") || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("JSON rewritten: %s", r.body)
	}
	if r := c.do(http.MethodHead, g.url("/"), "", ""); r.body != "" || r.header.Get("Content-Length") != fmt.Sprint(len(page)) {
		t.Errorf("HEAD changed: %q %q", r.body, r.header.Get("Content-Length"))
	}
	if r := c.get(g.url("/range.html"), "Range", "bytes=0-14", "Accept", "text/html"); r.status != 206 || r.body != "<!doctype html>" {
		t.Errorf("range answer changed: %d %q", r.status, r.body)
	}
}

func TestBannerOff(t *testing.T) {
	// Without the banner (a site with its own UI on the consent API),
	// refused trackers are still held back.
	g := startHTML(t, "en", "banner off")
	r := newClient(t).get(g.url("/"), "Accept", "text/html")
	if strings.Contains(r.body, "consentgate-config") || !strings.Contains(r.body, neutralGTM) {
		t.Error("banner off: want no banner and trackers still held back")
	}
	if strings.Contains(r.body, "__consentgateGCM") {
		t.Error("banner off: the site sends its own Consent Mode default, not the gateway")
	}
}

// consentModeDenied is the early Consent Mode default of a visitor who
// granted nothing.
const consentModeDenied = `<script>window.dataLayer=window.dataLayer||[];(function(){dataLayer.push(arguments)})('consent','default',{` +
	`ad_storage:'denied',ad_user_data:'denied',ad_personalization:'denied',analytics_storage:'denied',` +
	`functionality_storage:'denied',personalization_storage:'denied',security_storage:'granted'});window.__consentgateGCM=1</script>`

// TestConsentModeDefaultEarly checks the inline Consent Mode default comes
// right after <head>, before the page's own Google tag, with the visitor's
// state, and that the gateway's enforced policy lets it run.
func TestConsentModeDefaultEarly(t *testing.T) {
	g := startHTML(t, "en", "csp enforce")
	c := newClient(t)
	r := c.get(g.url("/"), "Accept", "text/html")
	if !strings.Contains(r.body, "<head>"+consentModeDenied+"\n<meta charset") {
		t.Fatalf("no denied Consent Mode default right after <head>:\n%s", r.body)
	}
	if strings.Count(r.body, "__consentgateGCM") != 1 {
		t.Error("Consent Mode default injected more than once")
	}
	if !strings.Contains(r.body, `"consent_mode":{"ad_personalization":"marketing","ad_storage":"marketing","ad_user_data":"marketing","analytics_storage":"analytics","functionality_storage":"preferences","personalization_storage":"preferences","security_storage":""}`) {
		t.Error("banner config lacks the Consent Mode table")
	}
	// Our policy allows inline scripts, so the snippet runs under it. A
	// hash or nonce in the list would make browsers ignore 'unsafe-inline'
	// and block the site's own inline scripts.
	csp := r.header.Get("Content-Security-Policy")
	scriptSrc, _, _ := strings.Cut(csp, ";")
	if !strings.HasPrefix(scriptSrc, "script-src ") || !strings.Contains(scriptSrc, "'unsafe-inline'") || strings.Contains(scriptSrc, "'sha") || strings.Contains(scriptSrc, "'nonce-") {
		t.Errorf("script-src does not allow the inline default (and the site's inline scripts): %s", csp)
	}

	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics","preferences"]}`)
	r = c.get(g.url("/"), "Accept", "text/html")
	want := strings.NewReplacer("analytics_storage:'denied'", "analytics_storage:'granted'",
		"functionality_storage:'denied'", "functionality_storage:'granted'",
		"personalization_storage:'denied'", "personalization_storage:'granted'").Replace(consentModeDenied)
	early, tag := strings.Index(r.body, "<head>"+want), strings.Index(r.body, "gtag('js'")
	if early < 0 || tag < 0 || early > tag {
		t.Errorf("analytics and preferences granted: want %s right after <head>, before the Google tag:\n%s", want, r.body)
	}
}

func TestSettingsPageWithoutJavaScript(t *testing.T) {
	g := startHTML(t, "en", "")
	c := newClient(t)
	r := c.get(g.url("/_consent/settings"))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("settings: %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{`<form method="post" action="/_consent/state">`, `name="granted" value="analytics"`, `value="necessary" checked disabled`, "You have not made a choice yet.", `href="/privacy"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("settings page lacks %s", want)
		}
	}
	if strings.Contains(r.body, "<script") {
		t.Error("settings page needs no script")
	}
	// Submit the form as a browser without JavaScript would.
	form := "return=%2F_consent%2Fsettings&action=save&granted=analytics&granted=preferences"
	r = c.do(http.MethodPost, g.url("/_consent/state"), "application/x-www-form-urlencoded", form, "Origin", "http://127.0.0.1:"+fmt.Sprint(g.port))
	if r.status != 303 || r.header.Get("Location") != "/_consent/settings" {
		t.Fatalf("form: %d %q", r.status, r.header.Get("Location"))
	}
	r = c.get(g.url("/_consent/settings"))
	st := c.get(g.url("/_consent/state")).json(t)
	for _, want := range []string{st.ID, `value="analytics" checked`, `value="preferences" checked`, "Policy version", `value="withdraw"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("decided settings page lacks %q", want)
		}
	}
	if strings.Contains(r.body, `value="marketing" checked`) {
		t.Error("marketing shown as granted")
	}
	// Withdraw without JavaScript.
	r = c.do(http.MethodPost, g.url("/_consent/state"), "application/x-www-form-urlencoded", "action=withdraw&return=%2F_consent%2Fsettings")
	if r.status != 303 {
		t.Fatalf("withdraw form: %d %s", r.status, r.body)
	}
	if st := c.get(g.url("/_consent/state")).json(t); len(st.Granted) != 1 {
		t.Errorf("after withdrawal: %+v", st)
	}
}

func TestBannerTextOverride(t *testing.T) {
	g := startHTML(t, "en", `text accept_all "Yes, fine"`)
	r := newClient(t).get(g.url("/"), "Accept", "text/html")
	if !strings.Contains(r.body, `"accept_all":"Yes, fine"`) {
		t.Error("text override not applied")
	}
	if s := newClient(t).get(g.url("/_consent/settings")); !strings.Contains(s.body, "Yes, fine") {
		t.Error("text override not on the settings page")
	}
}

func TestBannerLanguage(t *testing.T) {
	tr, err := static.Translations()
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) < 30 {
		t.Fatalf("%d translations, want at least 30", len(tr))
	}
	g := startHTML(t, "ru-RU", "")
	// The page's lang wins over the browser's Accept-Language.
	r := newClient(t).get(g.url("/"), "Accept", "text/html", "Accept-Language", "de")
	if !strings.Contains(r.body, `"lang":"ru"`) || !strings.Contains(r.body, `"accept_all":"`+tr["ru"]["accept_all"]+`"`) {
		t.Error("Russian page did not get Russian strings")
	}
	// The settings page follows Accept-Language.
	s := newClient(t).get(g.url("/_consent/settings"), "Accept-Language", "kk-KZ,kk;q=0.9,ru;q=0.8")
	if !strings.Contains(s.body, `<html lang="kk"`) || !strings.Contains(s.body, tr["kk"]["settings_title"]) {
		t.Error("Kazakh settings page not in Kazakh")
	}
	s = newClient(t).get(g.url("/_consent/settings"), "Accept-Language", "he")
	if !strings.Contains(s.body, `dir="rtl"`) {
		t.Error("Hebrew settings page not right to left")
	}
}

func TestContentSecurityPolicyPerVisitor(t *testing.T) {
	g := startHTML(t, "en", "csp enforce\n\t\tcsp_sources https://cdn.example.com")
	c := newClient(t)
	r := c.get(g.url("/"), "Accept", "text/html")
	csp := strings.Join(r.header.Values("Content-Security-Policy"), " | ")
	for _, want := range []string{"script-src 'self'", "connect-src 'self'", "img-src 'self'", "frame-src 'self'", "https://cdn.example.com"} {
		if !strings.Contains(csp, want) {
			t.Errorf("policy lacks %q: %s", want, csp)
		}
	}
	for _, refused := range []string{"googletagmanager.com", "google-analytics.com", "facebook", "youtube"} {
		if strings.Contains(csp, refused) {
			t.Errorf("refused host %s allowed: %s", refused, csp)
		}
	}
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	csp = c.get(g.url("/"), "Accept", "text/html").header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "https://www.googletagmanager.com") || !strings.Contains(csp, "https://*.google-analytics.com") || strings.Contains(csp, "youtube") {
		t.Errorf("analytics granted: %s", csp)
	}
	// Non-HTML answers get no per-visitor policy.
	if r := c.get(g.url("/data.json")); r.header.Get("Content-Security-Policy") != "" {
		t.Error("policy on a JSON answer")
	}
}

func TestContentSecurityPolicyKeepsUpstreamPolicy(t *testing.T) {
	page := fmt.Sprintf(trackedPage, "en")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; object-src 'none'")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent {
		csp report
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
	r := newClient(t).get(g.url("/"), "Accept", "text/html")
	if got := r.header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "default-src 'self'; object-src 'none'" {
		t.Errorf("upstream policy changed: %q", got)
	}
	if ro := r.header.Get("Content-Security-Policy-Report-Only"); !strings.Contains(ro, "script-src 'self'") {
		t.Errorf("report-only policy missing: %q", ro)
	}
}

// TestBannerBudget keeps banner.js and banner.css within 8 KiB gzipped
// together (translations are sent separately, one language per page).
func TestBannerBudget(t *testing.T) {
	var total int
	for _, name := range []string{"banner.js", "banner.css"} {
		body, err := static.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		t.Logf("%s: %d bytes, %d gzipped", name, len(body), buf.Len())
		fmt.Printf("banner budget: %s %d bytes raw, %d gzipped\n", name, len(body), buf.Len())
		total += buf.Len()
	}
	fmt.Printf("banner budget: js+css %d bytes gzipped (limit 8192)\n", total)
	if total > 8<<10 {
		t.Fatalf("banner js+css are %d bytes gzipped, over the 8 KiB budget", total)
	}
}

func TestBannerAsksAgainAfterPolicyChange(t *testing.T) {
	up := htmlUpstream(t, "en")
	vars := map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""}
	site := func(block string) string {
		return globalOpts + `
http://127.0.0.1:{{PORT}} {
	consent {
		policy_url /privacy
		` + block + `
	}
	reverse_proxy {{UPSTREAM}}
}
`
	}
	g := startGateway(t, site("policy_version 1"), vars)
	c := newClient(t)
	c.postJSON(g.url("/_consent/state"), `{"all":true}`)
	if r := c.get(g.url("/"), "Accept", "text/html"); !strings.Contains(r.body, `"show":false`) || !strings.Contains(r.body, `"reconsent":false`) {
		t.Fatal("decided visitor asked again before the policy changed")
	}
	if code, body := g.reload(site("policy_version 2\n\t\treconsent_since 2")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	r := c.get(g.url("/"), "Accept", "text/html")
	if !strings.Contains(r.body, `"show":true`) || !strings.Contains(r.body, `"reconsent":true`) || !strings.Contains(r.body, `"policy_url":"/privacy"`) {
		t.Error("banner not shown again with the policy-changed notice")
	}
	if !strings.Contains(r.body, neutralGTM) {
		t.Error("stale consent still lets trackers run")
	}
	if s := c.get(g.url("/_consent/settings")); !strings.Contains(s.body, "Our privacy policy has changed") {
		t.Error("settings page does not say the policy changed")
	}
}

// TestHTMLStreams proves the first bytes of a page, with the banner, reach
// the browser while the upstream is still writing the rest.
func TestHTMLStreams(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><html><head><title>slow</title></head><body><p>first part</p>`)
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, `<p>second part</p></body></html>`)
	}))
	t.Cleanup(up.Close)
	defer close(release)
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent
	reverse_proxy {{UPSTREAM}} {
		flush_interval -1
	}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
	req, _ := http.NewRequest(http.MethodGet, g.url("/"), nil)
	req.Header.Set("Accept", "text/html")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "first part") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("stream ended before the first part: %v (%q)", err, got.String())
		}
	}
	if !strings.Contains(got.String(), `id="consentgate-config"`) {
		t.Errorf("first bytes lack the banner: %q", got.String())
	}
}

// consentProxy starts a gateway with a bare consent handler in front of
// up, and closes up with the test.
func consentProxy(t *testing.T, up *httptest.Server) *gateway {
	t.Cleanup(up.Close)
	return startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
}

// TestHTMLUnderEncode: with encode around the consent handler, a
// rewritten page is compressed (the handler sends its Content-Length,
// encode replaces it) and decodes to the rewritten page.
func TestHTMLUnderEncode(t *testing.T) {
	up := htmlUpstream(t, "en")
	g := startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	encode gzip
	consent
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
	req, _ := http.NewRequest(http.MethodGet, g.url("/"), nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), neutralGTM) || !strings.Contains(string(body), `id="consentgate-config"`) || !strings.HasSuffix(strings.TrimSpace(string(body)), "</html>") {
		t.Errorf("compressed page is not the whole rewritten page:\n%s", body)
	}
}

// TestHTMLBrokenBodyNeverLooksWhole: an upstream page that breaks off
// is never delivered as a complete page: reverse_proxy flushes what it
// has before aborting (so the client sees the partial response), and the
// rewritten page then has no Content-Length and no final chunk, so the
// client's read fails instead of ending cleanly.
func TestHTMLBrokenBodyNeverLooksWhole(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "100000")
		fmt.Fprint(w, `<!doctype html><html><head><title>cut</title></head><body><p>only the start`)
		w.(http.Flusher).Flush()
		// Hijack and close: the body ends 99,9xx bytes short.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	g := consentProxy(t, up)
	req, _ := http.NewRequest(http.MethodGet, g.url("/"), nil)
	req.Header.Set("Accept", "text/html")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("a broken page read as whole: %d, Content-Length %q: %q", resp.StatusCode, resp.Header.Get("Content-Length"), body)
		}
	}
	// And the gateway goes on serving.
	if r := newClient(t).get(g.url("/_consent/state")); r.status != http.StatusOK {
		t.Fatalf("state after a broken page: %d", r.status)
	}
}

// TestHTMLSlowUpstream: pages whose upstream pauses mid-body (so that the
// flush timer fires while reverse_proxy still copies) arrive whole and
// rewritten, plain or gzip, with a Content-Length or without, small or
// past the 64 KiB buffer; under -race this checks that nothing writes to
// the client beside the handler's goroutine unsynchronised.
func TestHTMLSlowUpstream(t *testing.T) {
	big := strings.Repeat(`<p class="x">filler text</p>`, 3000) // ~84 KiB
	page := func(fill string) string {
		return `<!doctype html><html><head><title>slow</title>` +
			`<script async src="https://www.googletagmanager.com/gtag/js?id=G-S"></script></head><body>` + fill + `<p>the end</p></body></html>`
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := page("")
		if r.URL.Query().Has("big") {
			body = page(big)
		}
		w.Header().Set("Content-Type", "text/html")
		out := io.Writer(w)
		var zw *gzip.Writer
		if r.URL.Query().Has("gz") {
			w.Header().Set("Content-Encoding", "gzip")
			zw = gzip.NewWriter(w)
			out = zw
		} else if r.URL.Query().Has("len") {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		half := len(body) * 3 / 4
		io.WriteString(out, body[:half])
		if zw != nil {
			zw.Flush()
		}
		w.(http.Flusher).Flush()
		pause := 15 * time.Millisecond
		if d, err := time.ParseDuration(r.URL.Query().Get("pause")); err == nil {
			pause = d
		}
		time.Sleep(pause)
		io.WriteString(out, body[half:])
		if zw != nil {
			zw.Close()
		}
	}))
	g := consentProxy(t, up)
	c := newClient(t)
	queries := []string{"len", "len&big", "", "big", "gz", "gz&big"}
	// Pauses around the flush timer's delay, so that it fires now before,
	// now after reverse_proxy's last write.
	for i := range 40 {
		queries = append(queries, fmt.Sprintf("len&pause=%dus", 1000+i*75))
	}
	for _, q := range queries {
		r := c.get(g.url("/?"+q), "Accept", "text/html")
		if r.status != 200 || !strings.HasSuffix(r.body, "<p>the end</p></body></html>") || !strings.Contains(r.body, `data-cg-src="https://www.googletagmanager.com/gtag/js?id=G-S"`) {
			t.Errorf("?%s: %d, %d bytes, not whole or not rewritten", q, r.status, len(r.body))
		}
		if cl := r.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(r.body)) {
			t.Errorf("?%s: Content-Length %s for %d bytes", q, cl, len(r.body))
		}
	}
}

// TestPageExpiresRefusedCookies: cookies of refused categories that the
// browser still holds (set by a script, or before the gateway was put in
// front) are stripped from the request and expired by the next page; a
// non-HTML answer leaves the jar alone, and allowed cookies stay.
func TestPageExpiresRefusedCookies(t *testing.T) {
	g := startHTML(t, "en", "")
	c := newClient(t)
	jar := "_ga=GA1.1.1.1; _fbp=fb.1.1; session=abc"
	page := c.get(g.url("/"), "Accept", "text/html", "Cookie", jar)
	got := strings.Join(page.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"_ga=; Path=/; Max-Age=0", "_fbp=; Path=/; Max-Age=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("page does not expire %q: %s", want, got)
		}
	}
	if strings.Contains(got, "session=;") {
		t.Errorf("page expires a necessary cookie: %s", got)
	}
	if data := c.get(g.url("/data.json"), "Cookie", jar); strings.Contains(strings.Join(data.header.Values("Set-Cookie"), "\n"), "Max-Age=0") {
		t.Errorf("non-HTML answer expires cookies: %v", data.header.Values("Set-Cookie"))
	}
	// Once analytics is granted, _ga stays.
	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	page = c.get(g.url("/"), "Accept", "text/html", "Cookie", "_ga=GA1.1.1.1; _fbp=fb.1.1")
	got = strings.Join(page.header.Values("Set-Cookie"), "\n")
	if strings.Contains(got, "_ga=;") || !strings.Contains(got, "_fbp=; Path=/; Max-Age=0") {
		t.Errorf("after granting analytics: %s", got)
	}
}

// TestBannerDecidedConfig: a visitor who has decided gets only what
// reopens the settings; the full config comes from a cacheable endpoint
// without visitor data.
func TestBannerDecidedConfig(t *testing.T) {
	g := startHTML(t, "en", "")
	c := newClient(t)
	configOf := func(body string) string {
		t.Helper()
		m := regexp.MustCompile(`<script type="application/json" id="consentgate-config">(.*?)</script>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no config in page:\n%s", body)
		}
		return m[1]
	}
	desc := "Count visits and measure how the site is used"
	full := configOf(c.get(g.url("/"), "Accept", "text/html").body)
	if !strings.Contains(full, desc) || !strings.Contains(full, `"show":true`) || strings.Contains(full, "config_url") {
		t.Errorf("undecided visitor's config is not the full one: %s", full)
	}

	c.postJSON(g.url("/_consent/state"), `{"granted":["analytics"]}`)
	lite := configOf(c.get(g.url("/"), "Accept", "text/html").body)
	t.Logf("config: undecided %d bytes, decided %d bytes", len(full), len(lite))
	if len(lite) >= 1024 {
		t.Errorf("decided visitor's config is %d bytes, want under 1 KiB: %s", len(lite), lite)
	}
	for _, want := range []string{`"show":false`, `"decided":true`, `"analytics"`, `"reopen":"Cookie settings"`, `"analytics_storage":"analytics"`} {
		if !strings.Contains(lite, want) {
			t.Errorf("decided visitor's config lacks %s: %s", want, lite)
		}
	}
	if strings.Contains(lite, desc) || strings.Contains(lite, `"accept_all"`) || strings.Contains(lite, `"services"`) {
		t.Errorf("decided visitor's config carries the full banner: %s", lite)
	}
	u := regexp.MustCompile(`"config_url":"(/_consent/config\.en\.[0-9a-f]{12}\.json)"`).FindStringSubmatch(lite)
	if u == nil {
		t.Fatalf("no config_url: %s", lite)
	}

	// The endpoint answers the full config, the same for every visitor.
	for _, cl := range []*client{c, newClient(t)} {
		r := cl.get(g.url(u[1]))
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("config: %d %q", r.status, r.header.Get("Content-Type"))
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "public") || !strings.Contains(cc, "max-age=") {
			t.Errorf("config Cache-Control %q", cc)
		}
		if got := setCookieNames(r.header); len(got) != 0 || r.header.Get("Vary") != "" {
			t.Errorf("config Set-Cookie %v, Vary %q", got, r.header.Get("Vary"))
		}
		if !strings.Contains(r.body, desc) || !strings.Contains(r.body, `"accept_all":"Accept all"`) || !strings.Contains(r.body, `"policy_url":"/privacy"`) {
			t.Errorf("config is not the full one: %s", r.body)
		}
		for _, visitor := range []string{`"state"`, `"decided"`, `"granted"`, `"id"`} {
			if strings.Contains(r.body, visitor) {
				t.Errorf("config carries visitor data %s", visitor)
			}
		}
		if etag := r.header.Get("ETag"); etag == "" {
			t.Error("config has no ETag")
		} else if nm := cl.get(g.url(u[1]), "If-None-Match", etag); nm.status != 304 {
			t.Errorf("config revalidation: %d", nm.status)
		}
	}
	// An old hash still answers, but must be revalidated; an unknown
	// language is not found.
	if r := c.get(g.url("/_consent/config.en.000000000000.json")); r.status != 200 || !strings.Contains(r.header.Get("Cache-Control"), "no-cache") {
		t.Errorf("old config name: %d %q", r.status, r.header.Get("Cache-Control"))
	}
	if r := c.get(g.url("/_consent/config.xx.000000000000.json")); r.status != 404 {
		t.Errorf("unknown config language: %d", r.status)
	}
}

// TestMetricsCountHeldElements: what a page's rewriting held back is
// counted per element in Prometheus: three scripts, the YouTube embed
// and the Meta pixel for each request of the tracked page. (The gateway's
// settling requests before it fetch the same page: they must have been
// counted too by the time they were read.)
func TestMetricsCountHeldElements(t *testing.T) {
	g := startHTML(t, "en", "")
	held := func() map[string]float64 {
		_, body := g.adminDo(http.MethodGet, "/metrics", "")
		m := map[string]float64{}
		for _, el := range []string{"script", "iframe", "img"} {
			re := regexp.MustCompile(`(?m)^consentgate_elements_blocked_total\{element="` + el + `",site="any"\} (\d+)$`)
			if sm := re.FindSubmatch(body); sm != nil {
				m[el], _ = strconv.ParseFloat(string(sm[1]), 64)
			}
		}
		return m
	}
	// Each page is counted by the time its client has read it: the
	// counting must not trail the page's last bytes.
	before := held()
	for i := range 3 {
		if r := newClient(t).get(g.url("/"), "Accept", "text/html"); r.status != 200 || !strings.Contains(r.body, neutralYouTube) {
			t.Fatalf("page: %d\n%s", r.status, r.body)
		}
		after := held()
		for el, want := range map[string]float64{"script": 3, "iframe": 1, "img": 1} {
			if got := after[el] - before[el]; got != want {
				t.Errorf("page %d: consentgate_elements_blocked_total{element=%q} grew by %v, want %v", i, el, got, want)
			}
		}
		before = after
	}
}
