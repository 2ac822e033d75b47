// Package htmlrewrite rewrites an HTML stream as it flows: it injects the
// consent banner before </head> (or at the start of <body>) and neutralises
// the scripts, iframes and tracking pixels of refused categories. It uses
// the golang.org/x/net/html tokenizer and writes every token it does not
// change byte for byte, so malformed HTML passes through intact; memory is
// bounded by the largest single token, not by the page.
package htmlrewrite

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Classification of an element's resource.
type Classification struct {
	// Category is the category the resource needs; "" when unknown.
	Category string
	// Service is the human-readable service name (for placeholders).
	Service string
}

// Policy tells the rewriter what is refused and what to inject.
type Policy interface {
	// Refused reports whether a category is not granted.
	Refused(category string) bool
	// ClassifyURL classifies a script, iframe or image URL by host (and
	// path); ok is false for unknown URLs.
	ClassifyURL(u *url.URL) (Classification, bool)
	// ClassifyInline classifies an inline script by its content.
	ClassifyInline(code []byte) (Classification, bool)
	// Inject returns the markup to insert, given the page's lang attribute.
	Inject(lang string) []byte
}

// Stats counts what a rewrite held back.
type Stats struct {
	Scripts, Iframes, Images int
	Injected                 bool
}

// Rewrite copies r to w, rewriting as described in the package comment.
func Rewrite(w io.Writer, r io.Reader, p Policy) (Stats, error) {
	rw := &rewriter{w: w, p: p, z: html.NewTokenizer(r)}
	err := rw.run()
	return rw.stats, err
}

type rewriter struct {
	w     io.Writer
	p     Policy
	z     *html.Tokenizer
	stats Stats
	err   error

	lang     string
	nested   bool // rewriting the content of a <noscript>: no deeper
	sawHTML  bool // a document, not a fragment: <html>, <head> or <body> seen
	injected bool
	// pendingEmbed is the placeholder to write after the current </iframe>.
	pendingEmbed []byte
	// inScript is set while the body of a neutralised or kept script flows.
	scratch bytes.Buffer
}

func (rw *rewriter) write(b []byte) {
	if rw.err == nil {
		_, rw.err = rw.w.Write(b)
	}
}

func (rw *rewriter) writeString(s string) {
	if rw.err == nil {
		_, rw.err = io.WriteString(rw.w, s)
	}
}

func (rw *rewriter) inject() {
	if rw.injected {
		return
	}
	rw.injected = true
	rw.stats.Injected = true
	rw.write(rw.p.Inject(rw.lang))
}

func (rw *rewriter) run() error {
	for rw.err == nil {
		tt := rw.z.Next()
		if tt == html.ErrorToken {
			// At the end of input Raw holds any incomplete trailing markup,
			// which is passed on as it came.
			rw.write(rw.z.Raw())
			if err := rw.z.Err(); !errors.Is(err, io.EOF) {
				return err
			}
			return rw.err
		}
		rw.token(tt)
	}
	return rw.err
}

// token handles the tokenizer's current token.
func (rw *rewriter) token(tt html.TokenType) {
	z := rw.z
	switch tt {
	case html.ErrorToken:
		// Handled by run on its next call to Next.
	case html.StartTagToken, html.SelfClosingTagToken:
		rw.startTag(tt)
	case html.EndTagToken:
		switch tagAtom(z.Raw()) {
		case atom.Head:
			rw.sawHTML = true
			rw.inject()
			rw.write(z.Raw())
		case atom.Iframe:
			rw.write(z.Raw())
			if rw.pendingEmbed != nil {
				rw.write(rw.pendingEmbed)
				rw.pendingEmbed = nil
			}
		default:
			rw.write(z.Raw())
		}
	default:
		rw.write(z.Raw())
	}
}

type attr struct{ key, val string }

func (rw *rewriter) startTag(tt html.TokenType) {
	z := rw.z
	// Raw must be copied before reading attributes: TagAttr does not move
	// the buffer, but the next Next() does.
	raw := z.Raw()
	// Attributes are read (which allocates) only where they matter.
	hasAttr := true
	switch tagAtom(raw) {
	case atom.Html:
		rw.sawHTML = true
		if hasAttr {
			for _, at := range readAttrs(z) {
				if at.key == "lang" {
					rw.lang = at.val
				}
			}
		}
		rw.write(raw)
	case atom.Head:
		rw.sawHTML = true
		rw.write(raw)
	case atom.Body:
		rw.write(raw)
		if !rw.injected {
			rw.sawHTML = true
			rw.inject()
		}
	case atom.Script:
		rw.script(raw, hasAttr, tt)
	case atom.Iframe:
		rw.iframe(raw, hasAttr)
	case atom.Img, atom.Source, atom.Link, atom.Embed, atom.Object, atom.Video, atom.Audio:
		rw.resource(raw, hasAttr)
	case atom.Noscript:
		rw.write(raw)
		if rw.nested {
			// Browsers do not nest noscript; pass deeper levels through
			// rather than recurse (bounded cost on hostile input).
			return
		}
		rw.noscript()
	default:
		rw.write(raw)
	}
}

// tagAtom reads the tag name from a tag's raw bytes ("<IMG src=…>",
// "</head >"); the tokenizer's TagName allocates on every call.
func tagAtom(raw []byte) atom.Atom {
	var buf [16]byte
	i := 1
	if i < len(raw) && raw[i] == '/' {
		i++
	}
	n := 0
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == ' ' || c == '>' || c == '/' || c == '\t' || c == '\n' || c == '\r' || c == '\f' {
			break
		}
		if n == len(buf) {
			return 0
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	return atom.Lookup(buf[:n])
}

func readAttrs(z *html.Tokenizer) []attr {
	var out []attr
	for {
		k, v, more := z.TagAttr()
		if len(k) > 0 {
			out = append(out, attr{string(k), string(v)})
		}
		if !more {
			return out
		}
	}
}

func get(attrs []attr, key string) (string, bool) {
	for _, a := range attrs {
		if a.key == key {
			return a.val, true
		}
	}
	return "", false
}

// refusedCategories returns the refused categories among a data-consent
// list ("analytics marketing" or "analytics,marketing").
func (rw *rewriter) refused(list string) bool {
	for _, c := range strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' }) {
		if rw.p.Refused(c) {
			return true
		}
	}
	return false
}

func (rw *rewriter) classifyURL(raw string) (Classification, bool) {
	// Browsers treat backslashes in http(s) URLs as slashes.
	raw = strings.ReplaceAll(strings.TrimSpace(raw), `\`, "/")
	if strings.HasPrefix(raw, "//") {
		raw = "https:" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Classification{}, false
	}
	return rw.p.ClassifyURL(u)
}

// mayMatter reports whether a tag's raw bytes could hold an attribute the
// rewriter acts on (an absolute URL, a type or a consent mark); parsing
// attributes allocates, so ordinary tags skip it.
func mayMatter(raw []byte) bool {
	// An absolute URL needs "//" — or "\\", which browsers read as "/", or
	// an entity such as "&#x2f;" — and srcset can hold one too.
	return bytes.Contains(raw, []byte("//")) || bytes.IndexByte(raw, '\\') >= 0 || bytes.Contains(raw, []byte("&#")) || bytes.Contains(raw, []byte("&sol;"))
}

func (rw *rewriter) script(raw []byte, hasAttr bool, tt html.TokenType) {
	// Scripts are few: always read their attributes.
	var attrs []attr
	if hasAttr {
		attrs = readAttrs(rw.z)
	}
	typ, _ := get(attrs, "type")
	consent, marked := get(attrs, "data-consent")
	if strings.EqualFold(strings.TrimSpace(typ), "text/plain") && marked {
		// Already inert by the site's own convention; the banner activates it.
		rw.write(raw)
		return
	}
	if !executable(typ) {
		rw.write(raw)
		return
	}
	var c Classification
	var known bool
	if marked {
		c, known = Classification{Category: consent}, true
	} else if src, ok := get(attrs, "src"); ok {
		c, known = rw.classifyURL(src)
	}
	if tt == html.SelfClosingTagToken {
		if known && rw.refused(c.Category) {
			rw.stats.Scripts++
			rw.write(neutralScript(attrs, c.Category, tt))
			return
		}
		rw.write(raw)
		return
	}
	// Read the script body (one text token, then the end tag) to classify
	// inline code; the tokenizer hands script content over whole.
	rw.scratch.Reset()
	rw.scratch.Write(raw)
	start := rw.scratch.Len()
	next := rw.z.Next()
	var body []byte
	if next == html.TextToken {
		body = append([]byte(nil), rw.z.Raw()...)
		next = rw.z.Next()
	}
	if !known && body != nil {
		c, known = rw.p.ClassifyInline(body)
	}
	if known && rw.refused(c.Category) {
		rw.stats.Scripts++
		rw.write(neutralScript(attrs, c.Category, tt))
	} else {
		rw.write(rw.scratch.Bytes()[:start])
	}
	rw.write(body)
	rw.writeToken(next)
}

// writeToken handles the token after a look-ahead (an end tag, or whatever
// malformed input put there).
func (rw *rewriter) writeToken(tt html.TokenType) {
	if tt == html.ErrorToken {
		rw.write(rw.z.Raw())
		return
	}
	rw.token(tt)
}

func executable(typ string) bool {
	t := strings.ToLower(strings.TrimSpace(typ))
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = strings.TrimSpace(t[:i])
	}
	switch t {
	case "", "text/javascript", "application/javascript", "module", "application/ecmascript", "text/ecmascript", "text/jscript", "application/x-javascript":
		return true
	}
	return false
}

func writeAttrs(b *bytes.Buffer, attrs []attr, skip ...string) {
outer:
	for _, a := range attrs {
		for _, s := range skip {
			if a.key == s {
				continue outer
			}
		}
		b.WriteByte(' ')
		b.WriteString(a.key)
		b.WriteString(`="`)
		b.WriteString(html.EscapeString(a.val))
		b.WriteByte('"')
	}
}

func neutralScript(attrs []attr, category string, tt html.TokenType) []byte {
	var b bytes.Buffer
	b.WriteString(`<script type="text/plain" data-consent="`)
	b.WriteString(html.EscapeString(category))
	b.WriteByte('"')
	if typ, ok := get(attrs, "type"); ok && typ != "" {
		b.WriteString(` data-cg-type="`)
		b.WriteString(html.EscapeString(typ))
		b.WriteByte('"')
	}
	if src, ok := get(attrs, "src"); ok {
		b.WriteString(` data-cg-src="`)
		b.WriteString(html.EscapeString(src))
		b.WriteByte('"')
	}
	writeAttrs(&b, attrs, "type", "src", "data-consent", "data-cg-type", "data-cg-src")
	if tt == html.SelfClosingTagToken {
		b.WriteString("></script>")
	} else {
		b.WriteByte('>')
	}
	return b.Bytes()
}

func (rw *rewriter) iframe(raw []byte, hasAttr bool) {
	if !hasAttr {
		rw.write(raw)
		return
	}
	attrs := readAttrs(rw.z)
	src, ok := get(attrs, "src")
	if !ok {
		rw.write(raw)
		return
	}
	c, known := rw.classifyURL(src)
	if consent, marked := get(attrs, "data-consent"); marked {
		c.Category, known = consent, true
	}
	if !known || !rw.refused(c.Category) {
		rw.write(raw)
		return
	}
	rw.stats.Iframes++
	var b bytes.Buffer
	b.WriteString(`<iframe src="about:blank" hidden data-cg-src="`)
	b.WriteString(html.EscapeString(src))
	b.WriteString(`" data-consent="`)
	b.WriteString(html.EscapeString(c.Category))
	b.WriteString(`" data-cg-service="`)
	b.WriteString(html.EscapeString(c.Service))
	b.WriteByte('"')
	writeAttrs(&b, attrs, "src", "hidden", "data-consent", "data-cg-src", "data-cg-service", "srcdoc")
	b.WriteByte('>')
	rw.write(b.Bytes())
	rw.pendingEmbed = []byte(`<div class="cg-embed" data-consent="` + html.EscapeString(c.Category) +
		`" data-cg-service="` + html.EscapeString(c.Service) + `"></div>`)
	next := rw.z.Next()
	if next == html.TextToken {
		rw.write(rw.z.Raw())
		next = rw.z.Next()
	}
	rw.writeToken(next)
}

// resourceAttrs are the attributes of <img>, <source>, <link>, <embed>,
// <object>, <video> and <audio> that load from a URL.
var resourceAttrs = []string{"src", "srcset", "href", "data", "poster"}

// resource removes an <img> (a tracking pixel), <source>, <link> (preload,
// prefetch, stylesheet…), <embed>, <object>, <video> or <audio> start tag
// that would load from a tracker of a refused category; the element's
// content, if any, stays.
func (rw *rewriter) resource(raw []byte, hasAttr bool) {
	if !hasAttr || !mayMatter(raw) {
		rw.write(raw)
		return
	}
	attrs := readAttrs(rw.z)
	for _, name := range resourceAttrs {
		v, ok := get(attrs, name)
		if !ok {
			continue
		}
		cands := []string{v}
		if name == "srcset" {
			cands = cands[:0]
			for _, c := range strings.Split(v, ",") {
				if f := strings.Fields(c); len(f) > 0 {
					cands = append(cands, f[0])
				}
			}
		}
		for _, u := range cands {
			if c, known := rw.classifyURL(u); known && rw.refused(c.Category) {
				rw.stats.Images++
				return
			}
		}
	}
	rw.write(raw)
}

// noscript rewrites the raw content of a <noscript> element (the tokenizer
// hands it over as text) with the same rules, so pixels inside it go too.
func (rw *rewriter) noscript() {
	if next := rw.z.Next(); next != html.TextToken {
		rw.writeToken(next)
		return
	}
	inner := append([]byte(nil), rw.z.Raw()...)
	sub := &rewriter{w: rw.w, p: rw.p, z: html.NewTokenizer(bytes.NewReader(inner)), injected: true, nested: true}
	if err := sub.run(); err != nil && rw.err == nil {
		rw.err = err
	}
	rw.stats.Scripts += sub.stats.Scripts
	rw.stats.Iframes += sub.stats.Iframes
	rw.stats.Images += sub.stats.Images
	rw.writeToken(rw.z.Next())
}
