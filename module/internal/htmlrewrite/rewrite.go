// Package htmlrewrite rewrites an HTML stream as it flows: it injects the
// consent banner before </head> (or at the start of <body>), an optional
// early snippet right after <head>, and neutralises the scripts, iframes
// and tracking pixels of refused categories.
//
// Rewrite, and Writer for input that is written rather than read, scan
// bytes (scan.go): they follow the states of the golang.org/x/net/html
// tokenizer only as far as passing markup through needs, copy everything
// they do not change byte for byte in large chunks, and read attributes
// only of the few tags that matter. Their output is the same as that of
// the tokenizer-based rewriter in reference.go, which the tests and
// FuzzRewriteDiff compare it with. Malformed HTML passes through intact;
// memory is bounded by the largest single token (a tag, a comment, an
// inline script held to classify it, a <noscript>'s content), not by the
// page.
package htmlrewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/html"
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
	// path); ok is false for unknown URLs. u.Host is the host name as a
	// browser resolves it: lower case, without port or trailing dot.
	ClassifyURL(u *url.URL) (Classification, bool)
	// ClassifyInline classifies an inline script by its content; code is
	// the rewriter's buffer, valid only during the call.
	ClassifyInline(code []byte) (Classification, bool)
	// Inject returns the markup to insert, given the page's lang attribute.
	Inject(lang string) []byte
}

// EarlyInjector is a Policy with markup that must come before any script
// of the page (Google Consent Mode's "consent default" must be queued
// before the page's own gtag commands). Rewrite asks for it once and
// inserts it, at most once, at the first of:
//
//   - right after the <head> start tag;
//   - right before a <script> start tag, once an <html> start tag has
//     shown the input to be a document (a page without <head>);
//   - right before Inject's markup (before </head>, or at the start of
//     <body>), so it never comes after the banner.
//
// A fragment without html, head or body gets nothing, as with Inject.
// Tags inside comments, scripts, other raw text and <noscript> do not
// count.
type EarlyInjector interface {
	InjectEarly() []byte
}

// Stats counts what a rewrite held back.
type Stats struct {
	Scripts, Iframes, Images int
	Injected                 bool
	// Early reports whether the EarlyInjector's markup was inserted.
	Early bool
}

// Rewrite copies r to w, rewriting as described in the package comment.
// Output flows as input arrives; a read error ends the rewrite after what
// was read has been written.
func Rewrite(w io.Writer, r io.Reader, p Policy) (Stats, error) {
	var rw Writer
	rw.Reset(w, p)
	bp := readPool.Get().(*[]byte)
	defer readPool.Put(bp)
	for {
		n, rerr := readSome(r, *bp)
		if _, err := rw.Write((*bp)[:n]); err != nil {
			rw.Close()
			return rw.Stats(), err
		}
		if rerr != nil {
			if err := rw.Close(); err != nil || errors.Is(rerr, io.EOF) {
				return rw.Stats(), err
			}
			return rw.Stats(), rerr
		}
	}
}

// Writer is Rewrite for input that is written rather than read: each
// Write rewrites at once all it can, in the caller's goroutine, and keeps
// only an unfinished token for the next; Close ends the input. Output goes
// to the underlying writer as it is rewritten.
type Writer struct {
	rw     rewriter
	carry  *[]byte // the unfinished token, from carryPool
	closed bool
}

// NewWriter returns a Writer that writes the rewritten input to w.
func NewWriter(w io.Writer, p Policy) *Writer {
	rw := new(Writer)
	rw.Reset(w, p)
	return rw
}

// Reset makes rw a new Writer to w, so that one can be embedded in a
// larger value; the rewrite it was doing, if any, is dropped.
func (rw *Writer) Reset(w io.Writer, p Policy) {
	if rw.carry != nil {
		carryPool.Put(rw.carry)
	}
	rw.rw.putScratch()
	*rw = Writer{rw: rewriter{w: w, p: p, early: earlyOf(p), res: resolver{p: p}}}
	rw.rw.getScratch()
}

// scratch is the space a rewrite reuses from tag to tag. Writers take it
// from scratchPool and give it back when closed, so that a page costs no
// allocations for it.
type scratch struct {
	spans, uniq []attrSpan
	attrs       []attr
	buf         []byte
	tag, embeds []byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (rw *rewriter) getScratch() {
	s := scratchPool.Get().(*scratch)
	rw.sc = s
	rw.spans, rw.ta.uniq, rw.ta.attrs, rw.ta.buf = s.spans[:0], s.uniq[:0], s.attrs[:0], s.buf[:0]
	rw.scratch, rw.embeds = s.tag[:0], s.embeds[:0]
}

// putScratch gives the rewrite's scratch space back (emptied if a hostile
// page has grown it).
func (rw *rewriter) putScratch() {
	s := rw.sc
	if s == nil {
		return
	}
	*s = scratch{spans: rw.spans, uniq: rw.ta.uniq, attrs: rw.ta.attrs, buf: rw.ta.buf, tag: rw.scratch, embeds: rw.embeds}
	if cap(s.spans)+cap(s.uniq) > 1024 || cap(s.attrs) > 256 || cap(s.buf)+cap(s.tag)+cap(s.embeds) > 64<<10 {
		*s = scratch{}
	}
	clear(s.attrs[:cap(s.attrs)])
	scratchPool.Put(s)
	rw.sc = nil
	rw.spans, rw.ta.uniq, rw.ta.attrs, rw.ta.buf, rw.scratch, rw.embeds = nil, nil, nil, nil, nil, nil
}

// carryStep is the least input added at a time to an unfinished token.
const carryStep = 512

var carryPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*carryStep); return &b }}

// Write rewrites p and writes what it can of the result.
func (rw *Writer) Write(p []byte) (int, error) {
	switch {
	case rw.rw.err != nil:
		return 0, rw.rw.err
	case rw.closed:
		return 0, errClosed
	}
	rw.write(p)
	if rw.rw.err != nil {
		return 0, rw.rw.err
	}
	return len(p), nil
}

var errClosed = errors.New("htmlrewrite: write after close")

func (rw *Writer) write(p []byte) {
	for rw.carry != nil && len(*rw.carry) > 0 && len(p) > 0 {
		// Complete the unfinished token with as little of p as it needs;
		// doubling keeps the copying linear in the token's size.
		c := *rw.carry
		held := len(c)
		k := min(len(p), max(held, carryStep))
		c = append(c, p[:k]...)
		n := rw.rw.feed(c, false)
		if rw.rw.err != nil {
			return
		}
		if n >= held {
			// The token ended within p: go on from p itself.
			*rw.carry = c[:0]
			p = p[n-held:]
			break
		}
		if n > 0 {
			c = c[:copy(c, c[n:])]
		}
		*rw.carry = c
		p = p[k:]
	}
	if len(p) == 0 {
		return
	}
	n := rw.rw.feed(p, false)
	if n < len(p) && rw.rw.err == nil {
		if rw.carry == nil {
			rw.carry = carryPool.Get().(*[]byte)
		}
		*rw.carry = append((*rw.carry)[:0], p[n:]...)
	}
}

// Close rewrites what is left of the input as its end, and returns the
// first error writing.
func (rw *Writer) Close() error {
	if rw.closed {
		return rw.rw.err
	}
	rw.closed = true
	var rest []byte
	if rw.carry != nil {
		rest = *rw.carry
	}
	if rw.rw.err == nil {
		rw.rw.feed(rest, true)
	}
	if rw.carry != nil {
		if cap(*rw.carry) <= 64<<10 {
			*rw.carry = (*rw.carry)[:0]
			carryPool.Put(rw.carry)
		}
		rw.carry = nil
	}
	rw.rw.putScratch()
	return rw.rw.err
}

// Stats returns what the rewrite has held back so far.
func (rw *Writer) Stats() Stats { return rw.rw.stats }

// earlyOf returns the policy's early markup, nil if it has none.
func earlyOf(p Policy) []byte {
	if e, ok := p.(EarlyInjector); ok {
		return e.InjectEarly()
	}
	return nil
}

type attr struct{ key, val string }

func get(attrs []attr, key string) (string, bool) {
	for _, a := range attrs {
		if a.key == key {
			return a.val, true
		}
	}
	return "", false
}

// refused reports whether a data-consent list ("analytics marketing" or
// "analytics,marketing") names a refused category.
func refused(p Policy, list string) bool {
	for list != "" {
		i := strings.IndexAny(list, " ,")
		if i < 0 {
			return p.Refused(list)
		}
		if i > 0 && p.Refused(list[:i]) {
			return true
		}
		list = list[i+1:]
	}
	return false
}

// mayMatter reports whether a tag's raw bytes could hold a URL that
// leaves the page's origin; parsing attributes allocates, so ordinary tags
// skip it. Such a URL needs "//", or '\\' (read as '/'), a scheme's ':'
// ("https:host"), a tab or newline (browsers drop them: "/\n/host"), or
// an entity that may stand for any of these ('&'); srcset can hold one
// too. Eight bytes at a time, the last word overlapping the one before.
func mayMatter(raw []byte) bool {
	n := len(raw)
	if n < 9 {
		for i, c := range raw {
			if marksURL(c) || c == '/' && i+1 < n && raw[i+1] == '/' {
				return true
			}
		}
		return false
	}
	for i := 0; ; i += 8 {
		i = min(i, n-9)
		x := binary.LittleEndian.Uint64(raw[i:])
		y := binary.LittleEndian.Uint64(raw[i+1:])
		if zeroBytes((x^(lows*'/'))|(y^(lows*'/')))|zeroBytes(x^(lows*'\\'))|zeroBytes(x^(lows*'&'))|
			zeroBytes(x^(lows*':'))|lessBytes(x, '\r'+1) != 0 {
			return true
		}
		if i == n-9 {
			return marksURL(raw[n-1])
		}
	}
}

// marksURL reports whether c alone may make a URL leave the page's origin
// (see mayMatter).
func marksURL(c byte) bool { return c == '\\' || c == '&' || c == ':' || c <= '\r' }

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

// appendEscaped appends html.EscapeString(s) to b.
func appendEscaped(b []byte, s string) []byte {
	if strings.ContainsAny(s, "&'<>\"\r") {
		return append(b, html.EscapeString(s)...)
	}
	return append(b, s...)
}

// appendAttrs appends attrs but those named in skip to b, as
// ` key="value"`.
func appendAttrs(b []byte, attrs []attr, skip ...string) []byte {
outer:
	for _, a := range attrs {
		for _, s := range skip {
			if a.key == s {
				continue outer
			}
		}
		b = append(b, ' ')
		b = append(b, a.key...)
		b = append(b, `="`...)
		b = appendEscaped(b, a.val)
		b = append(b, '"')
	}
	return b
}

// neutralScript appends to b the inert replacement of a script's start
// tag; a self-closing one is closed at once.
func neutralScript(b []byte, attrs []attr, category string, selfClosing bool) []byte {
	b = append(b, `<script type="text/plain" data-consent="`...)
	b = appendEscaped(b, category)
	b = append(b, '"')
	if typ, ok := get(attrs, "type"); ok && typ != "" {
		b = append(b, ` data-cg-type="`...)
		b = appendEscaped(b, typ)
		b = append(b, '"')
	}
	if src, ok := get(attrs, "src"); ok {
		b = append(b, ` data-cg-src="`...)
		b = appendEscaped(b, src)
		b = append(b, '"')
	}
	b = appendAttrs(b, attrs, "type", "src", "data-consent", "data-cg-type", "data-cg-src")
	if selfClosing {
		return append(b, "></script>"...)
	}
	return append(b, '>')
}

// neutralIframe appends to b the hidden replacement of an iframe's start
// tag, and to e the placeholder to write after its end tag.
func neutralIframe(b, e []byte, attrs []attr, src string, c Classification) (tag, embed []byte) {
	b = append(b, `<iframe src="about:blank" hidden data-cg-src="`...)
	b = appendEscaped(b, src)
	b = append(b, `" data-consent="`...)
	b = appendEscaped(b, c.Category)
	b = append(b, `" data-cg-service="`...)
	b = appendEscaped(b, c.Service)
	b = append(b, '"')
	b = appendAttrs(b, attrs, "src", "hidden", "data-consent", "data-cg-src", "data-cg-service", "srcdoc")
	b = append(b, '>')
	e = append(e, `<div class="cg-embed" data-consent="`...)
	e = appendEscaped(e, c.Category)
	e = append(e, `" data-cg-service="`...)
	e = appendEscaped(e, c.Service)
	e = append(e, `"></div>`...)
	return b, e
}

// scriptSource returns where a script loads from: src, or for a script
// inside SVG (which the rewriter does not tell apart) href or xlink:href.
func scriptSource(value func(string) (string, bool)) (string, bool) {
	for _, k := range []string{"src", "href", "xlink:href"} {
		if v, ok := value(k); ok {
			return v, true
		}
	}
	return "", false
}

// withSrcdoc returns an iframe's start tag with its srcdoc — a document of
// its own, run in the page's origin — rewritten by the page's rules, as
// the content of a <noscript> is (no banner, nothing injected), adding
// what it held back to st; nil when that changes nothing.
func withSrcdoc(attrs []attr, res resolver, st *Stats) []byte {
	doc, ok := get(attrs, "srcdoc")
	if !ok || !strings.Contains(doc, "<") {
		return nil
	}
	var out bytes.Buffer
	c := rewriter{w: &out, p: res.p, nested: true, injected: true, res: res}
	c.feed([]byte(doc), true)
	if c.err != nil || c.stats == (Stats{}) {
		return nil
	}
	st.Scripts += c.stats.Scripts
	st.Iframes += c.stats.Iframes
	st.Images += c.stats.Images
	attrs = slices.Clone(attrs)
	for i := range attrs {
		if attrs[i].key == "srcdoc" {
			attrs[i].val = out.String()
		}
	}
	return append(appendAttrs([]byte("<iframe"), attrs), '>')
}

// resourceAttrs are the attributes of <img>, <source>, <link>, <embed>,
// <object>, <video>, <audio>, <input type=image>, <image> (an <img> in
// HTML, an image in SVG) and <track> that load from a URL.
var resourceAttrs = []string{"src", "srcset", "href", "xlink:href", "data", "poster"}

// refusedResource reports whether a value of one of resourceAttrs loads
// from a tracker of a refused category.
func refusedResource(r *resolver, name, v string) bool {
	if name != "srcset" {
		c, known := r.classify(v)
		return known && refused(r.p, c.Category)
	}
	for cand := range strings.SplitSeq(v, ",") {
		for u := range strings.FieldsSeq(cand) {
			if c, known := r.classify(u); known && refused(r.p, c.Category) {
				return true
			}
			break // the URL; a width or density follows
		}
	}
	return false
}
