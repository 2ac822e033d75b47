package consentgate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/consentgate/consentgate/module/internal/benchutil"
	"github.com/consentgate/consentgate/module/internal/policy"
	"github.com/consentgate/consentgate/module/internal/store"
	"github.com/consentgate/consentgate/module/internal/token"
)

// newTestHandler returns a handler set up with a real store in a temp
// directory and a generated key, without a running Caddy.
func newTestHandler(t testing.TB, h *Handler) *Handler {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	k, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := token.NewKeyring(k)
	app := &App{store: s, keys: kr, metrics: newMetrics(nil), logger: zap.NewNop(), privacy: new(appPrivacy)}
	if err := h.setup(app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	return h
}

// withCaddyContext adds what Caddy's server puts in every request context:
// the variables table and the replacer.
func withCaddyContext(r *http.Request) *http.Request {
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "203.0.113.9"})
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
	return r.WithContext(ctx)
}

func issueToken(t testing.TB, h *Handler, site string, granted ...string) string {
	t.Helper()
	id, _ := token.NewID()
	tok, err := token.Encode(h.app.keys.Signing(), site, token.Claims{
		ID: id, Issued: h.now(), Policy: h.PolicyVersion, Granted: granted,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var upstreamSetCookies = []string{"session=abc; Path=/; HttpOnly", "_ga=GA1.1.1.2; Path=/", "_fbp=fb.1.2.3; Path=/"}

// upstreamNext answers like an upstream that sets three cookies. It fills
// the header from a reused slice so benchmarks count only the handler's
// allocations.
var upstreamNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	buf := setCookieBuf.Get().(*[]string)
	*buf = append((*buf)[:0], upstreamSetCookies...)
	w.Header()["Set-Cookie"] = *buf
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(okBody)
	setCookieBuf.Put(buf)
	return err
})

var (
	okBody       = []byte("ok")
	setCookieBuf = sync.Pool{New: func() any { s := make([]string, 0, 4); return &s }}
)

func TestResponseWriterFiltersOnFlushAndReadFrom(t *testing.T) {
	h := newTestHandler(t, &Handler{Site: "shop"})
	for name, next := range map[string]caddyhttp.HandlerFunc{
		"flush before write": func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Add("Set-Cookie", "_fbp=1")
			return http.NewResponseController(w).Flush()
		},
		"readfrom": func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Add("Set-Cookie", "_fbp=1")
			_, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("body"))
			return err
		},
		"implicit header on write": func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Add("Set-Cookie", "_fbp=1")
			_, err := w.Write([]byte("x"))
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := withCaddyContext(httptest.NewRequest(http.MethodGet, "http://shop/", nil))
			if err := h.ServeHTTP(rec, r, next); err != nil {
				t.Fatal(err)
			}
			if got := rec.Result().Header.Values("Set-Cookie"); len(got) != 0 {
				t.Fatalf("unfiltered Set-Cookie escaped: %v", got)
			}
		})
	}
}

func TestDecisionPlaceholdersWithoutRequest(t *testing.T) {
	var d *Decision
	if d.Has("analytics") || d.IDString() != "" || len(d.GrantedNames()) != 0 {
		t.Fatal("nil decision must grant nothing")
	}
}

// BenchmarkServeHTTP measures the consent handler's per-request path for a
// decided visitor: token verification, request cookie filtering, response
// Set-Cookie filtering and the placeholders, with a trivial next handler.
func BenchmarkServeHTTP(b *testing.B) {
	h := newTestHandler(b, &Handler{})
	tok := issueToken(b, h, "shop.example", "necessary", "analytics")
	line := "cg_consent=" + tok + "; session=abc; _ga=GA1.1.1.2; _fbp=fb.1.2.3"
	r := withCaddyContext(httptest.NewRequest(http.MethodGet, "http://shop.example/page?x=1", nil))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	benchServe(b, h, r, w, upstreamNext, line)
	if got := w.h.Values("Set-Cookie"); len(got) != 2 {
		b.Fatalf("Set-Cookie = %v", got)
	}
}

// BenchmarkServeHTTPNoCookies is a first visit: no token, no cookies.
func BenchmarkServeHTTPNoCookies(b *testing.B) {
	h := newTestHandler(b, &Handler{})
	r := withCaddyContext(httptest.NewRequest(http.MethodGet, "http://shop.example/", nil))
	w := &discardWriter{h: http.Header{}}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	b.ReportAllocs()
	benchServe(b, h, r, w, next, "")
}

// benchServe serves r with h b.N times, each as a new request: the
// cookie line restored (the handler rewrites it in place), the answer's
// header and the request's decision cleared.
func benchServe(b *testing.B, h *Handler, r *http.Request, w *discardWriter, next caddyhttp.Handler, cookie string) {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	cookieLine := []string{cookie}
	for b.Loop() {
		if cookie != "" {
			cookieLine[0] = cookie
			r.Header["Cookie"] = cookieLine
		}
		clear(w.h)
		delete(vars, decisionVarKey)
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// FuzzConsentAPI posts arbitrary bodies with arbitrary content types and
// origins: the API must never panic, must answer a known status, and must
// record a decision and set the cookie exactly when it answers success.
func FuzzConsentAPI(f *testing.F) {
	h := newTestHandler(f, &Handler{Site: "shop"})
	f.Add("POST", "application/json", `{"granted":["analytics"]}`, "")
	f.Add("POST", "application/json", `{"all":true}`, "http://shop")
	f.Add("POST", "application/x-www-form-urlencoded", "granted=analytics&return=/x", "")
	f.Add("POST", "application/x-www-form-urlencoded", "action=save", "")
	f.Add("POST", "application/json; charset=utf-8", `{"none":true}`, "https://evil")
	f.Add("DELETE", "", "", "")
	f.Add("POST", "multipart/form-data; boundary=x", "--x--", "")
	f.Add("POST", "application/json", `{"granted":null}`, "")
	f.Fuzz(func(t *testing.T, method, ctype, body, origin string) {
		if method != "POST" && method != "DELETE" && method != "GET" {
			method = "POST"
		}
		before, _ := h.app.store.CountRecords("")
		r := httptest.NewRequest(method, "http://shop/_consent/state", strings.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		r = withCaddyContext(r)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, upstreamNext); err != nil {
			t.Fatalf("handler error: %v", err)
		}
		after, _ := h.app.store.CountRecords("")
		setsConsent := strings.Contains(strings.Join(rec.Result().Header.Values("Set-Cookie"), "\n"), "cg_consent=")
		switch rec.Code {
		case 200, 303:
			if method == "GET" {
				if setsConsent || after != before {
					t.Fatal("GET changed state")
				}
				return
			}
			if !setsConsent || after != before+2 && after != before+1 {
				t.Fatalf("success without record/cookie: records %d→%d, cookie %v", before, after, setsConsent)
			}
			if rec.Code == 303 {
				if loc := rec.Header().Get("Location"); !localPath(loc) {
					t.Fatalf("redirect off site: %q", loc)
				}
			}
		case 400, 403, 405, 413, 415, 429:
			if setsConsent || after != before {
				t.Fatalf("%d changed state: records %d→%d, cookie %v", rec.Code, before, after, setsConsent)
			}
			if !strings.Contains(rec.Body.String(), `"error"`) {
				t.Fatalf("%d without JSON error: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
		}
	})
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"shop.example":      "shop.example",
		"shop.example:8080": "shop.example",
		"[::1]":             "::1",
		"[::1]:443":         "::1",
		"::1":               "::1",
		"127.0.0.1:80":      "127.0.0.1",
		"":                  "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkDecisionsParallel posts decisions through the handler from 64
// concurrent clients; each answer is sent only after its record is synced
// to disk, so decisions/s is the durable rate.
func BenchmarkDecisionsParallel(b *testing.B) {
	h := newTestHandler(b, &Handler{Site: "shop", RateLimit: &RateLimit{Burst: -1}})
	benchutil.Clients(b, 64, "decisions", func(int) error {
		r := withCaddyContext(httptest.NewRequest(http.MethodPost, "http://shop/_consent/state", strings.NewReader(`{"granted":["analytics"]}`)))
		r.Header.Set("Content-Type", "application/json")
		return h.ServeHTTP(&discardWriter{h: http.Header{}}, r, upstreamNext)
	})
}

func TestConsentCookieSecureOnHTTPS(t *testing.T) {
	h := newTestHandler(t, &Handler{Site: "shop"})
	r := withCaddyContext(httptest.NewRequest(http.MethodPost, "https://shop/_consent/state", strings.NewReader(`{"all":true}`)))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, upstreamNext); err != nil {
		t.Fatal(err)
	}
	c := rec.Result().Cookies()
	if len(c) != 1 || c[0].Name != DefaultCookieName || !c[0].Secure || !c[0].HttpOnly || c[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("cookie over HTTPS = %+v", c)
	}
}

func TestNecessaryCategoryIsAlwaysRequired(t *testing.T) {
	h := newTestHandler(t, &Handler{Categories: []policy.Category{{Name: "necessary"}, {Name: "analytics"}}})
	if len(h.Categories) != 2 || !h.Categories[0].Required {
		t.Fatalf("categories = %+v", h.Categories)
	}
	h = newTestHandler(t, &Handler{Categories: []policy.Category{{Name: "stats"}}})
	if len(h.Categories) != 2 || h.Categories[0].Name != "necessary" || !h.Categories[0].Required {
		t.Fatalf("categories without a required one = %+v", h.Categories)
	}
}

func TestRetentionFollowsReload(t *testing.T) {
	h := newTestHandler(t, &Handler{Site: "shop"})
	h.app.store.SetRetention(24 * time.Hour)
	if h.app.store.Retention() != 24*time.Hour {
		t.Fatal("retention not applied")
	}
	h.app.store.SetRetention(0)
	if h.app.store.Retention() != store.DefaultRetention {
		t.Fatal("zero retention must mean the default")
	}
}

func TestDecisionLimiterRefillsAndForgets(t *testing.T) {
	l := newDecisionLimiter(2, time.Second)
	t0 := time.Unix(1_700_000_000, 0)
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("first")
	}
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("second")
	}
	if ok, wait := l.allow("a", t0); ok || wait != time.Second {
		t.Fatalf("third: %v %v", ok, wait)
	}
	if ok, _ := l.allow("a", t0.Add(time.Second)); !ok {
		t.Fatal("after a refill")
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("other client")
	}
	l.sweep(t0.Add(time.Hour))
	if len(l.buckets) != 0 {
		t.Fatalf("idle clients kept: %d", len(l.buckets))
	}
	var nilLimiter *decisionLimiter
	if ok, _ := nilLimiter.allow("a", t0); !ok {
		t.Fatal("no limiter must allow")
	}
}

// BenchmarkServeHTML is the consent handler on an HTML page (cgbench's
// shape: a GA tag, a pixel script, product markup and a YouTube embed),
// written by the next handler in 32 KiB pieces as reverse_proxy does:
// injection, rewriting and the stream handoff, on a first visit (the
// whole banner) and for a visitor who has decided (cgbench's case).
func BenchmarkServeHTML(b *testing.B) {
	for _, size := range []int{10 << 10, 50 << 10, 100 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			benchServeHTML(b, size, false)
		})
	}
	b.Run("decided/50KiB", func(b *testing.B) { benchServeHTML(b, 50<<10, true) })
	// The fixed cost: a page with the same head and embed, one product.
	b.Run("decided/1KiB", func(b *testing.B) { benchServeHTML(b, 1<<10, true) })
}

func benchServeHTML(b *testing.B, size int, decided bool) {
	h := newTestHandler(b, &Handler{})
	var line string
	if decided {
		line = "cg_consent=" + issueToken(b, h, "shop.example", "necessary", "analytics") + "; session=abc; _ga=GA1.1.1.2; _fbp=fb.1.2.3"
	}
	page := benchPage(size)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		for p := page; len(p) > 0; {
			n := min(len(p), 32<<10)
			if _, err := w.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	})
	r := withCaddyContext(httptest.NewRequest(http.MethodGet, "http://shop.example/", nil))
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	benchServe(b, h, r, w, next, line)
}

func benchPage(size int) []byte {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
<script>fbq('init','1');</script></head><body>`)
	for b.Len() < size {
		b.WriteString(`<div class="product"><h2>Product</h2><p>Description with <a href="/p/1">a link</a> and <b>bold</b> words.</p><img src="/img/p1.jpg" alt="p"></div>` + "\n")
	}
	b.WriteString(`<iframe src="https://www.youtube.com/embed/x"></iframe></body></html>`)
	return []byte(b.String())
}

// TestAppendStateMatchesJSON: the page's state is encoded by hand; it must
// be exactly what encoding/json makes of stateOf, for any decision and
// any policy version, regime or category name.
func TestAppendStateMatchesJSON(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	expires := time.Date(2027, 5, 27, 2, 3, 15, 0, time.UTC)
	odd := []string{"", "1", "2026-11", `v"2"`, `a\b`, "<script>", "a<b", "a>b", "x&y", "caf\u00e9", "\u2028", "\x01\x7f", "bad\xffutf8", "\U0001F600"}
	for _, pv := range odd {
		for _, regime := range []string{"opt-in", "opt-out", pv} {
			for _, d := range []Decision{
				{PolicyVersion: pv, Regime: regime, site: h.site},
				{Decided: true, ID: token.ID{1, 2, 3}, Granted: 0b101, PolicyVersion: pv, Regime: regime, GPC: true, Expires: expires, site: h.site},
				{Decided: true, Granted: 0b1111, PolicyVersion: pv, Regime: regime, Expires: expires.Add(123456789 * time.Nanosecond).In(time.FixedZone("x", 3600)), site: h.site},
				{Decided: true, PolicyVersion: pv, Regime: regime, Expires: expires},
			} {
				want, err := json.Marshal(stateOf(&d))
				if err != nil {
					t.Fatal(err)
				}
				if got := appendState([]byte("x"), &d); string(got[1:]) != string(want) {
					t.Fatalf("appendState:\n got %s\nwant %s", got[1:], want)
				}
			}
		}
	}
}
