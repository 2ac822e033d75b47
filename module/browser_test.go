package consentgate

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/consentgate/consentgate/static"
)

// Browser tests drive Debian's Chromium (headless, never a downloaded
// browser) against a real gateway in front of a real upstream, and check
// what a visitor sees and what really runs in the page.
//
// The "trackers" of the test page are local inline scripts that the
// catalogue classifies by signature (gtag('config' is analytics, fbq( is
// marketing). They prove they ran by setting window.gaRan / window.fbRan
// and the _ga / _fbp cookies, and load nothing. The YouTube iframe stays
// about:blank while marketing is refused; the pages where marketing gets
// granted embed a local iframe instead. Every request the browser makes is
// recorded and must go to 127.0.0.1; host-resolver-rules make any other
// host fail before it reaches the network.
//
// Without Chromium the tests skip, unless CONSENTGATE_BROWSER_TESTS=1 (as
// in CI), where they fail. CONSENTGATE_SCREENSHOTS=1 also writes the
// banner screenshots to static/screenshots.

const (
	browserTimeout = 30 * time.Second // bounds every browser tab
	pollTimeout    = 10 * time.Second
)

const browserPage = `<!doctype html>
<html lang="{{LANG}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="upstream-cookies" content="{{COOKIES}}">
<title>Corner Shop: {{TITLE}}</title>
<style>
body { margin: 0; font: 1.0625rem/1.6 Georgia, "DejaVu Serif", serif; color: #222; background: #faf7f2; }
header { display: flex; flex-wrap: wrap; gap: 1rem; justify-content: space-between; align-items: center; padding: 1rem 1.5rem; background: #2f4f4f; color: #fff; }
header a { color: #fff; margin-inline-start: 1rem; }
header strong { font-size: 1.25rem; }
main { max-width: 48rem; margin: 0 auto; padding: 1.5rem; }
iframe { border: 0; max-width: 100%; }
</style>
<script>window.appRan = true;</script>
{{CONSENT_MODE}}<script>
/* Google tag (gtag.js); in production it loads www.googletagmanager.com/gtag/js */
window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('js', new Date());
gtag('config', 'G-TEST');
window.gaRan = true;
document.cookie = "_ga=GA1.1.1.1; path=/";
</script>
<script>
/* Meta pixel */
window.fbq = window.fbq || function(){ (window.fbq.q = window.fbq.q || []).push(arguments); };
fbq('init', '123');
fbq('track', 'PageView');
window.fbRan = true;
document.cookie = "_fbp=fb.1.1.1; path=/";
</script>
</head>
<body>
<header><strong>Corner Shop</strong><nav><a href="{{NEXT}}">Offers</a><a href="/privacy">Privacy</a></nav></header>
<main>
<h1>{{TITLE}}</h1>
<p>Fresh bread every morning, cheese from the hills and coffee roasted down the road. Come in and have a look around.</p>
{{FRAME}}
<p>Open Monday to Saturday, 8:00 to 19:00.</p>
</main>
</body>
</html>`

// consentModeStub is what Google asks sites to put before their tags for
// Consent Mode: a dataLayer and a gtag that only queue commands. It loads
// and sends nothing, so the gateway leaves it alone and the banner finds a
// gtag before any choice. ?consent_mode=1 adds it to a page.
const consentModeStub = `<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}</script>
`

// trickyPage writes its trackers' URLs as a browser still loads them
// (tab and newline inside, percent-encoded host, extra slashes) and puts a
// <base> that points relative URLs at YouTube.
const trickyPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tricky</title>
<base href="https://www.youtube.com/">
<script src="ht&#9;tps://www.googletagmanager%2Ecom/gtag/js?id=G-X"></script>
<script src="https:///connect.facebook.net/en_US/fbevents.js"></script>
</head><body><h1>Tricky</h1>
<img src="/&Tab;/www.facebook.com/tr?id=1" alt="">
<image src="https://www.facebook.com/tr?id=2">
<iframe src="embed/abc" title="t"></iframe>
<input type="image" src="https://www.facebook.com/tr?id=3" alt="go">
</body></html>`

const (
	youTubeFrame = `<iframe width="560" height="315" src="https://www.youtube.com/embed/x" title="Shop tour" allowfullscreen></iframe>`
	localFrame   = `<iframe width="560" height="315" src="/embed" data-consent="marketing" title="Shop tour"></iframe>`
)

var langRE = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$`)

// browserNonce is the script nonce of the pages served with ?csp=nonce.
const browserNonce = "cg-test-nonce"

// browserUpstream serves the test site: / and /page2 embed YouTube, /shop
// and /shop2 a local player whose iframe is marked as marketing. ?lang=
// sets the page's language, ?consent_mode=1 adds the Consent Mode stub,
// ?csp=nonce sends a strict policy of the site's own (scripts from 'self'
// and those with its nonce, which its inline scripts carry). Every page
// sets a _ga cookie, as sites with Google Analytics on the server side do,
// and names the cookies it received in a <meta>.
func browserUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var title, next, frame string
		switch r.URL.Path {
		case "/":
			title, next, frame = "Welcome", "/page2", youTubeFrame
		case "/page2":
			title, next, frame = "This week's offers", "/", youTubeFrame
		case "/shop":
			title, next, frame = "Welcome", "/shop2", localFrame
		case "/shop2":
			title, next, frame = "This week's offers", "/shop", localFrame
		case "/privacy":
			title, next = "Privacy policy", "/"
		case "/embed":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, "a local video player")
			return
		case "/tricky":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, trickyPage)
			return
		default:
			http.NotFound(w, r)
			return
		}
		lang := r.URL.Query().Get("lang")
		if !langRE.MatchString(lang) {
			lang = "en"
		}
		var received []string
		for _, c := range r.Cookies() {
			received = append(received, c.Name) // names are tokens: nothing to escape
		}
		var stub string
		if r.URL.Query().Get("consent_mode") == "1" {
			stub = consentModeStub
		}
		body := strings.NewReplacer("{{LANG}}", lang, "{{TITLE}}", title, "{{NEXT}}", next, "{{FRAME}}", frame, "{{CONSENT_MODE}}", stub, "{{COOKIES}}", strings.Join(received, " ")).Replace(browserPage)
		if r.URL.Query().Get("csp") == "nonce" {
			w.Header().Set("Content-Security-Policy", "script-src 'self' 'nonce-"+browserNonce+"'")
			body = strings.ReplaceAll(body, "<script>", `<script nonce="`+browserNonce+`">`)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Add("Set-Cookie", "_ga=GA1.2.2.2; Path=/")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// startBrowserGateway starts the gateway in front of browserUpstream, with
// extra lines for its consent block.
func startBrowserGateway(t *testing.T, consent ...string) *gateway {
	chromiumPath(t) // skip before starting anything
	up := browserUpstream(t)
	var lines string
	for _, l := range consent {
		lines += "\n\t\t" + l
	}
	return startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent {
		policy_url /privacy`+lines+`
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
}

// chromiumPath finds the browser, or skips the test (fails it when
// CONSENTGATE_BROWSER_TESTS=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p := os.Getenv("CHROME_PATH"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/chromium", "/usr/bin/chromium-browser")
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CONSENTGATE_BROWSER_TESTS") == "1" {
		t.Fatalf("chromium not installed (looked at %s) and CONSENTGATE_BROWSER_TESTS=1: apt-get install chromium", strings.Join(candidates, ", "))
	}
	t.Skip("chromium not installed: apt-get install chromium to run browser tests")
	return ""
}

// tab is one headless Chromium with a fresh profile (so a fresh cookie
// jar), showing pages of the gateway g.
type tab struct {
	t   *testing.T
	g   *gateway
	ctx context.Context // bounded by browserTimeout

	mu        sync.Mutex
	console   []string
	requests  []string // METHOD URL of every request the page made
	redirects []string // status URL of every redirect the page followed
}

func openTab(t *testing.T, g *gateway) *tab {
	t.Helper()
	exe := chromiumPath(t)
	tb := &tab{t: t, g: g}
	// The whole browser lives at most twice as long as the tab's actions.
	life, cancelLife := context.WithTimeout(context.Background(), 2*browserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		// Nothing leaves 127.0.0.1: every other host fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1280, 800),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit, before TempDir goes
		cancelLife()
	})
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	if err := chromedp.Listen(browserCtx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok && ev.Request != nil {
			tb.requests = append(tb.requests, ev.Request.Method+" "+ev.Request.URL)
			if ev.RedirectResponse != nil {
				tb.redirects = append(tb.redirects, fmt.Sprintf("%d %s", ev.RedirectResponse.Status, ev.RedirectResponse.URL))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(browserCtx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m.String())
			tb.mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(browserCtx, browserTimeout)
	tb.ctx = ctx
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, r := range tb.requests {
			_, raw, _ := strings.Cut(r, " ")
			if u, err := url.Parse(raw); err != nil || (u.Scheme != "data" && u.Scheme != "about" && u.Scheme != "blob" && u.Hostname() != "127.0.0.1") {
				t.Errorf("the browser requested %s: nothing may leave 127.0.0.1", r)
			}
		}
		if t.Failed() {
			t.Logf("browser requests:\n  %s", strings.Join(tb.requests, "\n  "))
			t.Logf("browser console:\n  %s", strings.Join(tb.console, "\n  "))
		}
	})
	t.Cleanup(cancel) // runs first: stops pending actions before the checks above
	return tb
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// poll waits until a JavaScript expression is true.
func (tb *tab) poll(what, expr string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(pollTimeout))); err != nil {
		tb.t.Fatalf("waiting until %s (%s): %v", what, expr, err)
	}
}

func (tb *tab) navigate(path string) {
	tb.t.Helper()
	tb.do("opening "+path, chromedp.Navigate(tb.g.url(path)))
}

// cookies returns the browser's cookies for the gateway, HttpOnly ones
// included.
func (tb *tab) cookies() map[string]*network.Cookie {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.g.url("/")}})
	if err != nil {
		tb.t.Fatalf("reading cookies: %v", err)
	}
	out := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		out[c.Name] = c
	}
	return out
}

// noTrackingCookies checks the browser holds neither _ga nor _fbp.
func (tb *tab) noTrackingCookies(when string) {
	tb.t.Helper()
	jar := tb.cookies()
	for _, name := range []string{"_ga", "_fbp"} {
		if c, ok := jar[name]; ok {
			tb.t.Errorf("%s: the browser holds the tracking cookie %s=%s", when, name, c.Value)
		}
	}
}

func (tb *tab) trackers() (ga, fb bool) {
	tb.t.Helper()
	return eval[bool](tb, `window.gaRan === true`), eval[bool](tb, `window.fbRan === true`)
}

func (tb *tab) noTrackersRan(when string) {
	tb.t.Helper()
	if !eval[bool](tb, `window.appRan === true`) {
		tb.t.Fatalf("%s: the page's own script did not run", when)
	}
	if ga, fb := tb.trackers(); ga || fb {
		tb.t.Errorf("%s: tracking scripts ran (analytics %v, marketing %v)", when, ga, fb)
	}
}

// state is the banner's view of the visitor's consent.
func (tb *tab) state() State {
	tb.t.Helper()
	return eval[State](tb, `window.consentgate.get()`)
}

const (
	dialogSel = `#consentgate .cg-dialog:not(.cg-settings)`
	reopenSel = `#consentgate .cg-reopen`
)

// bannerButton selects a button of the banner's shown layer by its text.
func bannerButton(text string) chromedp.Search {
	if strings.ContainsRune(text, '"') {
		panic("button text with a quote: " + text)
	}
	return chromedp.Search(`//div[@id="consentgate"]/div[contains(concat(" ", normalize-space(@class), " "), " cg-layer ") and not(@hidden)]//button[normalize-space()="` + text + `"]`)
}

func (tb *tab) clickButton(text string) {
	tb.t.Helper()
	tb.do("clicking "+text, chromedp.Click(bannerButton(text)))
}

// waitBanner waits for the first layer and checks it is really shown: on
// screen, inside the viewport and not covered by the page.
func (tb *tab) waitBanner() {
	tb.t.Helper()
	tb.do("waiting for the banner", chromedp.WaitVisible(chromedp.CSS(dialogSel)))
	tb.waitAnimations()
	shown := eval[map[string]any](tb, `(() => {
		const root = document.getElementById('consentgate'), d = root && root.querySelector('.cg-dialog');
		if (!d) return {root: !!root};
		const r = d.getBoundingClientRect(), b = d.querySelector('.cg-btn'), br = b.getBoundingClientRect();
		const top = document.elementFromPoint(br.left + br.width / 2, br.top + br.height / 2);
		return {
			root: true,
			rootDisplay: getComputedStyle(root).display,
			display: getComputedStyle(d).display,
			visibility: getComputedStyle(d).visibility,
			inViewport: r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight,
			onTop: top === b || b.contains(top),
			modal: d.getAttribute('aria-modal'),
			role: d.getAttribute('role'),
		};
	})()`)
	want := map[string]any{"root": true, "rootDisplay": "block", "display": "block", "visibility": "visible", "inViewport": true, "onTop": true, "modal": "true", "role": "dialog"}
	for k, v := range want {
		if shown[k] != v {
			tb.t.Errorf("banner not shown properly: %s = %v, want %v (all: %v)", k, shown[k], v, shown)
		}
	}
}

// waitAnimations waits until the banner's entrance animation (it slides
// in from 1rem below its place) has ended, so boxes are measured where
// they stay.
func (tb *tab) waitAnimations() {
	tb.t.Helper()
	tb.poll("animations end", `document.getAnimations().every(a => a.playState != 'running')`)
}

// recordCSPViolations makes every page the tab opens from now on collect
// the Content-Security-Policy violations it reports, from before its first
// script, in window.cspViolations ("directive blocked-uri").
func (tb *tab) recordCSPViolations() {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.cspViolations = []; document.addEventListener('securitypolicyviolation', e => cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI));`,
	}); err != nil {
		tb.t.Fatalf("recording CSP violations: %v", err)
	}
}

// waitClosed waits until no layer of the banner is shown and only the
// reopen button is.
func (tb *tab) waitClosed() {
	tb.t.Helper()
	tb.do("waiting for the banner to close", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	tb.poll("no banner layer is shown", `![...document.querySelectorAll('#consentgate .cg-layer')].some(l => !l.hidden && l.getClientRects().length)`)
}

func translations(t *testing.T) map[string]map[string]string {
	t.Helper()
	tr, err := static.Translations()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestBrowserFirstVisit(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/")
	tb.waitBanner()
	if got := eval[string](tb, `document.getElementById('cg-title').textContent`); got != en["title"] {
		t.Errorf("banner title %q, want %q", got, en["title"])
	}
	if got := eval[[]string](tb, `[...document.querySelectorAll('#consentgate .cg-dialog .cg-btn')].map(b => b.textContent)`); !slices.Equal(got, []string{en["accept_all"], en["reject_all"], en["settings"]}) {
		t.Errorf("banner buttons %q", got)
	}
	if eval[bool](tb, `!document.querySelector('#consentgate .cg-reopen').hidden`) {
		t.Error("the reopen button is shown before any choice")
	}
	tb.noTrackersRan("first visit")
	tb.noTrackingCookies("first visit")
	if _, ok := tb.cookies()[DefaultCookieName]; ok {
		t.Errorf("%s set before any choice", DefaultCookieName)
	}
	// The YouTube player is held back: a blank frame and a placeholder
	// that says why.
	frame := eval[map[string]string](tb, `(() => { const f = document.querySelector('iframe'); return {src: f.getAttribute('src'), held: f.getAttribute('data-cg-src') || '', hidden: String(f.hidden), placeholder: f.nextElementSibling.textContent}; })()`)
	if frame["src"] != "about:blank" || frame["held"] != "https://www.youtube.com/embed/x" || frame["hidden"] != "true" || !strings.Contains(frame["placeholder"], "YouTube") {
		t.Errorf("YouTube iframe not held back: %v", frame)
	}
}

func TestBrowserRejectAll(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/")
	tb.waitBanner()
	tb.clickButton(en["reject_all"])
	tb.waitClosed()
	if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary"}) {
		t.Errorf("state after Reject all: %+v", st)
	}
	if _, ok := tb.cookies()[DefaultCookieName]; !ok {
		t.Errorf("no %s cookie after Reject all", DefaultCookieName)
	}
	tb.noTrackersRan("after Reject all")
	tb.noTrackingCookies("after Reject all")

	tb.navigate("/page2")
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	if eval[bool](tb, `!!document.querySelector('#consentgate .cg-layer')`) {
		t.Error("the banner is shown again on the next page")
	}
	if got := eval[string](tb, `document.querySelector('h1').textContent`); got != "This week's offers" {
		t.Errorf("second page: %q", got)
	}
	tb.noTrackersRan("second page after Reject all")
	tb.noTrackingCookies("second page after Reject all")
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "about:blank" {
		t.Errorf("YouTube iframe loaded after Reject all: %s", src)
	}
}

func TestBrowserAcceptAll(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/shop")
	tb.waitBanner()
	tb.noTrackersRan("before Accept all")
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "about:blank" {
		t.Errorf("marketing iframe loaded before consent: %s", src)
	}
	eval[chromedp.Void](tb, `window.sameDocument = true`)
	tb.clickButton(en["accept_all"])
	tb.poll("the held-back trackers run", `window.gaRan === true && window.fbRan === true`)
	tb.waitClosed()
	if !eval[bool](tb, `window.sameDocument === true`) {
		t.Error("the page reloaded: Accept all must activate the scripts in place")
	}
	tb.poll("the marketing iframe loads", `(() => { const f = document.querySelector('iframe'); return f.getAttribute('src') === '/embed' && !f.hidden && !document.querySelector('.cg-embed'); })()`)
	if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary", "preferences", "analytics", "marketing"}) {
		t.Errorf("state after Accept all: %+v", st)
	}
	jar := tb.cookies()
	c, ok := jar[DefaultCookieName]
	if !ok {
		t.Fatalf("no %s cookie after Accept all (have %v)", DefaultCookieName, slices.Collect(maps.Keys(jar)))
	}
	if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Session {
		t.Errorf("%s cookie: HttpOnly %v SameSite %q Path %q Session %v", c.Name, c.HTTPOnly, c.SameSite, c.Path, c.Session)
	}
	if strings.Contains(eval[string](tb, `document.cookie`), DefaultCookieName) {
		t.Errorf("%s readable from JavaScript", DefaultCookieName)
	}
	for _, name := range []string{"_ga", "_fbp"} {
		if _, ok := jar[name]; !ok {
			t.Errorf("the tracker's cookie %s is missing after Accept all", name)
		}
	}

	// The next page comes unrewritten: the trackers run as the site wrote them.
	tb.navigate("/shop2")
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	if ga, fb := tb.trackers(); !ga || !fb {
		t.Errorf("next page after Accept all: analytics ran %v, marketing ran %v", ga, fb)
	}
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "/embed" {
		t.Errorf("next page after Accept all: iframe src %q", src)
	}
}

func TestBrowserPerCategory(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/")
	tb.waitBanner()
	tb.clickButton(en["settings"])
	tb.do("waiting for the settings", chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))
	if eval[bool](tb, `!document.querySelector('#consentgate .cg-dialog:not(.cg-settings)').hidden`) {
		t.Error("the first layer stays shown under the settings")
	}
	boxes := eval[map[string]bool](tb, `Object.fromEntries([...document.querySelectorAll('#consentgate .cg-settings input.cg-sw')].map(b => [b.value, b.checked]))`)
	if !maps.Equal(boxes, map[string]bool{"necessary": true, "preferences": false, "analytics": false, "marketing": false}) {
		t.Errorf("switches before the choice: %v", boxes)
	}
	if !eval[bool](tb, `document.querySelector('#consentgate .cg-settings input.cg-sw[value=necessary]').disabled`) {
		t.Error("necessary can be switched off")
	}
	tb.do("switching analytics on", chromedp.Click(chromedp.CSS(`#consentgate .cg-settings input.cg-sw[value="analytics"]`)))
	if !eval[bool](tb, `document.querySelector('#consentgate .cg-settings input.cg-sw[value=analytics]').checked`) {
		t.Fatal("clicking the analytics switch did not turn it on")
	}
	if got := eval[string](tb, `document.querySelector('#consentgate .cg-settings input.cg-sw[value=analytics]').parentElement.querySelector('.cg-state').textContent`); got != en["on"] {
		t.Errorf("analytics switch label %q, want %q", got, en["on"])
	}
	tb.clickButton(en["save"])
	tb.poll("the analytics script runs", `window.gaRan === true`)
	tb.waitClosed()
	if ga, fb := tb.trackers(); !ga || fb {
		t.Errorf("analytics only: analytics ran %v, marketing ran %v", ga, fb)
	}
	if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary", "analytics"}) {
		t.Errorf("state after saving analytics only: %+v", st)
	}
	jar := tb.cookies()
	if _, ok := jar["_ga"]; !ok {
		t.Error("no _ga cookie although analytics is granted")
	}
	if _, ok := jar["_fbp"]; ok {
		t.Error("_fbp cookie although marketing is refused")
	}
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "about:blank" {
		t.Errorf("YouTube iframe loaded with marketing refused: %s", src)
	}
}

func TestBrowserWithdraw(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/shop")
	tb.waitBanner()
	tb.clickButton(en["accept_all"])
	tb.poll("the held-back trackers run", `window.gaRan === true && window.fbRan === true`)
	tb.waitClosed()
	before := tb.cookies()
	for _, name := range []string{DefaultCookieName, "_ga", "_fbp"} {
		if _, ok := before[name]; !ok {
			t.Fatalf("no %s cookie after Accept all", name)
		}
	}
	id := tb.state().ID

	tb.do("reopening the settings", chromedp.Click(chromedp.CSS(reopenSel)), chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))
	boxes := eval[map[string]bool](tb, `Object.fromEntries([...document.querySelectorAll('#consentgate .cg-settings input.cg-sw')].map(b => [b.value, b.checked]))`)
	if !maps.Equal(boxes, map[string]bool{"necessary": true, "preferences": true, "analytics": true, "marketing": true}) {
		t.Errorf("reopened settings show %v after Accept all", boxes)
	}
	// Withdrawing revokes categories, so the banner reloads the page: the
	// scripts that ran cannot be stopped otherwise.
	if _, err := chromedp.Run(tb.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(bannerButton(en["withdraw"])))); err != nil {
		t.Fatalf("withdrawing: %v", err)
	}
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	after := tb.cookies()
	for _, name := range []string{"_ga", "_fbp"} {
		if c, ok := after[name]; ok {
			t.Errorf("%s=%s survived the withdrawal", name, c.Value)
		}
	}
	if _, ok := after[DefaultCookieName]; !ok {
		t.Errorf("no %s cookie after the withdrawal", DefaultCookieName)
	}
	st := tb.state()
	if !st.Decided || !slices.Equal(st.Granted, []string{"necessary"}) || st.ID != id {
		t.Errorf("state after the withdrawal: %+v (ID before %s)", st, id)
	}
	tb.noTrackersRan("after the withdrawal")
	if eval[bool](tb, `!!document.querySelector('#consentgate .cg-layer')`) {
		t.Error("the banner asks again after the withdrawal")
	}
	recs, err := g.store().Records("127.0.0.1", id)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, r := range recs {
		methods = append(methods, r.Method)
	}
	if !slices.Equal(methods, []string{MethodAPI, MethodWithdrawal}) {
		t.Errorf("records of %s: %v", id, methods)
	}
}

// TestBrowserDecidedReopen: a decided visitor's pages carry a small
// config; reopening the settings fetches the rest, and changing one's mind
// works as on the first visit. Without the rest, the settings open as the
// page that works without JavaScript.
func TestBrowserDecidedReopen(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/?consent_mode=1")
	tb.waitBanner()
	tb.clickButton(en["reject_all"])
	tb.waitClosed()

	tb.navigate("/page2?consent_mode=1")
	tb.poll("the banner starts", `!!window.consentgate`)
	tb.waitClosed()
	cfg := eval[map[string]any](tb, `(() => {
		const t = document.getElementById('consentgate-config').textContent, c = JSON.parse(t);
		return {size: t.length, url: c.config_url || '', services: 'services' in c, desc: t.includes(`+"`"+en["cat_analytics_desc"]+"`"+`)};
	})()`)
	if size, _ := cfg["size"].(float64); size >= 1024 || cfg["services"] != false || cfg["desc"] != false || cfg["url"] == "" {
		t.Errorf("decided visitor's page carries the full config: %v", cfg)
	}
	if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary"}) {
		t.Errorf("get() on a decided page: %+v", st)
	}
	// The held-back YouTube player is labelled with the fetched strings.
	tb.poll("the embed placeholder is labelled", `[...document.querySelectorAll('.cg-embed button')].some(b => b.textContent == `+"`"+en["embed_load"]+"`"+`)`)

	// A page without embeds fetches nothing until the settings open.
	fetched := `performance.getEntriesByType('resource').some(e => e.name.includes('/_consent/config.'))`
	tb.navigate("/privacy?consent_mode=1")
	tb.poll("the banner starts", `!!window.consentgate`)
	tb.waitClosed()
	if eval[bool](tb, fetched) {
		t.Error("the full config was fetched before the settings opened")
	}

	eval[bool](tb, `(window.changes = [], window.consentgate.on('change', s => changes.push(s.granted.join())), true)`)
	tb.do("reopening the settings", chromedp.Click(chromedp.CSS(reopenSel)), chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))
	if !eval[bool](tb, fetched) {
		t.Error("the settings opened without fetching the full config")
	}
	boxes := eval[map[string]bool](tb, `Object.fromEntries([...document.querySelectorAll('#consentgate .cg-settings input.cg-sw')].map(b => [b.value, b.checked]))`)
	if !maps.Equal(boxes, map[string]bool{"necessary": true, "preferences": false, "analytics": false, "marketing": false}) {
		t.Errorf("reopened settings show %v after Reject all", boxes)
	}
	if !eval[bool](tb, `document.querySelector('#consentgate .cg-settings').textContent.includes(`+"`"+en["cat_analytics_desc"]+"`"+`)`) {
		t.Error("reopened settings lack the category descriptions")
	}
	tb.do("switching analytics on", chromedp.Click(chromedp.CSS(`#consentgate .cg-settings input.cg-sw[value="analytics"]`)))
	tb.clickButton(en["save"])
	tb.poll("the held-back analytics script runs", `window.gaRan === true`)
	tb.waitClosed()
	if ga, fb := tb.trackers(); !ga || fb {
		t.Errorf("after granting analytics: analytics ran %v, marketing ran %v", ga, fb)
	}
	if got := eval[[]string](tb, `window.changes`); !slices.Equal(got, []string{"necessary,analytics"}) {
		t.Errorf("change events %q", got)
	}
	if want := consentMode("consent update", "analytics"); !slices.ContainsFunc(tb.dataLayer(), func(c gtagCall) bool { return gtagCallEqual(c, want) }) {
		t.Errorf("no Consent Mode update granting analytics in %v", tb.dataLayer())
	}

	// window.consentgate.open() and a #consentgate-settings link fetch the
	// rest too.
	tb.navigate("/privacy")
	tb.poll("the banner starts", `!!window.consentgate`)
	eval[bool](tb, `(window.consentgate.open(), true)`)
	tb.do("opening the settings with open()", chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))
	tb.navigate("/privacy?again#consentgate-settings")
	tb.do("opening the settings by the link", chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))

	// Offline, the reopen button leads to the settings page. (The privacy
	// page has no embed, so the banner has not fetched the rest yet.)
	tb.navigate("/privacy")
	tb.poll("the banner starts", `!!window.consentgate`)
	tb.waitClosed()
	eval[bool](tb, `(window.fetch = () => Promise.reject(new TypeError('offline')), true)`)
	if _, err := chromedp.Run(tb.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(reopenSel)))); err != nil {
		t.Fatalf("reopening offline: %v", err)
	}
	if got := eval[string](tb, `location.pathname`); got != "/_consent/settings" {
		t.Errorf("offline reopen went to %s, want the settings page", got)
	}
}

func TestBrowserKeyboardOnly(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	tb.navigate("/")
	tb.waitBanner()
	const active = `(() => { const a = document.activeElement; return a ? (a.textContent || a.tagName).trim() : ''; })()`
	const inside = `(() => { const a = document.activeElement, d = document.querySelector('#consentgate .cg-dialog'); return !!a && d.contains(a); })()`
	tb.poll("focus lands in the banner", inside)
	if got := eval[string](tb, active); got != en["accept_all"] {
		t.Errorf("first focus on %q, want %q", got, en["accept_all"])
	}
	// The banner's focusable elements, in order; the page around has
	// links and buttons too, which Tab must not reach.
	order := eval[[]string](tb, `[...document.querySelectorAll('#consentgate .cg-dialog :is(a[href], button)')].map(e => e.textContent.trim())`)
	if len(order) < 3 {
		t.Fatalf("banner focusables: %q", order)
	}
	if outside := eval[int](tb, `[...document.querySelectorAll('a[href], button')].filter(e => !document.getElementById('consentgate').contains(e)).length`); outside == 0 {
		t.Fatal("the page has nothing focusable outside the banner: the trap test proves nothing")
	}
	start := slices.Index(order, en["accept_all"])
	var visited []string
	for i := range order {
		tb.do("pressing Tab", chromedp.KeyEvent("\t"))
		if !eval[bool](tb, inside) {
			t.Fatalf("Tab %d left the banner (focus on %q; visited %q)", i+1, eval[string](tb, active), visited)
		}
		visited = append(visited, eval[string](tb, active))
	}
	var want []string
	for i := range order {
		want = append(want, order[(start+1+i)%len(order)])
	}
	if !slices.Equal(visited, want) {
		t.Errorf("Tab visits %q, want %q (the banner's elements in order, wrapping around)", visited, want)
	}
	// Shift+Tab wraps backwards from the first element to the last.
	for range start + 1 {
		tb.do("pressing Shift+Tab", chromedp.KeyEvent("\t", chromedp.KeyModifiers(chromedp.ModifierShift)))
	}
	if got := eval[string](tb, active); got != order[len(order)-1] || !eval[bool](tb, inside) {
		t.Errorf("Shift+Tab past the first element focuses %q, want %q", got, order[len(order)-1])
	}
	// Tab on to Reject all and press Enter.
	for i := 0; eval[string](tb, active) != en["reject_all"]; i++ {
		if i > len(order) {
			t.Fatalf("Tab never reaches %q", en["reject_all"])
		}
		tb.do("pressing Tab", chromedp.KeyEvent("\t"))
	}
	tb.do("pressing Enter", chromedp.KeyEvent("\r"))
	tb.waitClosed()
	if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary"}) {
		t.Errorf("state after Enter on Reject all: %+v", st)
	}
	// Focus is not lost: it goes to the button that reopens the settings.
	tb.poll("focus moves to the reopen button", `document.activeElement === document.querySelector('#consentgate .cg-reopen')`)
	tb.noTrackersRan("after Reject all by keyboard")
}

func TestBrowserSettingsWithoutJavaScript(t *testing.T) {
	g := startBrowserGateway(t)
	tb := openTab(t, g)
	en := translations(t)["en"]
	if _, err := chromedp.Call(tb.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	tb.navigate("/")
	if eval[bool](tb, `window.appRan === true || !!document.getElementById('consentgate')`) {
		t.Fatal("JavaScript still runs")
	}
	tb.navigate("/_consent/settings")
	tb.do("waiting for the form", chromedp.WaitVisible(chromedp.CSS(`form input[name="granted"][value="analytics"]`)))
	if body := eval[string](tb, `document.body.textContent`); !strings.Contains(body, en["no_decision"]) {
		t.Errorf("settings page before a choice lacks %q", en["no_decision"])
	}
	tb.do("ticking analytics", chromedp.Click(chromedp.CSS(`form input[name="granted"][value="analytics"]`)))
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.Click(chromedp.Search(`//form//button[normalize-space()="`+en["save"]+`"]`)))
	if err != nil {
		t.Fatalf("submitting the form: %v", err)
	}
	if resp.Status != 200 || !strings.HasSuffix(resp.URL, "/_consent/settings") {
		t.Errorf("after the form: %d %s", resp.Status, resp.URL)
	}
	tb.mu.Lock()
	redirects := slices.Clone(tb.redirects)
	tb.mu.Unlock()
	if !slices.Contains(redirects, "303 "+g.url("/_consent/state")) {
		t.Errorf("the form post did not answer 303: redirects %q", redirects)
	}
	tb.do("waiting for the consent ID", chromedp.WaitVisible(chromedp.CSS(`dl code`)))
	id := eval[string](tb, `document.querySelector('dl code').textContent`)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("consent ID on the page: %q", id)
	}
	boxes := eval[map[string]bool](tb, `Object.fromEntries([...document.querySelectorAll('form input[name=granted]')].map(b => [b.value, b.checked]))`)
	if !maps.Equal(boxes, map[string]bool{"necessary": true, "preferences": false, "analytics": true, "marketing": false}) {
		t.Errorf("checkboxes after saving: %v", boxes)
	}
	// The gateway agrees: ask it with the browser's cookie.
	c, ok := tb.cookies()[DefaultCookieName]
	if !ok || !c.HTTPOnly {
		t.Fatalf("consent cookie after the form: %+v", c)
	}
	st := newClient(t).get(g.url("/_consent/state"), "Cookie", DefaultCookieName+"="+c.Value).json(t)
	if st.ID != id || !st.Decided || !slices.Equal(st.Granted, []string{"necessary", "analytics"}) {
		t.Errorf("gateway state %+v, page shows ID %s", st, id)
	}
	if rec, err := g.store().Current("127.0.0.1", id); err != nil || rec.Method != MethodForm {
		t.Errorf("stored record: %+v, %v", rec, err)
	}
}

func TestBrowserRussianAndKazakh(t *testing.T) {
	tr := translations(t)
	g := startBrowserGateway(t)
	for _, lang := range []string{"ru", "kk"} {
		t.Run(lang, func(t *testing.T) {
			want, ok := tr[lang]
			if !ok {
				have := slices.Sorted(maps.Keys(tr))
				t.Fatalf("static/i18n/%s.json is missing (have %s): the banner cannot speak %s", lang, strings.Join(have, ", "), lang)
			}
			for _, k := range []string{"title", "accept_all", "reject_all", "settings"} {
				if want[k] == tr["en"][k] {
					t.Errorf("static/i18n/%s.json: %q is not translated (%q)", lang, k, want[k])
				}
			}
			tb := openTab(t, g)
			tb.navigate("/shop?lang=" + lang) // marketing gets granted: no YouTube
			tb.waitBanner()
			got := eval[map[string]any](tb, `(() => {
				const r = document.getElementById('consentgate');
				return {
					lang: r.lang, dir: r.dir,
					title: document.getElementById('cg-title').textContent,
					buttons: [...r.querySelectorAll('.cg-dialog .cg-btn')].map(b => b.textContent),
				};
			})()`)
			if got["lang"] != lang || got["dir"] != want["dir"] || got["title"] != want["title"] {
				t.Errorf("banner lang %v dir %v title %q, want %s %s %q", got["lang"], got["dir"], got["title"], lang, want["dir"], want["title"])
			}
			buttons := fmt.Sprint(got["buttons"])
			if wantButtons := fmt.Sprint([]any{want["accept_all"], want["reject_all"], want["settings"]}); buttons != wantButtons {
				t.Errorf("banner buttons %s, want %s", buttons, wantButtons)
			}
			// The translated button works like the English one.
			tb.clickButton(want["accept_all"])
			tb.poll("the held-back analytics script runs", `window.gaRan === true`)
			if got := eval[string](tb, `document.querySelector('#consentgate .cg-reopen').textContent`); got != want["reopen"] {
				t.Errorf("reopen button %q, want %q", got, want["reopen"])
			}
		})
	}
}

func TestBrowserScreenshots(t *testing.T) {
	g := startBrowserGateway(t)
	write := os.Getenv("CONSENTGATE_SCREENSHOTS") == "1"
	for _, shot := range []struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		{"banner-desktop.png", 1280, 800, nil},
		{"banner-mobile.png", 360, 740, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulatePortrait}},
	} {
		t.Run(shot.name, func(t *testing.T) {
			tb := openTab(t, g)
			if _, err := chromedp.Call(tb.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-reduced-motion", Value: "reduce"}, {Name: "prefers-color-scheme", Value: "light"}},
			}); err != nil {
				t.Fatal(err)
			}
			tb.do("sizing the viewport", chromedp.EmulateViewport(shot.width, shot.height, shot.opts...))
			tb.navigate("/")
			tb.waitBanner()
			// Nothing spills out sideways on a small screen.
			if overflow := eval[bool](tb, `document.documentElement.scrollWidth > innerWidth`); overflow {
				t.Errorf("%dpx wide: the page scrolls sideways (%v > %v)", shot.width, eval[int](tb, `document.documentElement.scrollWidth`), eval[int](tb, `innerWidth`))
			}
			tb.poll("fonts are ready", `document.fonts.status === 'loaded'`)
			buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(buf))
			if err != nil {
				t.Fatalf("screenshot is not a PNG: %v", err)
			}
			if b := img.Bounds(); int64(b.Dx()) != shot.width || int64(b.Dy()) != shot.height {
				t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), shot.width, shot.height)
			}
			if !write {
				return
			}
			dir := filepath.Join("..", "static", "screenshots")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, shot.name), buf, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", filepath.Join(dir, shot.name))
		})
	}
}

// gtagCall is one command the page queued in window.dataLayer.
type gtagCall struct {
	Command string            `json:"command"` // "consent default", "js", "config G-TEST", …
	Params  map[string]string `json:"params"`  // the consent command's parameters
}

// dataLayer reads window.dataLayer; gtag() pushes its arguments object.
func (tb *tab) dataLayer() []gtagCall {
	tb.t.Helper()
	return eval[[]gtagCall](tb, `(window.dataLayer || []).map(a => {
		const x = Array.from(a), words = x.filter(v => typeof v == 'string');
		const params = x.find(v => v && typeof v == 'object' && !(v instanceof Date));
		return {command: words.join(' '), params: x[0] === 'consent' ? params : null};
	})`)
}

// consentMode is Google Consent Mode v2 for a set of granted categories:
// analytics is analytics_storage; marketing is ad_storage, ad_user_data
// and ad_personalization; preferences are functionality_storage and
// personalization_storage; security_storage is always granted.
func consentMode(command string, granted ...string) gtagCall {
	g := func(category string) string {
		if slices.Contains(granted, category) {
			return "granted"
		}
		return "denied"
	}
	return gtagCall{Command: command, Params: map[string]string{
		"analytics_storage":       g("analytics"),
		"ad_storage":              g("marketing"),
		"ad_user_data":            g("marketing"),
		"ad_personalization":      g("marketing"),
		"functionality_storage":   g("preferences"),
		"personalization_storage": g("preferences"),
		"security_storage":        "granted",
	}}
}

// gaCommands are what the test page's Google tag queues.
var gaCommands = []gtagCall{{Command: "js"}, {Command: "config G-TEST"}}

func TestBrowserConsentMode(t *testing.T) {
	g := startBrowserGateway(t)
	en := translations(t)["en"]
	all := []string{"necessary", "preferences", "analytics", "marketing"}
	saveAnalytics := func(tb *tab) {
		tb.clickButton(en["settings"])
		tb.do("switching analytics on", chromedp.Click(chromedp.CSS(`#consentgate .cg-settings input.cg-sw[value="analytics"]`)))
		tb.clickButton(en["save"])
	}
	for _, tc := range []struct {
		name    string
		path    string
		choose  func(tb *tab)
		granted []string
		early   bool       // the gateway's inline default ran (else the banner queued it)
		blocked []string   // CSP violations the page reports
		want    []gtagCall // window.dataLayer after the choice
	}{{
		name:    "accept all",
		path:    "/shop?consent_mode=1",
		choose:  func(tb *tab) { tb.clickButton(en["accept_all"]) },
		granted: all,
		early:   true,
		// The update comes before the held-back Google tag runs.
		want: append([]gtagCall{consentMode("consent default"), consentMode("consent update", all...)}, gaCommands...),
	}, {
		name:    "reject all",
		path:    "/shop?consent_mode=1",
		choose:  func(tb *tab) { tb.clickButton(en["reject_all"]) },
		granted: []string{"necessary"},
		early:   true,
		want:    []gtagCall{consentMode("consent default"), consentMode("consent update")},
	}, {
		name:    "save analytics only",
		path:    "/shop?consent_mode=1",
		choose:  saveAnalytics,
		granted: []string{"necessary", "analytics"},
		early:   true,
		want:    append([]gtagCall{consentMode("consent default"), consentMode("consent update", "analytics")}, gaCommands...),
	}, {
		// A page whose only gtag is the held-back Google tag itself: the
		// gateway's default, queued right after <head>, still comes before
		// the tag's own commands, or Google would treat the refused ad
		// storage as granted.
		name:    "held-back tag only",
		path:    "/shop",
		choose:  saveAnalytics,
		granted: []string{"necessary", "analytics"},
		early:   true,
		want:    append([]gtagCall{consentMode("consent default"), consentMode("consent update", "analytics")}, gaCommands...),
	}, {
		// The site's own policy allows only scripts with its nonce, and
		// browsers enforce it beside ours: the gateway's inline default is
		// blocked. The page still works: the banner (from 'self') queues
		// the default itself, and the held-back tag runs with the nonce it
		// kept.
		name:    "upstream CSP blocks the inline default",
		path:    "/shop?consent_mode=1&csp=nonce",
		choose:  saveAnalytics,
		granted: []string{"necessary", "analytics"},
		blocked: []string{"script-src-elem inline"},
		want:    append([]gtagCall{consentMode("consent default"), consentMode("consent update", "analytics")}, gaCommands...),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tb := openTab(t, g)
			tb.recordCSPViolations()
			tb.navigate(tc.path)
			tb.waitBanner()
			tb.noTrackersRan("before the choice")
			before := []gtagCall{consentMode("consent default")}
			if got := tb.dataLayer(); !slices.EqualFunc(got, before, gtagCallEqual) {
				t.Errorf("dataLayer before the choice:\n  %v\nwant\n  %v", got, before)
			}
			if early := eval[bool](tb, `window.__consentgateGCM === 1`); early != tc.early {
				t.Errorf("the gateway's inline Consent Mode default ran: %v, want %v", early, tc.early)
			}
			if got := eval[[]string](tb, `window.cspViolations`); !slices.Equal(got, tc.blocked) {
				t.Errorf("CSP violations %q, want %q", got, tc.blocked)
			}
			if st := tb.state(); st.Decided || !slices.Equal(st.Granted, []string{"necessary"}) || st.Regime != "opt-in" {
				t.Errorf("consentgate.get() before the choice: %+v", st)
			}
			eval[chromedp.Void](tb, `window.changes = [];
				window.consentgate.on('change', s => changes.push({via: 'on', state: s}));
				document.addEventListener('consentgate:change', e => changes.push({via: 'event', state: e.detail}))`)

			tc.choose(tb)
			tb.waitClosed()
			if slices.Contains(tc.granted, "analytics") {
				tb.poll("the held-back Google tag runs", `window.gaRan === true`)
			}
			if got := tb.dataLayer(); !slices.EqualFunc(got, tc.want, gtagCallEqual) {
				t.Errorf("dataLayer after the choice:\n  %v\nwant\n  %v", got, tc.want)
			}
			st := tb.state()
			if !st.Decided || !slices.Equal(st.Granted, tc.granted) {
				t.Errorf("consentgate.get() after the choice: %+v, want granted %v", st, tc.granted)
			}
			type change struct {
				Via   string `json:"via"`
				State State  `json:"state"`
			}
			changes := eval[[]change](tb, `window.changes`)
			if len(changes) != 2 || changes[0].Via != "on" || changes[1].Via != "event" {
				t.Fatalf("change notifications: %+v, want one from on('change') then one consentgate:change event", changes)
			}
			for _, c := range changes {
				if c.State.ID != st.ID || !c.State.Decided || !slices.Equal(c.State.Granted, tc.granted) {
					t.Errorf("%s told %+v, want the new state %+v", c.Via, c.State, st)
				}
			}
		})
	}
}

// TestBrowserConsentModeOnReturn is the visitor who granted analytics
// coming back: the page's inline Google tag is no longer held back, so it
// runs while the browser parses the head, long before the deferred
// banner.js, and must find the consent default already queued (Google's
// tags treat consent as unset otherwise). The gateway's inline default,
// right after <head>, also passes the gateway's own enforced policy.
func TestBrowserConsentModeOnReturn(t *testing.T) {
	en := translations(t)["en"]
	for _, csp := range []string{"off", "enforce"} {
		t.Run("csp "+csp, func(t *testing.T) {
			g := startBrowserGateway(t, "csp "+csp)
			tb := openTab(t, g)
			tb.recordCSPViolations()
			tb.navigate("/shop")
			tb.waitBanner()
			tb.clickButton(en["settings"])
			tb.do("switching analytics on", chromedp.Click(chromedp.CSS(`#consentgate .cg-settings input.cg-sw[value="analytics"]`)))
			tb.clickButton(en["save"])
			tb.waitClosed()
			tb.poll("the held-back Google tag runs", `window.gaRan === true`)

			for _, path := range []string{"/shop", "/shop2?consent_mode=1"} {
				tb.navigate(path)
				tb.poll("the banner starts", `!!window.consentgate`)
				if ga, fb := tb.trackers(); !ga || fb {
					t.Errorf("%s: trackers ran: analytics %v, marketing %v; want analytics only", path, ga, fb)
				}
				// The default once, granting analytics; no update, as nothing
				// changed.
				want := append([]gtagCall{consentMode("consent default", "analytics")}, gaCommands...)
				if got := tb.dataLayer(); !slices.EqualFunc(got, want, gtagCallEqual) {
					t.Errorf("%s: dataLayer\n  %v\nwant\n  %v", path, got, want)
				}
				if got := eval[[]string](tb, `window.cspViolations`); len(got) != 0 {
					t.Errorf("%s: CSP violations %q", path, got)
				}
			}
		})
	}
}

func gtagCallEqual(a, b gtagCall) bool {
	return a.Command == b.Command && maps.Equal(a.Params, b.Params)
}

// box is an element's border box in CSS pixels of the viewport.
type box struct {
	Left, Top, Width, Height float64
}

func (b box) right() float64  { return b.Left + b.Width }
func (b box) bottom() float64 { return b.Top + b.Height }

func (b box) overlaps(c box) bool {
	return min(b.right(), c.right())-max(b.Left, c.Left) > 0.5 && min(b.bottom(), c.bottom())-max(b.Top, c.Top) > 0.5
}

// layerLayout is how a banner layer is laid out on the current screen.
type layerLayout struct {
	InnerWidth, InnerHeight, PageScrollWidth float64
	// Dialog is the layer's box; Scroll* and Client* its content and
	// visible sizes, OverflowY its computed overflow-y.
	Dialog                     box
	ScrollWidth, ClientWidth   float64
	ScrollHeight, ClientHeight float64
	OverflowY                  string
	// Clipped lists text elements wider than their box.
	Clipped []string
	// Buttons are the layer's bottom row, at their place in the layer's
	// content (scrolled to the top); OnTop whether each, once scrolled
	// into view, is the element under its own centre.
	Buttons []struct {
		Text  string
		Box   box
		OnTop bool
	}
}

// layout measures the banner layer sel.
func (tb *tab) layout(sel string) layerLayout {
	tb.t.Helper()
	return eval[layerLayout](tb, `(() => {
		const d = document.querySelector(`+"`"+sel+"`"+`);
		const rect = el => { const r = el.getBoundingClientRect(); return {Left: r.left, Top: r.top, Width: r.width, Height: r.height}; };
		d.scrollTop = 0;
		const btns = [...d.querySelectorAll(':scope > .cg-btns > .cg-btn')];
		const boxes = btns.map(rect);
		const onTop = btns.map(b => {
			b.scrollIntoView({block: 'nearest', inline: 'nearest'});
			const r = b.getBoundingClientRect(), e = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
			return !!e && (e === b || b.contains(e));
		});
		d.scrollTop = 0;
		return {
			InnerWidth: innerWidth, InnerHeight: innerHeight,
			PageScrollWidth: document.documentElement.scrollWidth,
			Dialog: rect(d),
			ScrollWidth: d.scrollWidth, ClientWidth: d.clientWidth,
			ScrollHeight: d.scrollHeight, ClientHeight: d.clientHeight,
			OverflowY: getComputedStyle(d).overflowY,
			Clipped: [...d.querySelectorAll('h2, p, label, .cg-btn')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent),
			Buttons: btns.map((b, i) => ({Text: b.textContent, Box: boxes[i], OnTop: onTop[i]})),
		};
	})()`)
}

// checkReadable checks a layer fits the viewport, nothing scrolls or is
// cut off sideways, and what does not fit vertically scrolls inside it.
func (l layerLayout) checkReadable(t *testing.T, what string) {
	t.Helper()
	if l.PageScrollWidth > l.InnerWidth {
		t.Errorf("%s: the page scrolls sideways (%v > %v)", what, l.PageScrollWidth, l.InnerWidth)
	}
	if d := l.Dialog; d.Left < 0 || d.Top < 0 || d.right() > l.InnerWidth+0.5 || d.bottom() > l.InnerHeight+0.5 {
		t.Errorf("%s: the layer %+v sticks out of the %vx%v viewport", what, d, l.InnerWidth, l.InnerHeight)
	}
	if l.ScrollWidth > l.ClientWidth {
		t.Errorf("%s: the layer's content is wider than the layer (%v > %v)", what, l.ScrollWidth, l.ClientWidth)
	}
	if l.ScrollHeight > l.ClientHeight && l.OverflowY != "auto" && l.OverflowY != "scroll" {
		t.Errorf("%s: the layer's content is cut off: %v px tall in %v px with overflow-y %s", what, l.ScrollHeight, l.ClientHeight, l.OverflowY)
	}
	if len(l.Clipped) > 0 {
		t.Errorf("%s: text cut off sideways: %q", what, l.Clipped)
	}
}

func TestBrowserSmallScreens(t *testing.T) {
	g := startBrowserGateway(t)
	en := translations(t)["en"]
	for _, screen := range []struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		// A phone with a 360 CSS px wide screen, the most common Android
		// width, at its usual density.
		{"360px phone", 360, 740, []chromedp.EmulateViewportOption{chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulatePortrait}},
		// A 1280x800 window at 200% zoom. Browser zoom halves the CSS
		// viewport and doubles devicePixelRatio: the page lays out, and
		// its media queries match, as on a 640x400 screen, which is what
		// this override sets. CDP has no browser zoom, and CSS zoom on
		// the root would leave innerWidth and media queries at 1280 px.
		{"200% zoom", 640, 400, []chromedp.EmulateViewportOption{chromedp.EmulateScale(2)}},
	} {
		t.Run(screen.name, func(t *testing.T) {
			tb := openTab(t, g)
			tb.do("sizing the viewport", chromedp.EmulateViewport(screen.width, screen.height, screen.opts...))
			tb.navigate("/shop")
			tb.waitBanner()
			if w := eval[float64](tb, `innerWidth`); w != float64(screen.width) {
				t.Fatalf("innerWidth %v, want %d", w, screen.width)
			}

			first := tb.layout(dialogSel)
			first.checkReadable(t, "first layer")
			var texts []string
			for _, b := range first.Buttons {
				texts = append(texts, b.Text)
				if b.Box.Width < 1 || b.Box.Height < 1 || !b.OnTop {
					t.Errorf("button %q is not visible and on top: %+v", b.Text, b)
				}
				if b.Box.Left < 0 || b.Box.right() > first.InnerWidth {
					t.Errorf("button %q sticks out of the viewport: %+v", b.Text, b.Box)
				}
			}
			if !slices.Equal(texts, []string{en["accept_all"], en["reject_all"], en["settings"]}) {
				t.Fatalf("first layer buttons %q", texts)
			}
			bs := first.Buttons
			for i := range bs {
				for j := i + 1; j < len(bs); j++ {
					if bs[i].Box.overlaps(bs[j].Box) {
						t.Errorf("buttons %q and %q overlap: %+v, %+v", bs[i].Text, bs[j].Text, bs[i].Box, bs[j].Box)
					}
				}
			}
			// Equal weight: in one row, the same width and height; stacked,
			// the same width. A mix (two in a row, one below) is neither.
			near := func(a, b float64) bool { return a-b < 2 && b-a < 2 }
			row, stack := true, true
			for _, b := range bs[1:] {
				row = row && near(b.Box.Top, bs[0].Box.Top) && near(b.Box.Width, bs[0].Box.Width) && near(b.Box.Height, bs[0].Box.Height)
				stack = stack && b.Box.Top >= bs[0].Box.bottom() && near(b.Box.Left, bs[0].Box.Left) && near(b.Box.Width, bs[0].Box.Width)
			}
			if !row && !stack {
				t.Errorf("first layer buttons are neither one row nor a stack of equal size: %+v", bs)
			}
			t.Logf("first layer: %vx%v px, content %v px tall, buttons in a row %v", first.Dialog.Width, first.Dialog.Height, first.ScrollHeight, row)

			tb.clickButton(en["settings"])
			tb.do("waiting for the settings", chromedp.WaitVisible(chromedp.CSS(`#consentgate .cg-settings`)))
			tb.waitAnimations()
			settings := tb.layout(`#consentgate .cg-settings`)
			settings.checkReadable(t, "settings layer")
			t.Logf("settings layer: %vx%v px, content %v px tall", settings.Dialog.Width, settings.Dialog.Height, settings.ScrollHeight)
			// Every switch is reachable and takes a real click (a mouse
			// event at its centre, after scrolling it into view); necessary
			// shows, always on.
			names := eval[[]string](tb, `[...document.querySelectorAll('#consentgate .cg-settings input.cg-sw')].map(b => b.value)`)
			if !slices.Equal(names, []string{"necessary", "preferences", "analytics", "marketing"}) {
				t.Fatalf("switches %q", names)
			}
			for _, name := range names {
				sw := `#consentgate .cg-settings input.cg-sw[value="` + name + `"]`
				tb.do("scrolling to the "+name+" switch", chromedp.ScrollIntoView(chromedp.CSS(sw)))
				shown := eval[bool](tb, `(() => {
					const b = document.querySelector('`+sw+`'), r = b.getBoundingClientRect();
					return r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight && document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) === b;
				})()`)
				if !shown {
					t.Errorf("the %s switch cannot be scrolled into view uncovered", name)
					continue
				}
				if name == "necessary" {
					if !eval[bool](tb, `document.querySelector('`+sw+`').checked`) {
						t.Error("necessary is not shown as on")
					}
					continue
				}
				tb.do("clicking the "+name+" switch", chromedp.Click(chromedp.CSS(sw)))
				if !eval[bool](tb, `document.querySelector('`+sw+`').checked`) {
					t.Errorf("clicking the %s switch did not turn it on", name)
				}
			}
			tb.clickButton(en["save"])
			tb.waitClosed()
			tb.poll("the held-back trackers run", `window.gaRan === true && window.fbRan === true`)
			if st := tb.state(); !st.Decided || !slices.Equal(st.Granted, []string{"necessary", "preferences", "analytics", "marketing"}) {
				t.Errorf("state after switching everything on and saving: %+v", st)
			}
		})
	}
}

// regimeLines make visitors from the US opt-out and from the UK notice,
// by a country header the gateway believes from 127.0.0.1 (a trusted
// proxy in globalOpts), as it would from a CDN.
var regimeLines = []string{"country_header X-Country", "regime opt-out US", "regime notice GB"}

const barSel = `#consentgate .cg-bar`

// sendHeader adds a header to every request of the tab, fetches included.
func (tb *tab) sendHeader(name, value string) {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{name: value}}); err != nil {
		tb.t.Fatalf("setting %s: %v", name, err)
	}
}

// waitBar waits for the first layer as an information bar and checks it is
// one: a labelled region at the bottom of the viewport, with the given
// text and buttons, that leaves the page usable (no backdrop, no modal).
func (tb *tab) waitBar(text string, buttons ...string) {
	tb.t.Helper()
	tb.do("waiting for the bar", chromedp.WaitVisible(chromedp.CSS(barSel)))
	tb.waitAnimations()
	got := eval[map[string]any](tb, `(() => {
		const bar = document.querySelector('`+barSel+`'), r = bar.getBoundingClientRect(), h1 = document.querySelector('h1'), hr = h1.getBoundingClientRect();
		return {
			role: bar.getAttribute('role'), label: bar.getAttribute('aria-label') || '', modal: bar.hasAttribute('aria-modal'),
			backdrop: !document.querySelector('#consentgate .cg-backdrop').hidden,
			dialogs: document.querySelectorAll('#consentgate .cg-dialog').length,
			text: bar.querySelector('.cg-desc').textContent,
			buttons: [...bar.querySelectorAll('.cg-btn')].map(b => b.textContent).join('|'),
			atBottom: r.left >= 0 && r.right <= innerWidth && Math.abs(r.bottom - innerHeight) < 1 && r.top > innerHeight / 2,
			pageUsable: document.elementFromPoint(hr.left + 5, hr.top + hr.height / 2) === h1,
		};
	})()`)
	en := translations(tb.t)["en"]
	want := map[string]any{
		"role": "region", "label": en["banner_label"], "modal": false, "backdrop": false, "dialogs": float64(0),
		"buttons": strings.Join(buttons, "|"), "atBottom": true, "pageUsable": true,
	}
	for k, v := range want {
		if got[k] != v {
			tb.t.Errorf("bar: %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if s, _ := got["text"].(string); !strings.HasPrefix(s, text) {
		tb.t.Errorf("bar text %q, want %q", s, text)
	}
}

// gatewayState asks the gateway, not the page, for the state of the
// browser's consent cookie.
func (tb *tab) gatewayState(hdr ...string) State {
	tb.t.Helper()
	c, ok := tb.cookies()[DefaultCookieName]
	if !ok {
		tb.t.Fatalf("the browser has no %s cookie", DefaultCookieName)
	}
	return newClient(tb.t).get(tb.g.url("/_consent/state"), append(hdr, "Cookie", DefaultCookieName+"="+c.Value)...).json(tb.t)
}

func TestBrowserOptOut(t *testing.T) {
	g := startBrowserGateway(t, regimeLines...)
	en := translations(t)["en"]
	all := []string{"necessary", "preferences", "analytics", "marketing"}
	tb := openTab(t, g)
	tb.sendHeader("X-Country", "US")
	tb.navigate("/shop")
	// No prior consent in opt-out: the page comes as the site wrote it and
	// its tags run until the visitor objects.
	tb.waitBar(en["optout_text"], en["optout_button"], en["settings"])
	if ga, fb := tb.trackers(); !ga || !fb {
		t.Errorf("opt-out before a choice: analytics ran %v, marketing ran %v", ga, fb)
	}
	if st := tb.state(); st.Decided || st.Regime != "opt-out" || !slices.Equal(st.Granted, all) {
		t.Errorf("state before a choice: %+v", st)
	}
	jar := tb.cookies()
	for _, name := range []string{"_ga", "_fbp"} {
		if _, ok := jar[name]; !ok {
			t.Errorf("no %s cookie before the visitor objects", name)
		}
	}

	// "Do not sell or share" refuses the sale/sharing categories
	// (marketing) and keeps the rest. Marketing already ran, so the
	// banner reloads the page.
	if _, err := chromedp.Run(tb.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(bannerButton(en["optout_button"])))); err != nil {
		t.Fatalf("clicking %q: %v", en["optout_button"], err)
	}
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	if eval[bool](tb, `!!document.querySelector('#consentgate .cg-layer')`) {
		t.Error("the bar is shown again after the choice")
	}
	kept := []string{"necessary", "preferences", "analytics"}
	st := tb.state()
	if !st.Decided || st.Regime != "opt-out" || !slices.Equal(st.Granted, kept) {
		t.Errorf("page state after %q: %+v", en["optout_button"], st)
	}
	if gw := tb.gatewayState("X-Country", "US"); gw.ID != st.ID || !gw.Decided || !slices.Equal(gw.Granted, kept) {
		t.Errorf("gateway state %+v, page state %+v", gw, st)
	}
	if rec, err := g.store().Current("127.0.0.1", st.ID); err != nil || rec.Regime != "opt-out" || !slices.Equal(rec.Denied, []string{"marketing"}) {
		t.Errorf("stored record: %+v, %v", rec, err)
	}
	if ga, fb := tb.trackers(); !ga || fb {
		t.Errorf("after %q: analytics ran %v, marketing ran %v", en["optout_button"], ga, fb)
	}
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "about:blank" {
		t.Errorf("marketing iframe loaded after %q: %s", en["optout_button"], src)
	}
	// The gateway keeps the refused category's cookie from the site. The
	// browser still holds it: the gateway expires cookies on a withdrawal
	// (DELETE) but not when a POST revokes a category.
	if got := eval[string](tb, `document.querySelector('meta[name=upstream-cookies]').content`); got != "_ga" {
		t.Errorf("after %q the site received the cookies %q, want only _ga", en["optout_button"], got)
	}

	// And on the next page.
	tb.navigate("/shop2")
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	if ga, fb := tb.trackers(); !ga || fb {
		t.Errorf("next page: analytics ran %v, marketing ran %v", ga, fb)
	}
}

func TestBrowserNotice(t *testing.T) {
	g := startBrowserGateway(t, regimeLines...)
	en := translations(t)["en"]
	all := []string{"necessary", "preferences", "analytics", "marketing"}
	tb := openTab(t, g)
	tb.sendHeader("X-Country", "GB")
	tb.navigate("/shop")
	tb.waitBar(en["notice_text"], en["notice_ok"], en["settings"])
	if ga, fb := tb.trackers(); !ga || !fb {
		t.Errorf("notice: analytics ran %v, marketing ran %v", ga, fb)
	}
	if st := tb.state(); st.Decided || st.Regime != "notice" || !slices.Equal(st.Granted, all) {
		t.Errorf("state before dismissing: %+v", st)
	}
	// Dismissing takes the notice as read: nothing is revoked, so no reload.
	eval[chromedp.Void](tb, `window.sameDocument = true`)
	tb.clickButton(en["notice_ok"])
	tb.waitClosed()
	if !eval[bool](tb, `window.sameDocument === true`) {
		t.Error("dismissing the notice reloaded the page")
	}
	st := tb.state()
	if !st.Decided || st.Regime != "notice" || !slices.Equal(st.Granted, all) {
		t.Errorf("state after dismissing: %+v", st)
	}
	if gw := tb.gatewayState("X-Country", "GB"); gw.ID != st.ID || !gw.Decided || !slices.Equal(gw.Granted, all) {
		t.Errorf("gateway state %+v, page state %+v", gw, st)
	}

	tb.navigate("/shop2")
	tb.do("waiting for the reopen button", chromedp.WaitVisible(chromedp.CSS(reopenSel)))
	if eval[bool](tb, `!!document.querySelector('#consentgate .cg-layer')`) {
		t.Error("the bar is shown again on the next page")
	}
	if got := eval[string](tb, `document.querySelector('h1').textContent`); got != "This week's offers" {
		t.Errorf("next page: %q", got)
	}
	if ga, fb := tb.trackers(); !ga || !fb {
		t.Errorf("next page: analytics ran %v, marketing ran %v", ga, fb)
	}
}

// TestBrowserTrackerSpellings: Chromium itself shows that the tricky
// page's spellings load from the trackers (opened straight from the
// upstream, it asks for every tracker host); through the gateway it asks
// for none of them, and the banner, whose URLs would otherwise follow the
// page's <base> to YouTube, still loads from the gateway.
func TestBrowserTrackerSpellings(t *testing.T) {
	g := startBrowserGateway(t)
	trackers := []string{"www.googletagmanager.com", "connect.facebook.net", "www.facebook.com", "www.youtube.com"}

	up := browserUpstream(t)
	direct := openTab(t, g)
	direct.do("opening the page without the gateway", chromedp.Navigate(up.URL+"/tricky"))
	direct.poll("the page has loaded", `document.readyState === 'complete'`)
	deadline := time.Now().Add(pollTimeout)
	for {
		direct.mu.Lock()
		var missing []string
		for _, host := range trackers {
			if !slices.ContainsFunc(direct.requests, func(r string) bool { return strings.Contains(r, "://"+host+"/") }) {
				missing = append(missing, host)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			requests := direct.requests
			direct.requests = nil // these were expected; the tab's check is for the gateway's pages
			direct.mu.Unlock()
			if len(missing) > 0 {
				t.Fatalf("without the gateway Chromium never asked for %v, so the page proves nothing; it asked for:\n  %s", missing, strings.Join(requests, "\n  "))
			}
			break
		}
		direct.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}

	tb := openTab(t, g)
	tb.navigate("/tricky")
	tb.waitBanner()
	tb.poll("the page has loaded", `document.readyState === 'complete'`)
	if src := eval[string](tb, `document.querySelector('iframe').getAttribute('src')`); src != "about:blank" {
		t.Errorf("iframe src %q", src)
	}
	// openTab's cleanup fails the test for any request that left 127.0.0.1.
}
