package htmlrewrite

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	whatwg "github.com/nlnwa/whatwg-url/url"
)

// testPolicy refuses marketing and analytics, knows a few hosts, and
// injects a marker, and early, when set, as the early markup.
type testPolicy struct {
	granted map[string]bool
	early   string
}

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

func (p testPolicy) InjectEarly() []byte {
	if p.early == "" {
		return nil
	}
	return []byte(p.early)
}

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

// earlyMark is the early markup of the tests.
const earlyMark = "<!--E-->"

func TestRewriteEarly(t *testing.T) {
	tests := []struct {
		name, in, want string
		early          bool // Stats.Early
	}{
		{"after head", `<!doctype html><html lang="en"><head><title>x</title><script>gtag('js')</script></head><body>`,
			`<!doctype html><html lang="en"><head>` + earlyMark + `<title>x</title><script>gtag('js')</script><!--CG:en--></head><body>`, true},
		{"head with attributes", `<HEAD class="a" data-x='>'><script>x()</script>`,
			`<HEAD class="a" data-x='>'>` + earlyMark + `<script>x()</script>`, true},
		{"self-closing head", `<head/><meta charset=utf-8>`, `<head/>` + earlyMark + `<meta charset=utf-8>`, true},
		{"before the first script without head", `<html><meta charset=utf-8><script>a()</script><script>b()</script><body>`,
			`<html><meta charset=utf-8>` + earlyMark + `<script>a()</script><script>b()</script><body><!--CG:-->`, true},
		{"before a neutralised script", `<html><script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>`,
			`<html>` + earlyMark + `<script type="text/plain" data-consent="analytics" data-cg-src="https://www.googletagmanager.com/gtag/js?id=G-1" async=""></script>`, true},
		{"before a held inline script", `<html><script>fbq('init')</script>`,
			`<html>` + earlyMark + `<script type="text/plain" data-consent="marketing">fbq('init')</script>`, true},
		{"at body start without head or script", `<html><body><p>x</p>`, `<html><body>` + earlyMark + `<!--CG:--><p>x</p>`, true},
		{"at body start before later scripts", `<body><script>a()</script>`, `<body>` + earlyMark + `<!--CG:--><script>a()</script>`, true},
		{"before the banner at a lone head end", `<html><title>t</title></head>`, `<html><title>t</title>` + earlyMark + `<!--CG:--></head>`, true},
		{"fragment gets nothing", `<div><script>a()</script></div>`, `<div><script>a()</script></div>`, false},
		{"header is not head", `<header><script>a()</script></header>`, `<header><script>a()</script></header>`, false},
		{"head in a comment", `<!-- <head> --><script>a()</script><head>`, `<!-- <head> --><script>a()</script><head>` + earlyMark, true},
		{"head in a script", `<script>document.write("<head>")</script><head>`, `<script>document.write("<head>")</script><head>` + earlyMark, true},
		{"head in raw text", `<title><head></title><textarea><head></textarea><head>`, `<title><head></title><textarea><head></textarea><head>` + earlyMark, true},
		{"head in noscript", `<noscript><head><html></noscript><script>a()</script><head>`, `<noscript><head><html></noscript><script>a()</script><head>` + earlyMark, true},
		{"once", `<head></head><head><script>a()</script><body>`, `<head>` + earlyMark + `<!--CG:--></head><head><script>a()</script><body>`, true},
	}
	p := testPolicy{granted: map[string]bool{"necessary": true}, early: earlyMark}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			st, err := Rewrite(&out, strings.NewReader(tt.in), p)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want || st.Early != tt.early {
				t.Fatalf("\n got %s (early %v)\nwant %s (early %v)", out.String(), st.Early, tt.want, tt.early)
			}
			checkSameAsReference(t, []byte(tt.in))
		})
	}
}

// TestRewriteWithoutEarly checks that a policy with no early markup (nil,
// as a banner that is off gives) changes nothing and counts nothing.
func TestRewriteWithoutEarly(t *testing.T) {
	in := `<html><head><script>a()</script></head><body>`
	got, st := rewrite(t, in)
	if want := `<html><head><script>a()</script><!--CG:--></head><body>`; got != want || st.Early {
		t.Fatalf("got %s %+v, want %s", got, st, want)
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

// TestMayMatter checks the word-at-a-time mayMatter against a plain byte
// loop, around the word boundaries where the two could differ.
func TestMayMatter(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("ab/\\&#:=\" >\t\n\r\x00\x7f\x80\xff")
	var cases []string
	for n := range 40 {
		for _, w := range []string{"//", `\`, "&", ":", "/", "\t", "\n", "\r", "\x0e", "\x80"} {
			for at := 0; at+len(w) <= n; at++ {
				b := bytes.Repeat([]byte("x"), n)
				copy(b[at:], w)
				cases = append(cases, string(b))
			}
		}
	}
	for range 20000 {
		b := make([]byte, rnd.IntN(48))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	bytewise := func(b []byte) bool {
		for i, c := range b {
			if c == '\\' || c == '&' || c == ':' || c <= '\r' || c == '/' && i+1 < len(b) && b[i+1] == '/' {
				return true
			}
		}
		return false
	}
	for _, c := range cases {
		if got, want := mayMatter([]byte(c)), bytewise([]byte(c)); got != want {
			t.Fatalf("mayMatter(%q) = %v, want %v", c, got, want)
		}
	}
}

// TestWriterPieces writes a page in pieces of every size from one byte
// to more than the page and compares with Rewrite.
func TestWriterPieces(t *testing.T) {
	page := benchPage(6 << 10)
	p := diffPolicies[0]
	var want bytes.Buffer
	wantSt, err := Rewrite(&want, bytes.NewReader(page), p)
	if err != nil {
		t.Fatal(err)
	}
	for size := 1; size <= len(page)+1; size += 1 + size/4 {
		var got bytes.Buffer
		w := NewWriter(&got, p)
		for rest := page; len(rest) > 0; {
			n := min(size, len(rest))
			if k, err := w.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("pieces of %d: Write = %d, %v", size, k, err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) || w.Stats() != wantSt {
			t.Fatalf("pieces of %d: output differs from Rewrite's", size)
		}
		if _, err := w.Write([]byte("<p>")); err == nil {
			t.Fatal("Write after Close succeeded")
		}
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

// benchPage builds a page of about size bytes shaped like a shop or news
// page: a head with metadata, stylesheets and tag manager snippets; a
// body of nested div/a/span/li with class attributes, product cards with
// images (some from a CDN, so their attributes are read), text, inline
// JSON and an analytics snippet, one embedded video and a noscript pixel.
func benchPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!DOCTYPE html>
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Winter collection – Example Shop</title>
<link rel="stylesheet" href="/assets/css/main.min.css?v=3f2a91">
<link rel="preconnect" href="https://cdn.example-shop.com" crossorigin>
<link rel="preload" as="script" href="https://www.googletagmanager.com/gtag/js?id=G-1">
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date()); gtag('config', 'G-1');</script>
<script>!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?n.callMethod.apply(n,arguments):n.queue.push(arguments)};}(window, document,'script','https://connect.facebook.net/en_US/fbevents.js'); fbq('init', '1'); fbq('track', 'PageView');</script>
<style>.card{display:flex}.card > .price{font-weight:700}</style>
</head>
<body class="page page--category">
<noscript><img height="1" width="1" style="display:none" src="https://www.facebook.com/tr?id=1&amp;ev=PageView&amp;noscript=1"></noscript>
<header class="site-header"><nav class="nav"><ul class="nav__list">`)
	for i := range 8 {
		fmt.Fprintf(&b, `<li class="nav__item"><a class="nav__link" href="/c/%d">Category %d</a></li>`, i, i)
	}
	b.WriteString("</ul></nav></header>\n<main id=\"content\" class=\"container\">\n")
	for i := 0; b.Len() < size; i++ {
		switch {
		case i%10 == 9:
			b.WriteString(`<article class="post"><h2 class="post__title">Notes from the workshop</h2><p>Every coat is cut and sewn by hand in our workshop; the wool comes from two farms we have worked with for years. <em>Care:</em> air it out rather than wash it, and brush it along the grain.</p><p>Questions? <a href="/contact" class="link">Write to us</a> &mdash; we answer within a day.</p></article>` + "\n")
		case i%25 == 24:
			b.WriteString(`<script type="application/ld+json">{"@context":"https://schema.org","@type":"Product","name":"Wool coat","offers":{"@type":"Offer","price":"189.00","priceCurrency":"EUR"}}</script>` + "\n")
		case i%40 == 39:
			b.WriteString(`<div class="video"><iframe width="560" height="315" src="https://www.youtube.com/embed/abc123" title="Lookbook" allowfullscreen></iframe></div>` + "\n")
		default:
			img := fmt.Sprintf(`<img class="card__img" src="/img/p%d.jpg" alt="Wool coat %d" loading="lazy" width="320" height="400">`, i, i)
			if i%3 == 0 {
				img = fmt.Sprintf(`<img class="card__img" src="https://cdn.example-shop.com/img/p%d.jpg?w=320&amp;q=80" srcset="https://cdn.example-shop.com/img/p%d.jpg?w=640&amp;q=80 2x" alt="Wool coat %d" loading="lazy">`, i, i, i)
			}
			fmt.Fprintf(&b, `<div class="card col-6 col-md-4" data-id="%d"><a class="card__link" href="/p/wool-coat-%d">%s<div class="card__body"><span class="card__brand">Example</span> <span class="card__name">Wool coat, model %d</span> <span class="price"><span class="price__value">189,00</span> <span class="price__currency">€</span></span></div></a><button type="button" class="btn btn--add" data-sku="WC-%d">Add to cart</button></div>`+"\n", i, i, img, i, i)
		}
	}
	b.WriteString(`</main>
<footer class="site-footer"><p>&copy; Example Shop &middot; <a href="/privacy">Privacy</a></p></footer>
<script src="/assets/js/app.min.js" defer></script>
</body>
</html>
`)
	return b.Bytes()
}

// cgbenchPage is the page cmd/cgbench serves: dense markup, every image
// local.
func cgbenchPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
<script>fbq('init','1');</script></head><body>`)
	for b.Len() < size {
		b.WriteString(`<div class="product"><h2>Product</h2><p>Description with <a href="/p/1">a link</a> and <b>bold</b> words.</p><img src="/img/p1.jpg" alt="p"></div>` + "\n")
	}
	b.WriteString(`<iframe src="https://www.youtube.com/embed/x"></iframe></body></html>`)
	return b.Bytes()
}

func BenchmarkRewrite(b *testing.B) {
	for _, impl := range []struct {
		name    string
		rewrite func(io.Writer, io.Reader, Policy) (Stats, error)
	}{{"scanner", Rewrite}, {"reference", rewriteReference}} {
		for _, page := range []struct {
			name string
			html []byte
		}{
			{"10KiB", benchPage(10 << 10)},
			{"100KiB", benchPage(100 << 10)},
			{"1MiB", benchPage(1 << 20)},
			{"cgbench50KiB", cgbenchPage(50 << 10)},
		} {
			b.Run(impl.name+"/"+page.name, func(b *testing.B) {
				b.SetBytes(int64(len(page.html)))
				b.ReportAllocs()
				var p Policy = testPolicy{granted: map[string]bool{"necessary": true}} // boxed once
				for b.Loop() {
					if _, err := impl.rewrite(io.Discard, bytes.NewReader(page.html), p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// docPolicy is testPolicy on a page whose URL the rewriter knows.
type docPolicy struct {
	testPolicy
	doc string
}

func (p docPolicy) DocumentURL() string { return p.doc }

// TestTrackerURLsAsBrowsersReadThem: a tracker's URL written in any way a
// browser still loads it from the tracker (WHATWG URL parsing: tabs and
// newlines dropped, backslashes, any number of slashes, percent-encoded
// and IDNA-mapped host names, bad escapes in the path) is held back; URLs
// that load from the page's own origin or from no host are not.
func TestTrackerURLsAsBrowsersReadThem(t *testing.T) {
	held := []string{
		"https://www.googletagmanager.com/gtag/js",
		"//www.googletagmanager.com/gtag/js",
		`\\www.googletagmanager.com/gtag/js`,
		"https://www.googletagmanager.com/gtag%zz/js",
		"https://www.googletagmanager.com&#9;/gtag/js",
		"ht&#10;tps://www.googletagmanager.com/gtag/js",
		"/&Tab;/www.googletagmanager.com/gtag/js",
		"https://www.googletagmanager%2Ecom/gtag/js",
		"https://www.googletagmanager\u3002com/gtag/js",
		"https://www.googletagmanager.com%2e/gtag/js",
		"https://\uff57\uff57\uff57.googletagmanager.com/gtag/js",
		"https:///www.googletagmanager.com/gtag/js",
		"HTTPS://USER@WWW.GOOGLETAGMANAGER.COM:443/gtag/js",
		"  https://www.googletagmanager.com/gtag/js\x01",
		// On an http page a scheme without slashes is still absolute.
		"https:www.googletagmanager.com/gtag/js",
	}
	kept := []string{
		"/gtag/js", "gtag/js", "?www.googletagmanager.com", "data:text/javascript,1",
		"javascript:void(0)", "blob:https://www.googletagmanager.com/x",
		"https://www.googletagmanager.com.evil.example/x", "https://[::1]/x",
	}
	p := docPolicy{testPolicy{granted: map[string]bool{"necessary": true}}, "http://shop.example/p/"}
	run := func(src string) string {
		var out bytes.Buffer
		if _, err := Rewrite(&out, strings.NewReader(`<script src="`+src+`"></script><img src="`+src+`">`), p); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	for _, src := range held {
		if out := run(src); !strings.Contains(out, `data-cg-src=`) || strings.Contains(out, "<img") {
			t.Errorf("%q not held back: %s", src, out)
		}
	}
	for _, src := range kept {
		if out := run(src); strings.Contains(out, `data-cg-src=`) || !strings.Contains(out, "<img") {
			t.Errorf("%q held back: %s", src, out)
		}
	}
	// On an https page, "https:host/x" is a path on the page's origin.
	p.doc = "https://shop.example/p/"
	if out := run("https:www.googletagmanager.com/gtag/js"); strings.Contains(out, `data-cg-src=`) {
		t.Errorf("same-origin path held back on an https page: %s", out)
	}
}

// TestBaseHref: after the document's first <base href>, relative URLs
// load from where it points; a later <base>, or one inside <noscript>,
// does not count.
func TestBaseHref(t *testing.T) {
	p := docPolicy{testPolicy{granted: map[string]bool{"necessary": true}}, "https://shop.example/"}
	rewriteWith := func(in string) string {
		var out bytes.Buffer
		if _, err := Rewrite(&out, strings.NewReader(in), p); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	out := rewriteWith(`<head><script src="before.js"></script><base href="https://www.youtube.com/"><base href="/"><script src="x.js"></script></head>` +
		`<body><img src="p.gif" alt="pixel"><iframe src="embed/v"></iframe></body>`)
	for _, want := range []string{`<script src="before.js">`, `data-cg-src="x.js"`, `data-cg-src="embed/v"`} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %s: %s", want, out)
		}
	}
	if strings.Contains(out, "<img") {
		t.Errorf("pixel relative to a tracker's base kept: %s", out)
	}
	out = rewriteWith(`<noscript><base href="https://www.youtube.com/"></noscript><script src="x.js"></script><base href="/b/"><script src="//www.youtube.com/y.js"></script>`)
	if strings.Contains(out, `data-cg-src="x.js"`) || !strings.Contains(out, `data-cg-src="//www.youtube.com/y.js"`) {
		t.Errorf("base in noscript counted, or absolute URL missed: %s", out)
	}
	if got, want := rewriteWith(`<base href="https://www.youtube.com/"><script src="x.js"></script>`), rewriteReferenceString(t, p, `<base href="https://www.youtube.com/"><script src="x.js"></script>`); got != want {
		t.Errorf("scanner and reference differ:\n%s\n%s", got, want)
	}
	// The injection is told about the base (here: documentedPolicy).
	var out2 bytes.Buffer
	dp := documentedPolicy{fuzzPolicy{testPolicy{granted: map[string]bool{"necessary": true}}}, "https://shop.example/"}
	if _, err := Rewrite(&out2, strings.NewReader(`<html><head><base href="sub/"></head><body></body></html>`), dp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), `<!--CG: under https://shop.example/sub/-->`) {
		t.Errorf("injection not told about the base: %s", out2.String())
	}
}

func rewriteReferenceString(t *testing.T, p Policy, in string) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := rewriteReference(&out, strings.NewReader(in), p); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestMoreElementsThatLoad: image inputs, <image> (an <img> in HTML, an
// image in SVG), <track>, and SVG scripts (href, xlink:href) load from a
// URL too.
func TestMoreElementsThatLoad(t *testing.T) {
	out, st := rewrite(t, `<form><input type="text" name="q"><input type="image" src="https://www.facebook.com/tr?id=1" alt="go"></form>`+
		`<image src="https://www.facebook.com/tr?id=2"><svg><image href="https://www.facebook.com/tr?id=3"/><image xlink:href="//www.facebook.com/tr?id=4"/>`+
		`<script href="https://www.googletagmanager.com/gtag/js"></script></svg><video><track src="https://www.youtube.com/t.vtt"></video><p>end</p>`)
	for _, gone := range []string{"tr?id=1", "tr?id=2", "tr?id=3", "tr?id=4", "t.vtt"} {
		if strings.Contains(out, gone) {
			t.Errorf("%s kept: %s", gone, out)
		}
	}
	if !strings.Contains(out, `<input type="text" name="q">`) || !strings.Contains(out, `<script type="text/plain" data-consent="analytics" href="https://www.googletagmanager.com/gtag/js">`) || !strings.Contains(out, "<p>end</p>") {
		t.Errorf("form field, SVG script or text wrong: %s", out)
	}
	if st.Images != 5 || st.Scripts != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestIframeSrcdoc: an iframe's srcdoc is a document run in the page's
// origin; its trackers are held back like the page's own, and a srcdoc
// without any passes untouched.
func TestIframeSrcdoc(t *testing.T) {
	in := `<iframe srcdoc="&lt;p&gt;hi&lt;/p&gt;&lt;script src=&quot;https://www.googletagmanager.com/gtag/js&quot;&gt;&lt;/script&gt;&lt;img src=https://www.facebook.com/tr?id=1&gt;" title="t"></iframe>` +
		`<iframe src="/local" srcdoc='<script>fbq("init")</script>'></iframe>` +
		`<iframe srcdoc="<p>plain &amp; simple</p>"></iframe>`
	out, st := rewrite(t, in)
	if strings.Contains(out, "tr?id=1") || strings.Contains(out, `&lt;script src=&#34;https://www.googletagmanager.com`) ||
		!strings.Contains(out, `data-cg-src=&#34;https://www.googletagmanager.com/gtag/js&#34;`) || !strings.Contains(out, `title="t"`) {
		t.Errorf("srcdoc trackers kept: %s", out)
	}
	if !strings.Contains(out, `srcdoc="&lt;script type=&#34;text/plain&#34; data-consent=&#34;marketing&#34;&gt;fbq(&#34;init&#34;)&lt;/script&gt;"`) {
		t.Errorf("inline pixel code in srcdoc kept: %s", out)
	}
	if !strings.Contains(out, `<iframe srcdoc="<p>plain &amp; simple</p>"></iframe>`) {
		t.Errorf("srcdoc without trackers changed: %s", out)
	}
	if st.Scripts != 2 || st.Images != 1 {
		t.Errorf("stats %+v", st)
	}
	if want := rewriteReferenceString(t, testPolicy{granted: map[string]bool{"necessary": true}}, in); out != want {
		t.Errorf("scanner and reference differ:\n%s\n%s", out, want)
	}
}

// TestRefusedLists: a data-consent list names categories apart by spaces
// or commas; any refused one refuses the element.
func TestRefusedLists(t *testing.T) {
	p := testPolicy{granted: map[string]bool{"necessary": true, "analytics": true}}
	for list, want := range map[string]bool{
		"": false, "analytics": false, "marketing": true, "analytics marketing": true,
		"analytics,marketing": true, " ,analytics, ,": false, ",,marketing,,": true,
		"necessary analytics": false, "analytics  ": false, "x": true,
	} {
		if got := refused(p, list); got != want {
			t.Errorf("refused(%q) = %v, want %v", list, got, want)
		}
	}
}

// FuzzPlainURL checks the fast path of resolver.target against the WHATWG
// parser it stands in for: whenever plainURL reads a URL, a browser's
// parse gives the same host and path. Nothing may panic.
func FuzzPlainURL(f *testing.F) {
	for _, s := range []string{
		"https://www.googletagmanager.com/gtag/js?id=G-1", "//m.example/x", "HTTP://A.B.C.:80/p?q#f",
		"https://user:pw@host:8080/a/../b/./c", "https://[::1]:443/x", "https://0x7f.1/x",
		"https://a..b/x", "https://a_b.example/", "https://xn--n3h.com/", "http://a:b@c@d/e",
	} {
		f.Add(s)
	}
	r := resolver{p: docPolicy{testPolicy{}, "https://shop.example/p/"}}
	f.Fuzz(func(t *testing.T, s string) {
		u, ok := r.target(s)
		pu, plain := plainURL(s)
		if !plain {
			return
		}
		if !ok {
			t.Fatalf("plainURL read %q but target did not", s)
		}
		w, err := whatwg.ParseRef("https://shop.example/p/", s)
		if err != nil || w.Hostname() == "" {
			// A browser would not load it; the fast path may still name
			// a host (holding back more, never less).
			return
		}
		if want := hostName(w.Hostname()); u.Host != want {
			t.Fatalf("%q: fast path host %q (plainURL %q), browser %q", s, u.Host, pu.Host, want)
		}
		wantPath := w.Pathname()
		if p, err := url.PathUnescape(wantPath); err == nil {
			wantPath = p
		}
		if wantPath == "/" && u.Path == "" {
			wantPath = "" // a browser asks for "/" where the URL has no path
		}
		if u.Path != wantPath {
			t.Fatalf("%q: fast path path %q, browser %q", s, u.Path, wantPath)
		}
	})
}

// pathPolicy knows a service by host and path prefix, as the catalog's
// "www.google.com/maps" does.
type pathPolicy struct{ testPolicy }

func (p pathPolicy) ClassifyURL(u *url.URL) (Classification, bool) {
	if u.Host == "www.google.com" && strings.HasPrefix(u.Path, "/maps") {
		return Classification{"marketing", "Google Maps"}, true
	}
	return Classification{}, false
}

// TestPathRulesSeeResolvedPaths: a path rule sees the path a browser asks
// for, with dot segments resolved and escapes decoded.
func TestPathRulesSeeResolvedPaths(t *testing.T) {
	p := pathPolicy{testPolicy{granted: map[string]bool{"necessary": true}}}
	for src, held := range map[string]bool{
		"https://www.google.com/maps/embed?pb=1": true,
		"https://www.google.com/x/../maps/embed": true,
		"https://www.google.com/./maps/embed":    true,
		"https://www.google.com/%6Daps/embed":    true,
		"https://www.google.com/search?q=/maps":  false,
		"https://www.google.com/x/maps":          false,
		"https://www.google.com/maps/../x/embed": false,
	} {
		var out bytes.Buffer
		if _, err := Rewrite(&out, strings.NewReader(`<iframe src="`+src+`"></iframe>`), p); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), "data-cg-src"); got != held {
			t.Errorf("%s: held %v, want %v", src, got, held)
		}
	}
}
