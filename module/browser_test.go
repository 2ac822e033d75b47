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
<script>
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

const (
	youTubeFrame = `<iframe width="560" height="315" src="https://www.youtube.com/embed/x" title="Shop tour" allowfullscreen></iframe>`
	localFrame   = `<iframe width="560" height="315" src="/embed" data-consent="marketing" title="Shop tour"></iframe>`
)

var langRE = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$`)

// browserUpstream serves the test site: / and /page2 embed YouTube, /shop
// and /shop2 a local player whose iframe is marked as marketing. ?lang=
// sets the page's language. Every page sets a _ga cookie, as sites with
// Google Analytics on the server side do.
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
		default:
			http.NotFound(w, r)
			return
		}
		lang := r.URL.Query().Get("lang")
		if !langRE.MatchString(lang) {
			lang = "en"
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Add("Set-Cookie", "_ga=GA1.2.2.2; Path=/")
		fmt.Fprint(w, strings.NewReplacer("{{LANG}}", lang, "{{TITLE}}", title, "{{NEXT}}", next, "{{FRAME}}", frame).Replace(browserPage))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func startBrowserGateway(t *testing.T) *gateway {
	chromiumPath(t) // skip before starting anything
	up := browserUpstream(t)
	return startGateway(t, globalOpts+`
http://127.0.0.1:{{PORT}} {
	consent {
		policy_url /privacy
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.Listener.Addr().String(), "GLOBAL": ""})
}

// chromiumPath finds the browser, or skips the test (fails it when
// CONSENTGATE_BROWSER_TESTS=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests are skipped in -short mode")
	}
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
