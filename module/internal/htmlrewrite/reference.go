package htmlrewrite

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// rewriteReference is Rewrite built on the x/net/html tokenizer: every
// token it does not change is written byte for byte via Raw. It is about
// ten times slower than the scanner and is kept as the definition the
// scanner is tested against (FuzzRewriteDiff).
func rewriteReference(w io.Writer, r io.Reader, p Policy) (Stats, error) {
	rw := &tokenRewriter{w: w, p: p, z: html.NewTokenizer(r), early: earlyOf(p), res: resolver{p: p}}
	err := rw.run()
	return rw.stats, err
}

type tokenRewriter struct {
	w     io.Writer
	p     Policy
	z     *html.Tokenizer
	stats Stats
	err   error

	lang     string
	nested   bool // rewriting the content of a <noscript>: no deeper
	injected bool
	document bool   // an <html> start tag was seen
	early    []byte // the EarlyInjector's markup, until it is written
	// pendingEmbed is the placeholder to write after the current </iframe>.
	pendingEmbed []byte
	res          resolver // where URLs load from
}

func (rw *tokenRewriter) write(b []byte) {
	if rw.err == nil {
		_, rw.err = rw.w.Write(b)
	}
}

func (rw *tokenRewriter) inject() {
	if rw.injected {
		return
	}
	rw.injected = true
	rw.stats.Injected = true
	rw.injectEarly()
	rw.write(rw.res.injection(rw.lang))
}

// injectEarly writes the early markup if it is still due.
func (rw *tokenRewriter) injectEarly() {
	if len(rw.early) > 0 {
		rw.write(rw.early)
		rw.early = nil
		rw.stats.Early = true
	}
}

func (rw *tokenRewriter) run() error {
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
func (rw *tokenRewriter) token(tt html.TokenType) {
	z := rw.z
	switch tt {
	case html.ErrorToken:
		// Handled by run on its next call to Next.
	case html.StartTagToken, html.SelfClosingTagToken:
		rw.startTag(tt)
	case html.EndTagToken:
		switch tagAtom(z.Raw()) {
		case atom.Head:
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

func (rw *tokenRewriter) startTag(tt html.TokenType) {
	z := rw.z
	// Raw must be copied before reading attributes: TagAttr does not move
	// the buffer, but the next Next() does.
	raw := z.Raw()
	switch tagAtom(raw) {
	case atom.Html:
		rw.document = true
		for _, at := range readAttrs(z) {
			if at.key == "lang" {
				rw.lang = at.val
			}
		}
		rw.write(raw)
	case atom.Head:
		rw.write(raw)
		rw.injectEarly()
	case atom.Body:
		rw.write(raw)
		rw.inject()
	case atom.Script:
		if rw.document {
			rw.injectEarly()
		}
		rw.script(raw, tt)
	case atom.Iframe:
		rw.iframe(raw)
	case atom.Img, atom.Source, atom.Link, atom.Embed, atom.Object, atom.Video, atom.Audio, atom.Input, atom.Image, atom.Track:
		rw.resource(raw)
	case atom.Base:
		// The first <base href> of the document counts; in <noscript>
		// none.
		if !rw.nested && !rw.res.baseSeen {
			if href, ok := get(readAttrs(z), "href"); ok {
				rw.res.setBase(href)
			}
		}
		rw.write(raw)
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

func (rw *tokenRewriter) script(raw []byte, tt html.TokenType) {
	attrs := readAttrs(rw.z)
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
	} else if src, ok := scriptSource(func(k string) (string, bool) { return get(attrs, k) }); ok {
		c, known = rw.res.classify(src)
	}
	if tt == html.SelfClosingTagToken {
		if known && refused(rw.p, c.Category) {
			rw.stats.Scripts++
			rw.write(neutralScript(nil, attrs, c.Category, true))
			return
		}
		rw.write(raw)
		return
	}
	// Read the script body (one text token, then the end tag) to classify
	// inline code; the tokenizer hands script content over whole.
	raw = bytes.Clone(raw)
	next := rw.z.Next()
	var body []byte
	if next == html.TextToken {
		body = bytes.Clone(rw.z.Raw())
		next = rw.z.Next()
	}
	if !known && body != nil {
		c, known = rw.p.ClassifyInline(body)
	}
	if known && refused(rw.p, c.Category) {
		rw.stats.Scripts++
		rw.write(neutralScript(nil, attrs, c.Category, false))
	} else {
		rw.write(raw)
	}
	rw.write(body)
	rw.writeToken(next)
}

// writeToken handles the token after a look-ahead (an end tag, or whatever
// malformed input put there).
func (rw *tokenRewriter) writeToken(tt html.TokenType) {
	if tt == html.ErrorToken {
		rw.write(rw.z.Raw())
		return
	}
	rw.token(tt)
}

func (rw *tokenRewriter) iframe(raw []byte) {
	attrs := readAttrs(rw.z)
	src, ok := get(attrs, "src")
	var c Classification
	var known bool
	if ok {
		c, known = rw.res.classify(src)
		if consent, marked := get(attrs, "data-consent"); marked {
			c.Category, known = consent, true
		}
	}
	if !known || !refused(rw.p, c.Category) {
		// srcdoc, when there is one, is what the frame shows.
		if tag := withSrcdoc(attrs, rw.res, &rw.stats); tag != nil {
			raw = tag
		}
		rw.write(raw)
		return
	}
	rw.stats.Iframes++
	var tag []byte
	tag, rw.pendingEmbed = neutralIframe(nil, nil, attrs, src, c)
	rw.write(tag)
	next := rw.z.Next()
	if next == html.TextToken {
		rw.write(rw.z.Raw())
		next = rw.z.Next()
	}
	rw.writeToken(next)
}

// resource removes an <img> (a tracking pixel), <source>, <link> (preload,
// prefetch, stylesheet…), <embed>, <object>, <video>, <audio>, <input
// type=image>, <image> or <track> start tag
// that would load from a tracker of a refused category; the element's
// content, if any, stays.
func (rw *tokenRewriter) resource(raw []byte) {
	if !rw.res.baseSeen && !mayMatter(raw) {
		rw.write(raw)
		return
	}
	attrs := readAttrs(rw.z)
	for _, name := range resourceAttrs {
		if v, ok := get(attrs, name); ok && refusedResource(&rw.res, name, v) {
			rw.stats.Images++
			return
		}
	}
	rw.write(raw)
}

// noscript rewrites the raw content of a <noscript> element (the tokenizer
// hands it over as text) with the same rules, so pixels inside it go too.
func (rw *tokenRewriter) noscript() {
	if next := rw.z.Next(); next != html.TextToken {
		rw.writeToken(next)
		return
	}
	inner := bytes.Clone(rw.z.Raw())
	sub := &tokenRewriter{w: rw.w, p: rw.p, z: html.NewTokenizer(bytes.NewReader(inner)), injected: true, nested: true, res: rw.res}
	if err := sub.run(); err != nil && rw.err == nil {
		rw.err = err
	}
	rw.stats.Scripts += sub.stats.Scripts
	rw.stats.Iframes += sub.stats.Iframes
	rw.stats.Images += sub.stats.Images
	rw.writeToken(rw.z.Next())
}
