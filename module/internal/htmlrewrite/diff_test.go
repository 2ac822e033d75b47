package htmlrewrite

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

// fuzzPolicy knows the hosts of testPolicy and also classifies short
// hosts by their first letter (a: analytics, m: marketing, n: necessary),
// so that random input reaches the rewriting paths.
type fuzzPolicy struct{ testPolicy }

func (p fuzzPolicy) ClassifyURL(u *url.URL) (Classification, bool) {
	if c, ok := p.testPolicy.ClassifyURL(u); ok {
		return c, ok
	}
	switch {
	case strings.HasPrefix(u.Host, "a"):
		return Classification{"analytics", "A<&\"" + u.Path}, true
	case strings.HasPrefix(u.Host, "m"):
		return Classification{"marketing", "M"}, true
	case strings.HasPrefix(u.Host, "n"):
		return Classification{"necessary", "N"}, true
	}
	return Classification{}, false
}

func (p fuzzPolicy) ClassifyInline(code []byte) (Classification, bool) {
	switch {
	case bytes.Contains(code, []byte("fb")):
		return Classification{"marketing", "Meta"}, true
	case bytes.Contains(code, []byte("ga")):
		return Classification{"analytics", "GA"}, true
	}
	return Classification{}, false
}

// documentedPolicy is a fuzzPolicy that gives the page's URL.
type documentedPolicy struct {
	fuzzPolicy
	doc string
}

func (p documentedPolicy) DocumentURL() string { return p.doc }

func (p documentedPolicy) InjectUnderBase(lang, base string) []byte {
	return []byte("<!--CG:" + lang + " under " + base + "-->")
}

// diffPolicies refuse everything, grant everything (both with early
// markup), and grant analytics only (without), the last on a page whose
// URL the rewriter knows.
var diffPolicies = []Policy{
	fuzzPolicy{testPolicy{granted: map[string]bool{"necessary": true}, early: earlyMark}},
	fuzzPolicy{testPolicy{granted: map[string]bool{"necessary": true, "analytics": true, "marketing": true}, early: "<script>E()</script>"}},
	documentedPolicy{fuzzPolicy{testPolicy{granted: map[string]bool{"necessary": true, "analytics": true}}}, "https://shop.example/p/"},
}

// chunkReader hands out its input in pieces of random sizes.
type chunkReader struct {
	b   []byte
	rnd *rand.Rand
	max int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(1+r.rnd.IntN(r.max), len(p), len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// readers deliver in whole, byte by byte, in random chunks, and with EOF
// along with the last data.
func readers(in []byte) map[string]io.Reader {
	h := fnv.New64a()
	h.Write(in)
	seed := h.Sum64()
	return map[string]io.Reader{
		"whole":    bytes.NewReader(in),
		"bytes":    iotest.OneByteReader(bytes.NewReader(in)),
		"chunks7":  &chunkReader{b: in, rnd: rand.New(rand.NewPCG(seed, 1)), max: 7},
		"chunks64": &chunkReader{b: in, rnd: rand.New(rand.NewPCG(seed, 2)), max: 64},
		"dataerr":  iotest.DataErrReader(iotest.HalfReader(bytes.NewReader(in))),
	}
}

// checkSameAsReference fails unless Rewrite's output and Stats equal the
// reference's for every policy and way of reading in.
func checkSameAsReference(t *testing.T, in []byte) {
	t.Helper()
	// With the fast path where the CPU has one, and without (skipData
	// alone, as on other CPUs).
	for _, windows := range []bool{haveVector, false} {
		useWindows = windows
		checkSameAsReferenceNow(t, in)
		useWindows = haveVector
	}
}

func checkSameAsReferenceNow(t *testing.T, in []byte) {
	t.Helper()
	for pi, p := range diffPolicies {
		var want bytes.Buffer
		wantSt, err := rewriteReference(&want, bytes.NewReader(in), p)
		if err != nil {
			t.Fatal(err)
		}
		for name, r := range readers(in) {
			var got bytes.Buffer
			st, err := Rewrite(&got, r, p)
			if err != nil {
				t.Fatalf("policy %d, %s: %v", pi, name, err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) || st != wantSt {
				t.Fatalf("policy %d, reading %s: input\n%q\n got %q %+v\nwant %q %+v", pi, name, in, got.Bytes(), st, want.Bytes(), wantSt)
			}
		}
		// A read error ends the rewrite as EOF would, then is returned.
		want.Reset()
		wantSt, wantErr := rewriteReference(&want, io.MultiReader(bytes.NewReader(in), iotest.ErrReader(errBoom)), p)
		var got bytes.Buffer
		st, err := Rewrite(&got, iotest.HalfReader(io.MultiReader(bytes.NewReader(in), iotest.ErrReader(errBoom))), p)
		if err != errBoom || wantErr != errBoom || !bytes.Equal(got.Bytes(), want.Bytes()) || st != wantSt {
			t.Fatalf("policy %d, read error: input\n%q\n got %q %+v %v\nwant %q %+v %v", pi, in, got.Bytes(), st, err, want.Bytes(), wantSt, wantErr)
		}
	}
}

var errBoom = errors.New("boom")

// failingWriter fails once it has taken n bytes.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errBoom
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	page := benchPage(200 << 10)
	for _, n := range []int{0, 1, 100, 40 << 10, 150 << 10} {
		if _, err := Rewrite(&failingWriter{n: n}, bytes.NewReader(page), diffPolicies[0]); err != errBoom {
			t.Errorf("after %d bytes: err = %v", n, err)
		}
	}
}

// stallingReader returns (0, nil) forever.
type stallingReader struct{}

func (stallingReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	if _, err := Rewrite(io.Discard, stallingReader{}, diffPolicies[0]); err != io.ErrNoProgress {
		t.Fatalf("err = %v", err)
	}
}

// trickyHTML is markup where a scanner and the tokenizer could part ways.
var trickyHTML = []string{
	`<!doctype html><html lang="de"><head><title>a<img src=https://www.facebook.com/tr></title></head><body><p>x</p></body></html>`,
	`<!-- <script src="https://www.googletagmanager.com/x"></script> -->`,
	`<!--><img src=//www.facebook.com/tr>`, `<!---><img src=//www.facebook.com/tr>`, `<!-- a --!><img src=//www.facebook.com/tr>`,
	`<!-- a --!x> b --><img src=//a/x>`, `<!----!-><img src=//a/x>-->`, `<!-- unclosed <img src=//a/x>`, `<!--`, `<!-`, `<!`, `<`, `</`, `</>`,
	`<!DOCTYPE html PUBLIC "a>b"><img src=//a/x>`, `<?xml version="1.0"?><img src=//a/x>`, `</3 <img src=//a/x>`, `<!x><script>ga()</script>`,
	`<script>var s = "<!--<script>"; fbq(1)</script>x</script><img src=//a/x>`,
	`<script><!--<script>fbq()</script>--></script><img src=//a/x>`,
	`<script><!--<script>--><img src=//a/x></script>`,
	`<script><!-- x --></script><img src=//a/x>`,
	`<script><!--<1<script></script>ga()</script><img src=//a/x>`,
	`<script><!--<script>-<x</script>--><img src=//a/x></script><img src=//a/x>`,
	`<script><!--<script>--!></script><img src=//a/x></script>`,
	`<script><!--<SCRIPT >ga()</Script ></script><img src=//a/x>`,
	`<script><!--x</script><img src=//a/x>`,
	`<script><!-</script><img src=//a/x>`,
	`<script><!--<scriptx></script><img src=//a/x>`,
	`<script>ga()</SCRIPT ><img src=//a/x>`, `<script>ga()</scripT/><img src=//a/x>`, `<script>ga()</scriptx></script>`,
	`<script>ga()</script`, `<script>ga()</script `, `<script>ga()</scr`, `<script>ga()<`, `<script>ga()`, `<script>`, `<script/>ga()</script>`,
	`<script src="//a/x.js"/>ga()</script><img src=//a/x>`, `<script src=//a/x.js />`, `<script a=/>fb</script>`, `<script a b=1 b=/>fb</script>`,
	`<img alt="a>b" src="//a/x"><img alt='>' src='//m/y'><img src=//a/x alt=">`,
	`<textarea><img src=//a/x></textarea><img src=//a/x>`, `<title><img src=//a/x></TITLE><img src=//a/x>`,
	`<style>a{b:"</style>"}<img src=//a/x></style>`, `<xmp><img src=//a/x></xmp>`, `<noembed><img src=//a/x></noembed>`,
	`<noframes><img src=//a/x></noframes>`, `<plaintext><img src=//a/x></plaintext><img src=//a/x>`, `<textarea/><img src=//a/x>`,
	`<IMG SRC="//a/x"><SCRIPT SRC="//m/y"></SCRIPT><IFRAME SRC="//m/v"></IFRAME>`, `<HTML LANG=fr><BODY>`,
	"<img src=\"//a/\x00x\"><script src='\x00//a/y'></script>\x00<scr\x00ipt>fb</script>",
	"<img src=\"//a/\xff\xfe\"><p>\xc3\x28</p><script data-consent=\"analytics\" x=\"\xff\">x</script>",
	`<img src="//a/x`, `<img src=//a/x`, `<img src=`, `<img `, `<img`, `<iframe src="//m/v">x</iframe`, `<noscript><img src=//a/x`,
	`<noscript><img src=//a/x></noscript ><noscript/><img src=//m/x></NOSCRIPT><img src=//m/x>`,
	`<noscript><noscript><img src=//a/x></noscript></noscript><img src=//a/x>`, `<noscript><script>fb()</script><iframe src=//m/v></iframe></noscript>`,
	`<noscript><head></head><body><html lang=x></noscript></head>`, `<noscript><img src=//a/x</noscript>`,
	`<iframe src="//m/v" srcdoc="<p>" hidden data-consent="analytics marketing"><p>x</p></iframe><div>`, `<iframe data-consent=a src=/x></iframe >`,
	`<iframe src="//n/x"></iframe><iframe src=//m/x/></iframe/>`, `</iframe><iframe>`,
	`<script type=" Module " src=//a/x></script><script type="text/plain" data-consent=analytics>ga()</script><script type=text/plain>ga()</script>`,
	`<script type="application/ld+json">ga()</script><script type="text/javascript; charset=utf-8">ga()</script>`,
	`<script data-consent="" >x</script><script data-consent="x, analytics">x</script><script DATA-consent=marketing data-consent=analytics>x</script>`,
	`<script src="https:\\a\x" x=1 X=2 y="&amp;&lt;&gt;&quot;&#39;&#x2f;&#47;&sol;&nbsp;&notit;&amp=&ampx;&eacute&eacutex &#0;&#x110000;&#128;&#xD800;&#;&#x;&" z=a&amp;b&semi;c></script>`,
	`<img src="https:&#x2f;&#x2f;a/x"><img src="https:&sol;&sol;m/x"><img src="https:&#47&#47a/x"><img srcset="/x 1x, //a/y 2x"><img srcset=",,, //m/z">`,
	`<link rel=preload href=//a/x><source src=//m/x><embed src=//a/x><object data=//m/x></object><video poster=//a/x></video><audio src=//m/x></audio>`,
	`<img src="/local.png" srcset="//n/ok 2x" data="//a/x">`, `<img data=//a/x SRC=/ok>`,
	"<img src=\"//a/x\r\ny\"><script src=\"//a/\rz\" data-x=\"\r\n\"></script>",
	`<a =b =c>`, `<a = b>`, `<a b = "c">`, `<a b="c"d>`, `<a b='c'/>`, `<a/b/c>`, `<a b=c/>`, `<a"b" c>`, `<a b	c
 d=e>`,
	`<head><link rel=stylesheet href=/a.css></head><body>`, `<body><head></head>`, `<HEAD/><script>ga()</script>`, `<head x=">"><head>`,
	`<html><script src=//a/x></script><head>`, `<html><noscript><script>fb()</script></noscript><script>`, `<!--<head>--><script>ga()</script><html><title><head></title><script>fb()`,
	`<header><script>x</script><html/><script>ga()</script>`, `<html><script`, `<html><head`, `<html><title>t</title></head><script>`, `</head>`, `<body/>`, `</head x=">"><body>`, `<html lang="a&amp;b" lang=c><head></head>`,
	`<script data-consent=analytics a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9 j=10 k=11 l=12 m=13 n=14 o=15 p=16 q=17 A=18 />`,
	`<script data-consent=analytics a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9 j=10 k=11 l=12 m=13 n=14 o=15 p=16 q=17 A=/>x</script>`,
	`<iframe src=//m/v x="&#" y="&;" z="&#x" w="&" v="&#xZ" s="& x&#;x" u="&#9;&#x9" t="&AMP;&LT&GT;&QUOT&Amp;&fjlig;&NotEqualTilde;"></iframe>`,
	`<div <<p>unclosed "quote <script src=x`, `a < b > c <3 <-- <!a <?`, `<<script>fb</script>`, `<</script>`,
	strings.Repeat(`<div class="x"><a href="/y">z</a></div>`, 50) + `<script>fb()</script>`,
}

func trickySeeds() [][]byte {
	var out [][]byte
	for _, s := range trickyHTML {
		out = append(out, []byte(s))
	}
	for _, s := range []string{
		`<html lang="ru"><head><title>x</title></head><body>hi</body></html>`,
		`<head><script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script></head>`,
		`<script>fbq('init', '1'); fbq('track', 'PageView');</script>`,
		`<iframe width="560" src="https://www.youtube.com/embed/abc" allowfullscreen></iframe><p>after</p>`,
		`<p>a<img height="1" width="1" src="https://www.facebook.com/tr?id=1&ev=PageView">b</p>`,
		`<noscript><img src="https://www.facebook.com/tr?id=1"/></noscript>`,
		`<picture><source srcset="https://www.facebook.com/tr?id=1"><img src="/a.png"></picture>`,
		`<script src="https://www.googletagmanager.com/a?b=1&amp;c=&quot;2&quot;" data-x='"&lt;'></script>`,
		`<head><base href="https://www.youtube.com/"><script src="x.js"></script><img src="p.gif"><iframe src="embed/v"></iframe></head>`,
		`<noscript><base href="//m/"></noscript><img src="x.gif"><base href="/a/"><base href="//m/"><img src="y.gif" alt=p>`,
		`<script src="ht&#9;tps://www.googletag&#10;manager%2Ecom/gtag/js"></script><img src="https:\\\m.x/p"><img src="https:/m/p">`,
		`<img src="/&Tab;/m/p"><img src="https:m/p"><img src="data:image/gif;base64,R0lGOD"><script src="javascript:ga()"></script>`,
		`<iframe srcdoc="&lt;script src=//a/x&gt;&lt;/script&gt;&lt;img src=//m/p&gt;"></iframe><iframe src=//n/ srcdoc='<script>fb()</script>' x=1/>`,
		`<input type=image src=//m/p><input name=q><image src=//m/i><svg><image xlink:href=//m/x /><script href=//a/s></script></svg><track src=//m/t>`,
	} {
		out = append(out, []byte(s))
	}
	return append(out, benchPage(4<<10))
}

func TestRewriteMatchesReference(t *testing.T) {
	for _, in := range trickySeeds() {
		checkSameAsReference(t, in)
	}
}

// FuzzRewriteDiff checks that Rewrite writes exactly what the tokenizer-
// based reference writes, with the same Stats, for any input read in any
// pieces.
func FuzzRewriteDiff(f *testing.F) {
	for _, in := range trickySeeds() {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64<<10 {
			return
		}
		checkSameAsReference(t, in)
	})
}

// markupWords are the pieces TestRewriteMatchesReferenceOnRandomMarkup
// strings together: the bytes where tokenizer states change, the names
// and attributes the rewriter acts on, and the values the policies know.
var markupWords = strings.Fields(`< > </ / = " ' - -- --> --!> <!-- <! <? ! <!-> <!--> <script <script> </script> </script
	<!--<script> <SCRIPT </SCRIPT > script iframe <iframe </iframe> <noscript> </noscript> noscript <img <IMG <source <link
	<video <audio <object <embed <style> </style> <title> </title> <textarea> </textarea> <xmp> <plaintext> <noembed> </noframes
	<html <head> </head> <body> <body <p> <div a src= srcset= href= data= poster= data-consent= type= lang=
	<base <BASE base x.js p.gif https:m/p /&Tab;/m/p %2E m%2Ex data:x javascript:x
	<input <INPUT <image <track <svg> </svg> xlink:href= type=image srcdoc= srcdoc="&lt;script&gt;fb()&lt;/script&gt;" srcdoc=&lt;img&#32;src=//m/p&gt;
	//a/x //m/y //n/z https://www.youtube.com/embed/v https:\\a\x https:&#x2f;&#x2f;a/x https:&sol;&sol;m analytics marketing
	necessary text/plain module text/javascript application/json fb() ga() x 1x, 2x &amp; &#0; &lt; &nbsp; &ampx &eacute = ;`)

func TestRewriteMatchesReferenceOnRandomMarkup(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	seps := []string{"", "", "", " ", "\n", "\t", "\x00", "\r", "\xff"}
	var b bytes.Buffer
	for range n {
		b.Reset()
		for range 1 + rnd.IntN(40) {
			b.WriteString(markupWords[rnd.IntN(len(markupWords))])
			b.WriteString(seps[rnd.IntN(len(seps))])
		}
		checkSameAsReference(t, b.Bytes())
	}
}
