package htmlrewrite

import (
	"bytes"
	"io"
	"net/url"
	"strings"
	"testing"
)

// testPolicy refuses marketing and analytics, knows a few hosts, and
// injects a marker.
type testPolicy struct{ granted map[string]bool }

func (p testPolicy) Refused(c string) bool { return !p.granted[c] }

func (p testPolicy) ClassifyURL(u *url.URL) (Classification, bool) {
	switch {
	case u.Host == "www.googletagmanager.com":
		return Classification{"analytics", "Google Tag Manager"}, true
	case u.Host == "connect.facebook.net", u.Host == "www.facebook.com":
		return Classification{"marketing", "Meta"}, true
	case strings.HasSuffix(u.Host, "youtube.com"):
		return Classification{"marketing", "YouTube"}, true
	}
	return Classification{}, false
}

func (p testPolicy) ClassifyInline(code []byte) (Classification, bool) {
	if bytes.Contains(code, []byte("fbq(")) {
		return Classification{"marketing", "Meta"}, true
	}
	return Classification{}, false
}

func (p testPolicy) Inject(lang string) []byte { return []byte("<!--CG:" + lang + "-->") }

func rewrite(t testing.TB, in string, granted ...string) (string, Stats) {
	t.Helper()
	p := testPolicy{granted: map[string]bool{"necessary": true}}
	for _, g := range granted {
		p.granted[g] = true
	}
	var out bytes.Buffer
	st, err := Rewrite(&out, strings.NewReader(in), p)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), st
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name, in, want string
		granted        []string
	}{
		{"inject before head end", `<html lang="ru"><head><title>x</title></head><body>hi</body></html>`,
			`<html lang="ru"><head><title>x</title><!--CG:ru--></head><body>hi</body></html>`, nil},
		{"inject at body start without head", `<html><body><p>hi</p></body></html>`,
			`<html><body><!--CG:--><p>hi</p></body></html>`, nil},
		{"fragment gets nothing", `<div>partial</div>`, `<div>partial</div>`, nil},
		{"inject once", `<head></head><body></body><head></head>`, `<head><!--CG:--></head><body></body><head></head>`, nil},
		{"gtm script neutralised", `<head><script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script></head>`,
			`<head><script type="text/plain" data-consent="analytics" data-cg-src="https://www.googletagmanager.com/gtag/js?id=G-1" async=""></script><!--CG:--></head>`, nil},
		{"gtm script kept with analytics", `<script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>`,
			`<script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>`, []string{"analytics"}},
		{"inline pixel code", `<script>fbq('init', '1'); fbq('track', 'PageView');</script>`,
			`<script type="text/plain" data-consent="marketing">fbq('init', '1'); fbq('track', 'PageView');</script>`, nil},
		{"inline other code kept", `<script>console.log("a</b>")</script>`, `<script>console.log("a</b>")</script>`, nil},
		{"module type kept in data", `<script type="module" src="//connect.facebook.net/x.js"></script>`,
			`<script type="text/plain" data-consent="marketing" data-cg-type="module" data-cg-src="//connect.facebook.net/x.js"></script>`, nil},
		{"json-ld untouched", `<script type="application/ld+json">{"fbq(":1}</script>`, `<script type="application/ld+json">{"fbq(":1}</script>`, nil},
		{"site-marked stays", `<script type="text/plain" data-consent="analytics">x()</script>`, `<script type="text/plain" data-consent="analytics">x()</script>`, nil},
		{"data-consent on active script", `<script data-consent="analytics" src="/local.js"></script>`,
			`<script type="text/plain" data-consent="analytics" data-cg-src="/local.js"></script>`, nil},
		{"youtube iframe placeholder", `<iframe width="560" src="https://www.youtube.com/embed/abc" allowfullscreen></iframe><p>after</p>`,
			`<iframe src="about:blank" hidden data-cg-src="https://www.youtube.com/embed/abc" data-consent="marketing" data-cg-service="YouTube" width="560" allowfullscreen=""></iframe><div class="cg-embed" data-consent="marketing" data-cg-service="YouTube"></div><p>after</p>`, nil},
		{"youtube kept with marketing", `<iframe src="https://www.youtube.com/embed/abc"></iframe>`, `<iframe src="https://www.youtube.com/embed/abc"></iframe>`, []string{"marketing"}},
		{"pixel removed", `<p>a<img height="1" width="1" src="https://www.facebook.com/tr?id=1&ev=PageView">b</p>`, `<p>ab</p>`, nil},
		{"pixel in noscript removed", `<noscript><img src="https://www.facebook.com/tr?id=1"/></noscript>`, `<noscript></noscript>`, nil},
		{"pixel in srcset removed", `<img srcset="/a.png 1x, https://www.facebook.com/tr?id=1 2x">`, ``, nil},
		{"backslash host", `<script src="https:\\www.googletagmanager.com/gtag/js"></script>`,
			`<script type="text/plain" data-consent="analytics" data-cg-src="https:\\www.googletagmanager.com/gtag/js"></script>`, nil},
		{"entity-encoded slashes", `<img src="https:&#x2f;&#x2f;www.facebook.com/tr?id=1">`, ``, nil},
		{"upper-case data-consent", `<script DATA-CONSENT="analytics">track()</script>`, `<script type="text/plain" data-consent="analytics">track()</script>`, nil},
		{"nested noscript passes", `<noscript><noscript><img src="https://www.facebook.com/tr"></noscript></noscript>`, `<noscript><noscript><img src="https://www.facebook.com/tr"></noscript></noscript>`, []string{"marketing"}},
		{"picture source removed", `<picture><source srcset="https://www.facebook.com/tr?id=1"><img src="/a.png"></picture>`, `<picture><img src="/a.png"></picture>`, nil},
		{"tracker preload removed", `<head><link rel="preload" as="script" href="https://www.googletagmanager.com/gtag/js?id=G-1"><link rel="stylesheet" href="/site.css"></head>`, `<head><link rel="stylesheet" href="/site.css"><!--CG:--></head>`, nil},
		{"embed and object removed", `<embed src="https://www.youtube.com/v/x"><object data="https://www.youtube.com/v/y"></object>`, `</object>`, nil},
		{"preload kept when granted", `<link rel="preload" href="https://www.googletagmanager.com/gtag/js">`, `<link rel="preload" href="https://www.googletagmanager.com/gtag/js">`, []string{"analytics"}},
		{"local img kept", `<img src="/logo.png" alt="a &amp; b">`, `<img src="/logo.png" alt="a &amp; b">`, nil},
		{"malformed kept", `<div <<p>unclosed "quote <script src=x`, `<div <<p>unclosed "quote <script src=x`, nil},
		{"attribute escaping", `<script src="https://www.googletagmanager.com/a?b=1&amp;c=&quot;2&quot;" data-x='"&lt;'></script>`,
			`<script type="text/plain" data-consent="analytics" data-cg-src="https://www.googletagmanager.com/a?b=1&amp;c=&#34;2&#34;" data-x="&#34;&lt;"></script>`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := rewrite(t, tt.in, tt.granted...)
			if got != tt.want {
				t.Fatalf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDeepNoscriptIsCheap(t *testing.T) {
	in := strings.Repeat("<noscript>", 20000)
	var out bytes.Buffer
	if _, err := Rewrite(&out, strings.NewReader(in), testPolicy{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Fatal("nested noscript content changed")
	}
}

func TestStats(t *testing.T) {
	_, st := rewrite(t, `<html><head><script src="https://www.googletagmanager.com/x"></script></head><body><iframe src="https://youtube.com/embed/1"></iframe><img src="https://www.facebook.com/tr"></body></html>`)
	if st.Scripts != 1 || st.Iframes != 1 || st.Images != 1 || !st.Injected {
		t.Fatalf("stats = %+v", st)
	}
}

// TestStreaming checks that output flows before the input ends.
func TestStreaming(t *testing.T) {
	pr, pw := io.Pipe()
	out := &notifyWriter{ch: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := Rewrite(out, pr, testPolicy{})
		done <- err
	}()
	io.WriteString(pw, `<html><head><title>t</title></head><body>`+strings.Repeat("<p>x</p>", 2000))
	<-out.ch // something was written while the page is still open
	io.WriteString(pw, `</body></html>`)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type notifyWriter struct{ ch chan struct{} }

func (w *notifyWriter) Write(p []byte) (int, error) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func FuzzRewrite(f *testing.F) {
	f.Add(`<html><head></head><body><script src="https://www.googletagmanager.com/x"></script></body></html>`)
	f.Add(`<iframe src="https://youtube.com/x">`)
	f.Add(`<noscript><img src=https://www.facebook.com/tr></noscript>`)
	f.Add(`<script>fbq(1)`)
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if _, err := Rewrite(&out, strings.NewReader(in), testPolicy{granted: map[string]bool{"analytics": true, "marketing": true, "necessary": true}}); err != nil {
			t.Fatal(err)
		}
		// With everything granted the only change is the injected marker.
		got := strings.Replace(out.String(), "<!--CG:", "", 1)
		if i := strings.Index(out.String(), "<!--CG:"); i >= 0 {
			end := strings.Index(out.String()[i:], "-->")
			got = out.String()[:i] + out.String()[i+end+3:]
		}
		if got != in {
			t.Fatalf("content changed with everything granted:\n in %q\nout %q", in, out.String())
		}
	})
}

func benchPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
<script>fbq('init','1');</script></head><body>`)
	for b.Len() < size {
		b.WriteString(`<div class="product"><h2>Product name</h2><p>Some description text with <a href="/p/1">a link</a> and <b>bold</b> words.</p><img src="/img/p1.jpg" alt="p"></div>` + "\n")
	}
	b.WriteString(`<iframe src="https://www.youtube.com/embed/x"></iframe></body></html>`)
	return b.Bytes()
}

func BenchmarkRewrite(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"10KiB", 10 << 10}, {"100KiB", 100 << 10}, {"1MiB", 1 << 20}} {
		page := benchPage(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			p := testPolicy{granted: map[string]bool{"necessary": true}}
			for b.Loop() {
				if _, err := Rewrite(io.Discard, bytes.NewReader(page), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
