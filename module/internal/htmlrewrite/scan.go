package htmlrewrite

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/bits"
	"strings"
	"sync"
)

// elem is a tag name the scanner acts on.
type elem uint8

const (
	elemOther elem = iota
	elemHTML
	elemHead
	elemBody
	elemScript
	elemIframe
	elemNoscript
	elemImg
	elemSource
	elemLink
	elemEmbed
	elemObject
	elemVideo
	elemAudio
	elemInput // <input type=image src>
	elemImage // <image>: <img> in HTML, an image in SVG
	elemTrack
	// The other elements whose content the tokenizer reads as raw text.
	elemStyle
	elemTextarea
	elemTitle
	elemXmp
	elemNoembed
	elemNoframes
	elemPlaintext
	// <base href> sets where relative URLs resolve.
	elemBase
	numElems
)

var elemNames = [numElems]string{
	elemHTML: "html", elemHead: "head", elemBody: "body", elemScript: "script",
	elemIframe: "iframe", elemNoscript: "noscript", elemImg: "img", elemSource: "source",
	elemLink: "link", elemEmbed: "embed", elemObject: "object", elemVideo: "video",
	elemAudio: "audio", elemStyle: "style", elemTextarea: "textarea", elemTitle: "title",
	elemXmp: "xmp", elemNoembed: "noembed", elemNoframes: "noframes", elemPlaintext: "plaintext",
	elemBase: "base", elemInput: "input", elemImage: "image", elemTrack: "track",
}

// mayBeElem reports whether a tag name of n bytes starting with the
// letter first may be one the scanner acts on (skipTables, which the fast
// path reads too); most names need no lookup.
func mayBeElem(first byte, n int, endTag bool) bool {
	if n >= 16 {
		return false
	}
	t := &skipTabs[0]
	if endTag {
		return t.end[first]>>n&1 != 0
	}
	return (t.start[first]|t.res[first])>>n&1 != 0
}

// lookupElem reads a raw tag name as the tokenizer does (A-Z lower-cased).
// Most names on a page (div, a, span, li…) are rejected by their length or
// first letter.
func lookupElem(name []byte) elem {
	if len(name) < 3 || len(name) > 9 {
		return elemOther
	}
	var e elem
	switch name[0] | 0x20 {
	case 'a':
		e = elemAudio
	case 'b':
		e = elemBody
		if len(name) == 4 && name[1]|0x20 == 'a' {
			e = elemBase
		}
	case 'e':
		e = elemEmbed
	case 'h':
		e = elemHTML
		if len(name) == 4 && name[1]|0x20 == 'e' {
			e = elemHead
		}
	case 'i':
		switch len(name) {
		case 3:
			e = elemImg
		case 5:
			e = elemInput
			if name[1]|0x20 == 'm' {
				e = elemImage
			}
		case 6:
			e = elemIframe
		}
	case 'l':
		e = elemLink
	case 'n':
		switch len(name) {
		case 7:
			e = elemNoembed
		case 8:
			e = elemNoscript
			if name[2]|0x20 == 'f' {
				e = elemNoframes
			}
		}
	case 'o':
		e = elemObject
	case 'p':
		e = elemPlaintext
	case 's':
		e = elemStyle
		if len(name) == 6 {
			e = elemScript
			if name[1]|0x20 == 'o' {
				e = elemSource
			}
		}
	case 't':
		e = elemTitle
		switch {
		case len(name) == 8:
			e = elemTextarea
		case name[1]|0x20 == 'r':
			e = elemTrack
		}
	case 'v':
		e = elemVideo
	case 'x':
		e = elemXmp
	}
	if e != elemOther && keyIs(name, elemNames[e]) {
		return e
	}
	return elemOther
}

// attrsMatter reports whether the rewriter reads the element's start tag
// attributes.
func (e elem) attrsMatter() bool {
	return e == elemHTML || e == elemScript || e == elemIframe || e == elemBase || e.resource()
}

func (e elem) resource() bool { return elemImg <= e && e <= elemTrack }

// Where the scanner is: what the input not yet consumed starts with.
type mode uint8

const (
	inData         mode = iota // text, up to the next '<'
	inMarkup                   // a '<' whose meaning needs the next bytes
	inTag                      // a start or end tag, up to its '>'
	inComment                  // "<!--", up to the end of the comment
	inBogus                    // "<!x", "<?", "</x", up to the next '>'
	inRawText                  // the content of rawTag, up to its end tag
	inScript                   // script data, up to </script>
	inHeldScript               // an inline script's start tag and text, held to classify the text
	inHeldNoscript             // a noscript start tag and its content, held to rewrite the content
	inTail                     // the rest of the input, unchanged (<plaintext>)
)

// rewriter is Rewrite's scanner. It follows the x/net/html tokenizer's
// states, so it splits the input where the tokenizer would, but it only
// looks at bytes where a token may end and parses attributes only of the
// start tags of html, script, iframe and the URL-loading elements.
// Unchanged input is written in the chunks it was read in.
type rewriter struct {
	w     io.Writer
	p     Policy
	stats Stats
	err   error

	lang     string
	nested   bool // rewriting the content of a <noscript>: no deeper
	injected bool
	document bool   // an <html> start tag was seen
	early    []byte // the EarlyInjector's markup, until it is written
	// pendingEmbed is the placeholder to write after the next </iframe>.
	pendingEmbed []byte

	mode   mode
	pos    int // progress in the current token, counted from its start
	tag    tagScan
	spans  []attrSpan // attributes of the current tag, if they matter
	rawTag string     // inRawText: the element whose end tag ends the text
	script scriptState
	tagLen int // inHeldScript, inHeldNoscript: length of the start tag
	out    int // during feed: input before this offset has been written
	ta     tagAttrs
	// scratch holds a replacement tag until it is written; embeds, the
	// placeholders after iframes.
	scratch, embeds []byte
	sc              *scratch  // where they come from and go back to
	child           *rewriter // rewrites <noscript> content
	res             resolver  // where URLs load from
}

// readSize is the size of Rewrite's reads.
const readSize = 32 << 10

var readPool = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// readSome reads at least one byte unless there is an error, as the
// tokenizer does.
func readSome(r io.Reader, b []byte) (int, error) {
	for range 100 {
		if n, err := r.Read(b); n != 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

func (rw *rewriter) write(b []byte) {
	if rw.err == nil && len(b) > 0 {
		_, rw.err = rw.w.Write(b)
	}
}

// flush writes the input up to end and returns end.
func (rw *rewriter) flush(b []byte, end int) int {
	if end > rw.out {
		rw.write(b[rw.out:end])
		rw.out = end
	}
	return end
}

// replace writes repl in place of b[start:end].
func (rw *rewriter) replace(b []byte, start, end int, repl []byte) {
	rw.flush(b, start)
	rw.write(repl)
	rw.out = end
}

// inject inserts the early markup, if still due, and the banner at b[at].
func (rw *rewriter) inject(b []byte, at int) {
	rw.injected = true
	rw.stats.Injected = true
	rw.replace(b, at, at, rw.takeEarly())
	rw.write(rw.res.injection(rw.lang))
}

// injectEarly inserts the early markup at b[at] if it is still due.
func (rw *rewriter) injectEarly(b []byte, at int) {
	if len(rw.early) > 0 {
		rw.replace(b, at, at, rw.takeEarly())
	}
}

// takeEarly returns the early markup the first time, nil after.
func (rw *rewriter) takeEarly() []byte {
	e := rw.early
	rw.early = nil
	if len(e) > 0 {
		rw.stats.Early = true
	}
	return e
}

// feed rewrites b, the input not yet consumed, and returns how much of it
// it consumed (wrote, replaced or dropped); the rest, an unfinished token,
// comes again at the start of b with more input. At EOF it consumes all.
func (rw *rewriter) feed(b []byte, atEOF bool) int {
	rw.out = 0
	i := 0
	for rw.err == nil {
		var stop bool
		switch rw.mode {
		case inData:
			i = rw.skipData(b, i)
			if i == len(b) {
				return rw.flush(b, i)
			}
			rw.mode = inMarkup
			continue
		case inMarkup:
			i, stop = rw.markup(b, i, atEOF)
		case inTag:
			i, stop = rw.tagStep(b, i, atEOF)
		case inComment:
			i, stop = rw.commentStep(b, i, atEOF)
		case inBogus:
			i, stop = rw.bogusStep(b, i, atEOF)
		case inRawText:
			e, found := rawTextEnd(b, i, rw.rawTag)
			i, stop = rw.streamed(b, e, found, atEOF)
		case inScript:
			e, st, found := scriptEnd(b, i, rw.script)
			rw.script = st
			i, stop = rw.streamed(b, e, found, atEOF)
		case inHeldScript:
			i, stop = rw.heldScriptStep(b, i, atEOF)
		case inHeldNoscript:
			i, stop = rw.heldNoscriptStep(b, i, atEOF)
		case inTail:
			i, stop = len(b), true
		}
		if stop {
			return rw.flush(b, i)
		}
	}
	return i
}

// skipData passes over text and the tags whose names do not matter,
// which are most of a page, and returns the offset of the first other
// markup, or len(b). It reads the common shapes of tag itself (a tag
// every few dozen bytes leaves no room for calls per byte) and hands the
// rest to scanTag.
func (rw *rewriter) skipData(b []byte, i int) int {
	tab := &skipTabs[0]
	if rw.res.baseSeen {
		tab = &skipTabs[1]
	}
	for {
		if useWindows && len(b)-i >= 64 {
			i = skipFast(b, i, tab)
		}
		// Tags often follow one another, and text between them is short:
		// look at the byte at hand, then at a word, before a search.
		if i < len(b) && b[i] != '<' {
			if i+8 > len(b) {
				i = indexFrom(b, i, '<')
			} else if m := zeroBytes(binary.LittleEndian.Uint64(b[i:]) ^ (lows * '<')); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
			} else {
				i = indexFrom(b, i+8, '<')
			}
		}
		if i+3 >= len(b) {
			return min(i, len(b))
		}
		n, endTag := i+1, false
		if b[n] == '/' {
			n, endTag = n+1, true
		}
		if !isLetter(b[n]) {
			return i
		}
		e := n + 1
		for e < len(b) && tagClass[b[e]]&(clSpace|clSlash|clGT) == 0 {
			e++
		}
		if e == len(b) {
			return i
		}
		name := elemOther
		if mayBeElem(b[n], e-n, endTag) {
			name = lookupElem(b[n:e])
		}
		end := e + 1
		if b[e] != '>' {
			end = attrsEnd(b, e)
		}
		if end == 0 {
			ts := tagScan{pos: n + 1 - i, endTag: endTag}
			if end = scanTag(b[i:], &ts, nil); end < 0 {
				return i
			}
			end += i
			name = ts.name
		}
		if name != elemOther && !passes(name, endTag, rw.res.baseSeen, b[i:end]) {
			return i
		}
		i = end
	}
}

// passes reports whether a whole tag needs nothing from the rewriter: an
// end tag other than </head> and </iframe>, a URL-loading start tag with
// no absolute URL, or any tag of an element the rewriter does not know.
func passes(name elem, endTag, baseSeen bool, raw []byte) bool {
	switch {
	case name == elemOther:
		return true
	case endTag:
		return name != elemHead && name != elemIframe
	case name.resource():
		// After a <base href>, relative URLs may leave the origin too.
		return !baseSeen && !mayMatter(raw)
	}
	return false
}

// short is the step's answer when b ends inside the token that starts at
// i: keep it for more input, or at EOF pass it on as it is (the tokenizer
// hands it over as the raw bytes of a last, possibly error, token).
func short(b []byte, i int, atEOF bool) (int, bool) {
	if atEOF {
		return len(b), true
	}
	return i, true
}

// markup reads what the '<' at b[i] begins, as the tokenizer's Next does.
func (rw *rewriter) markup(b []byte, i int, atEOF bool) (int, bool) {
	t := b[i:]
	if len(t) < 2 {
		return short(b, i, atEOF)
	}
	switch c := t[1]; {
	case isLetter(c):
		rw.tag = tagScan{pos: 2}
		rw.spans = rw.spans[:0]
		rw.mode = inTag
	case c == '/':
		if len(t) < 3 {
			return short(b, i, atEOF)
		}
		if isLetter(t[2]) {
			rw.tag = tagScan{pos: 3, endTag: true}
			rw.mode = inTag
			break
		}
		// "</>" and "</3…" are bogus comments.
		rw.mode, rw.pos = inBogus, 2
	case c == '!':
		if len(t) < 3 || t[2] == '-' && len(t) < 4 {
			return short(b, i, atEOF)
		}
		if t[2] == '-' && t[3] == '-' {
			rw.mode, rw.pos = inComment, 4
			break
		}
		// A doctype reads as a bogus comment does: up to the first '>'.
		rw.mode, rw.pos = inBogus, 2
	case c == '?':
		rw.mode, rw.pos = inBogus, 2
	default:
		// Text.
		rw.mode = inData
		return i + 1, false
	}
	return i, false
}

func (rw *rewriter) tagStep(b []byte, i int, atEOF bool) (int, bool) {
	end := scanTag(b[i:], &rw.tag, &rw.spans)
	if end < 0 {
		rw.mode = inTag
		return short(b, i, atEOF)
	}
	end += i
	rw.mode = inData
	if rw.tag.name == elemOther {
		return end, false
	}
	if rw.tag.endTag {
		rw.endTag(b, i, end)
		return end, false
	}
	return rw.startTag(b, i, end), false
}

func (rw *rewriter) commentStep(b []byte, i int, atEOF bool) (int, bool) {
	t := b[i:]
	for {
		j := bytes.IndexByte(t[rw.pos:], '>')
		if j < 0 {
			rw.pos = len(t)
			return short(b, i, atEOF)
		}
		e := rw.pos + j
		rw.pos = e + 1
		// The tokenizer's readComment ends a comment at "-->", "--!>", or
		// at once in "<!-->" and "<!--->".
		if body := t[4:e]; len(body) == 0 || len(body) == 1 && body[0] == '-' ||
			bytes.HasSuffix(body, []byte("--")) || bytes.HasSuffix(body, []byte("--!")) {
			rw.mode = inData
			return i + e + 1, false
		}
	}
}

func (rw *rewriter) bogusStep(b []byte, i int, atEOF bool) (int, bool) {
	t := b[i:]
	j := bytes.IndexByte(t[rw.pos:], '>')
	if j < 0 {
		rw.pos = len(t)
		return short(b, i, atEOF)
	}
	rw.mode = inData
	return i + rw.pos + j + 1, false
}

// streamed ends a step through raw text that passes unchanged: up to its
// end tag at e if found, or else up to e, where scanning resumes.
func (rw *rewriter) streamed(b []byte, e int, found, atEOF bool) (int, bool) {
	if found {
		rw.mode = inData
		return e, false
	}
	return short(b, e, atEOF)
}

// startTag acts on the start tag b[tok:end] and returns where scanning
// goes on.
func (rw *rewriter) startTag(b []byte, tok, end int) int {
	name := rw.tag.name
	switch {
	case name == elemHTML:
		rw.document = true
		if !rw.injected {
			if lang, ok := rw.attrs(b[tok:end]).value("lang"); ok {
				rw.lang = lang
			}
		}
	case name == elemHead:
		rw.injectEarly(b, end)
	case name == elemBody:
		if !rw.injected {
			rw.inject(b, end)
		}
	case name == elemScript:
		return rw.startScript(b, tok, end)
	case name == elemIframe:
		rw.startIframe(b, tok, end)
	case name.resource():
		rw.startResource(b, tok, end)
	case name == elemBase:
		// The first <base href> of the document counts; in <noscript>
		// (not parsed as markup in a browser that runs scripts) none.
		if !rw.nested && !rw.res.baseSeen {
			if href, ok := rw.attrs(b[tok:end]).value("href"); ok {
				rw.res.setBase(href)
			}
		}
	case name == elemNoscript && !rw.nested:
		// Browsers do not nest noscript; deeper levels pass through.
		rw.mode, rw.tagLen, rw.pos = inHeldNoscript, end-tok, end-tok
		return tok
	}
	rw.enter(name)
	return end
}

// enter sets the mode for the content after a start tag.
func (rw *rewriter) enter(name elem) {
	switch name {
	case elemScript:
		rw.mode, rw.script = inScript, ssData
	case elemIframe, elemNoscript, elemStyle, elemTextarea, elemTitle, elemXmp, elemNoembed, elemNoframes:
		rw.mode, rw.rawTag = inRawText, elemNames[name]
	case elemPlaintext:
		rw.mode = inTail
	default:
		rw.mode = inData
	}
}

func (rw *rewriter) endTag(b []byte, tok, end int) {
	switch rw.tag.name {
	case elemHead:
		if !rw.injected {
			rw.inject(b, tok)
		}
	case elemIframe:
		if rw.pendingEmbed != nil {
			rw.replace(b, end, end, rw.pendingEmbed)
			rw.pendingEmbed = nil
		}
	}
}

// attrs returns the attributes of the tag just scanned, whose bytes are t.
func (rw *rewriter) attrs(t []byte) *tagAttrs {
	rw.ta.raw, rw.ta.spans = t, rw.spans
	return &rw.ta
}

func (rw *rewriter) startScript(b []byte, tok, end int) int {
	if rw.document {
		rw.injectEarly(b, tok)
	}
	rw.enter(elemScript)
	ta := rw.attrs(b[tok:end])
	typ, _ := ta.value("type")
	consent, marked := ta.value("data-consent")
	if marked && strings.EqualFold(strings.TrimSpace(typ), "text/plain") {
		// Already inert by the site's own convention; the banner activates it.
		return end
	}
	if !executable(typ) {
		return end
	}
	var c Classification
	var known bool
	if marked {
		c, known = Classification{Category: consent}, true
	} else if src, ok := scriptSource(ta.value); ok {
		c, known = rw.res.classify(src)
	}
	selfClosing := ta.selfClosing()
	if known || selfClosing {
		if known && refused(rw.p, c.Category) {
			rw.stats.Scripts++
			rw.scratch = neutralScript(rw.scratch[:0], ta.list(), c.Category, selfClosing)
			rw.replace(b, tok, end, rw.scratch)
		}
		return end
	}
	// Inline code: hold the tag until the text is complete.
	rw.mode, rw.tagLen, rw.pos = inHeldScript, end-tok, end-tok
	return tok
}

func (rw *rewriter) heldScriptStep(b []byte, i int, atEOF bool) (int, bool) {
	t := b[i:]
	e, st, found := scriptEnd(t, rw.pos, rw.script)
	if !found && !atEOF {
		rw.pos, rw.script = e, st
		return i, true
	}
	if !found {
		e = len(t)
	}
	if body := t[rw.tagLen:e]; len(body) > 0 {
		if c, known := rw.p.ClassifyInline(body); known && refused(rw.p, c.Category) {
			rw.stats.Scripts++
			rw.scratch = neutralScript(rw.scratch[:0], rw.attrs(t[:rw.tagLen]).list(), c.Category, false)
			rw.replace(b, i, i+rw.tagLen, rw.scratch)
		}
	}
	rw.mode = inData
	return i + e, !found
}

func (rw *rewriter) heldNoscriptStep(b []byte, i int, atEOF bool) (int, bool) {
	t := b[i:]
	e, found := rawTextEnd(t, rw.pos, "noscript")
	if !found && !atEOF {
		rw.pos = e
		return i, true
	}
	if !found {
		e = len(t)
	}
	if content := t[rw.tagLen:e]; len(content) > 0 {
		rw.flush(b, i+rw.tagLen)
		if rw.child == nil {
			rw.child = new(rewriter)
		}
		c := rw.child
		*c = rewriter{w: rw.w, p: rw.p, nested: true, injected: true, spans: c.spans[:0], res: rw.res}
		c.feed(content, true)
		rw.err = c.err
		rw.stats.Scripts += c.stats.Scripts
		rw.stats.Iframes += c.stats.Iframes
		rw.stats.Images += c.stats.Images
		rw.out = i + e
	}
	rw.mode = inData
	return i + e, !found
}

func (rw *rewriter) startIframe(b []byte, tok, end int) {
	ta := rw.attrs(b[tok:end])
	src, ok := ta.value("src")
	if !ok {
		if _, ok := ta.value("srcdoc"); ok {
			if tag := withSrcdoc(ta.list(), rw.res, &rw.stats); tag != nil {
				rw.replace(b, tok, end, tag)
			}
		}
		return
	}
	c, known := rw.res.classify(src)
	if consent, marked := ta.value("data-consent"); marked {
		c.Category, known = consent, true
	}
	if !known || !refused(rw.p, c.Category) {
		// srcdoc, when there is one, is what the frame shows.
		if _, ok := ta.value("srcdoc"); ok {
			if tag := withSrcdoc(ta.list(), rw.res, &rw.stats); tag != nil {
				rw.replace(b, tok, end, tag)
			}
		}
		return
	}
	rw.stats.Iframes++
	rw.scratch, rw.embeds = neutralIframe(rw.scratch[:0], rw.embeds[:0], ta.list(), src, c)
	rw.pendingEmbed = rw.embeds
	rw.replace(b, tok, end, rw.scratch)
}

// startResource drops an <img> (a tracking pixel), <source>, <link>
// (preload, prefetch, stylesheet…), <embed>, <object>, <video>, <audio>,
// <input type=image>, <image> or <track> start tag that would load from a tracker of a refused category; the
// element's content, if any, stays.
func (rw *rewriter) startResource(b []byte, tok, end int) {
	t := b[tok:end]
	if !rw.res.baseSeen && !mayMatter(t) {
		return
	}
	ta := rw.attrs(t)
	for _, name := range resourceAttrs {
		if v, ok := ta.value(name); ok && refusedResource(&rw.res, name, v) {
			rw.stats.Images++
			rw.replace(b, tok, end, nil)
			return
		}
	}
}

// matchEndTagName matches name (lower case), case-insensitively and then
// followed by white space, '/' or '>', at t[i:], as the tokenizer's
// readRawEndTag does. It returns the offset past the delimiter on a match,
// or where the match failed (that byte is read again), or short when t
// ends first.
func matchEndTagName(t []byte, i int, name string) (int, matchResult) {
	for k := 0; k < len(name); k++ {
		if i+k >= len(t) {
			return i, matchShort
		}
		if c := t[i+k]; c != name[k] && c != name[k]-('a'-'A') {
			return i + k, matchFailed
		}
	}
	j := i + len(name)
	if j >= len(t) {
		return i, matchShort
	}
	if c := t[j]; tagClass[c]&(clSpace|clSlash|clGT) != 0 {
		return j + 1, matchOK
	}
	return j, matchFailed
}

type matchResult uint8

const (
	matchFailed matchResult = iota
	matchOK
	matchShort
)

// rawTextEnd finds the end tag "</name" that ends raw text or RCDATA,
// scanning t from i (readRawOrRCDATA). It returns its offset and true, or
// where to resume and false.
func rawTextEnd(t []byte, i int, name string) (int, bool) {
	for {
		j := bytes.IndexByte(t[i:], '<')
		if j < 0 {
			return len(t), false
		}
		i += j
		if i+1 >= len(t) {
			return i, false
		}
		if t[i+1] != '/' {
			i++
			continue
		}
		k, m := matchEndTagName(t, i+2, name)
		switch m {
		case matchOK:
			return i, true
		case matchShort:
			return i, false
		}
		i = k
	}
}

// scriptState is a state of the tokenizer's readScript in which it can
// stop between two bytes.
type scriptState uint8

const (
	ssData scriptState = iota
	ssEscaped
	ssEscapedDash
	ssEscapedDashDash
	ssDoubleEscaped
	ssDoubleEscapedDash
	ssDoubleEscapedDashDash
)

// scriptEnd follows the script data states of the tokenizer's readScript
// from t[i] in state st, through the "<!--" escapes and "<script" double
// escapes. It returns the offset of the "</script" that ends the text and
// true, or the offset and state to resume from and false; resuming reads
// again at most the few bytes of an undecided "</script".
func scriptEnd(t []byte, i int, st scriptState) (int, scriptState, bool) {
	for {
		switch st {
		case ssData:
			j := bytes.IndexByte(t[i:], '<')
			if j < 0 {
				return len(t), ssData, false
			}
			i += j
			if i+1 >= len(t) {
				return i, ssData, false
			}
			switch t[i+1] {
			case '/':
				k, m := matchEndTagName(t, i+2, "script")
				switch m {
				case matchOK:
					return i, ssData, true
				case matchShort:
					return i, ssData, false
				}
				i = k
			case '!':
				if i+2 >= len(t) || t[i+2] == '-' && i+3 >= len(t) {
					return i, ssData, false
				}
				switch {
				case t[i+2] != '-':
					i += 2
				case t[i+3] != '-':
					i += 3
				default:
					i += 4
					st = ssEscapedDashDash
				}
			default:
				i++
			}
		case ssEscaped, ssEscapedDash, ssEscapedDashDash:
			if i >= len(t) {
				return i, st, false
			}
			switch c := t[i]; {
			case c == '-':
				i++
				if st == ssEscaped {
					st = ssEscapedDash
				} else {
					st = ssEscapedDashDash
				}
			case c == '>' && st == ssEscapedDashDash:
				i++
				st = ssData
			case c == '<':
				// The three states read '<' alike: resume in the first.
				if i+1 >= len(t) {
					return i, ssEscaped, false
				}
				switch d := t[i+1]; {
				case d == '/':
					k, m := matchEndTagName(t, i+2, "script")
					switch m {
					case matchOK:
						return i, ssEscaped, true
					case matchShort:
						return i, ssEscaped, false
					}
					i, st = k, ssEscaped
				case isLetter(d):
					k, m := matchEndTagName(t, i+1, "script")
					switch m {
					case matchOK:
						i, st = k, ssDoubleEscaped
					case matchShort:
						return i, ssEscaped, false
					default:
						i, st = k, ssEscaped
					}
				default:
					// x/net/html goes back to script data here, not to
					// the escaped state as the spec does.
					i++
					st = ssData
				}
			default:
				i++
				st = ssEscaped
			}
		default: // double escaped
			if i >= len(t) {
				return i, st, false
			}
			switch c := t[i]; {
			case c == '-':
				i++
				if st == ssDoubleEscaped {
					st = ssDoubleEscapedDash
				} else {
					st = ssDoubleEscapedDashDash
				}
			case c == '>' && st == ssDoubleEscapedDashDash:
				i++
				st = ssData
			case c == '<':
				if i+1 >= len(t) {
					return i, ssDoubleEscaped, false
				}
				if t[i+1] != '/' {
					i++
					st = ssDoubleEscaped
					break
				}
				k, m := matchEndTagName(t, i+2, "script")
				switch m {
				case matchOK:
					i, st = k, ssEscaped
				case matchShort:
					return i, ssDoubleEscaped, false
				default:
					i, st = k, ssDoubleEscaped
				}
			default:
				i++
				st = ssDoubleEscaped
			}
		}
	}
}
