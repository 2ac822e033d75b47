package htmlrewrite

import "math/bits"

// The fast path over the markup that does not matter. skipData reads a
// tag at a time, byte by byte; on dense markup (a tag every dozen bytes)
// that is most of the rewriter's time. skipWindows instead reads the
// input in windows of 64 bytes: one pass marks, in a 64-bit mask per
// class, where the bytes that can end a token are ('<', '>', quotes,
// white space, '/', '=' …), and each tag in the window is then read from
// the masks with a few bit operations. It follows the same states as
// scanTag, but only for the shapes tags almost always have — names ending
// in ' ', '/' or '>', attributes bare, unquoted or name="value" — and
// stops at any other, leaving it to skipData and scanTag.
//
// The simple tags that need nothing (</div>, <p>, </a>…, see simpleTags)
// are taken out of a window's masks before it is walked: about half the
// tags of a page. The masks of the next window are made while a window is
// walked, so that a window's walk does not wait for them. simpleTags needs
// PEXT and PDEP, which take hundreds of cycles on AMD CPUs before Zen 3:
// there skipWindowsAVX2 reads every tag instead (fastPDEP).

// skipTables says, by a tag name's first byte and its length modulo 32,
// whether the name may be one the rewriter acts on. Element names are
// shorter than 16 bytes; a name of 32 bytes or more may read as a shorter
// one and stop the fast path for nothing, which is rare and safe. A tag whose name
// does not start with a letter is not one: its row is all ones.
type skipTables struct {
	start [256]uint32 // a start tag that must stop the fast path
	res   [256]uint32 // a URL-loading start tag: stop if it may load from elsewhere
	end   [256]uint32 // an end tag that must stop the fast path (</head>, </iframe>)
	none  [256]uint32 // zeros: end tags load nothing (res of the end tags)
}

// skipTabs holds the tables before [0] and after [1] a <base href>, after
// which every URL-loading tag stops the fast path.
var skipTabs = makeSkipTables()

func makeSkipTables() (t [2]skipTables) {
	for e, name := range elemNames {
		if name == "" {
			continue
		}
		bit := uint32(1) << len(name)
		for _, c := range []byte{name[0], name[0] - ('a' - 'A')} {
			if elem(e).resource() {
				t[0].res[c] |= bit
			} else {
				t[0].start[c] |= bit
			}
			if elem(e) == elemHead || elem(e) == elemIframe {
				t[0].end[c] |= bit
			}
		}
	}
	for c := range 256 {
		if !isLetter(byte(c)) {
			t[0].start[c], t[0].end[c] = 0xffffffff, 0xffffffff
		}
	}
	t[1] = t[0]
	for c := range t[1].start {
		t[1].start[c] |= t[1].res[c]
		t[1].res[c] = 0
	}
	return t
}

// window holds the masks of 64 bytes of input: bit k is set when byte k
// is of the class.
type window struct {
	lt, gt uint64 // '<', '>'
	q      uint64 // '"', '\''
	sp     uint64 // ' '
	del    uint64 // what ends a tag name: ' ', '/', '>' and bytes <= '\r'
	x      uint64 // what ends an attribute name: del, '=' and quotes
	u      uint64 // what may make a URL leave the page's origin: see mayMatter
	// For simpleTags:
	sl     uint64    // '/'
	alnum  uint64    // ASCII letters and digits
	letter uint64    // ASCII letters
	free   [2]uint64 // letters no name the rewriter acts on starts with: in start tags [0], end tags [1]
}

// freeLetters says which letters start no name of a start tag [0] or an
// end tag [1] that the rewriter acts on (skipTables' rows of zeros), with
// or without a <base>.
var freeLetters = func() (f [2][256]bool) {
	t := &skipTabs[0]
	for c := range 256 {
		if isLetter(byte(c)) {
			f[0][c] = t.start[c] == 0 && t.res[c] == 0
			f[1][c] = t.end[c] == 0
		}
	}
	return f
}()

// maskWindow computes the masks of p[:64] a byte at a time.
func maskWindow(p []byte, m *window) {
	p = p[:64]
	*m = window{}
	var sl uint64
	for k, c := range p {
		bit := uint64(1) << k
		if isLetter(c) {
			m.letter |= bit
			m.alnum |= bit
		} else if '0' <= c && c <= '9' {
			m.alnum |= bit
		}
		for j := range m.free {
			if freeLetters[j][c] {
				m.free[j] |= bit
			}
		}
		switch c {
		case '<':
			m.lt |= bit
		case '>':
			m.gt |= bit
		case '"', '\'':
			m.q |= bit
		case ' ':
			m.sp |= bit
		case '/':
			sl |= bit
		case '=':
			m.x |= bit
		case '\\', '&', ':':
			m.u |= bit
		}
		if c <= '\r' {
			m.del |= bit
			m.u |= bit
		}
	}
	m.del |= m.sp | sl | m.gt
	m.x |= m.del | m.q
	m.u |= sl & (sl >> 1)
	m.sl = sl
}

// simpleTags returns the '<' and '>' of the window's simple tags that need
// nothing from the rewriter, which walk then need not read: '<', an
// optional '/', a name of ASCII letters and digits starting with a letter,
// '>' — when the name has fewer than 3 bytes (no element the rewriter acts
// on has) or starts with a letter no such element does, and the '<'
// follows a '>' with no '<' or quote between, or no byte that may change
// the state at all. walk is then in the data state at the '<' (a '>'
// outside a quoted value ends any tag), where such a tag changes nothing,
// or in a quoted value, where only its quote does.
func (m *window) simpleTags() uint64 {
	ev := m.lt | m.gt | m.q
	f := ^ev
	// The first byte that may change the state after each '<' or quote,
	// and the bytes before it (the carries run through f).
	after := (f + (m.lt|m.q)<<1) ^ f
	lt := m.lt &^ after
	end := lt & (m.sl >> 1)
	short := m.letter &^ (m.alnum >> 1 & (m.alnum >> 2))
	names := (lt&^end)<<1&(short|m.free[0]) | end<<2&(short|m.free[1])
	// The byte after each name: the tag is simple if it is '>'.
	gt := (m.alnum + names) &^ m.alnum & m.gt
	// Between a simple tag's '<' and its '>' there is no other event: its
	// '<' is the event before its '>'.
	return gt | pdep(pext(gt, ev)>>1, ev)
}

// pext gathers the bits of x under mask into the low bits (BMI2's PEXT).
func pext(x, mask uint64) (r uint64) {
	for k := 0; mask != 0; k++ {
		r |= (x >> bits.TrailingZeros64(mask) & 1) << k
		mask &= mask - 1
	}
	return r
}

// pdep spreads the low bits of x to the bits of mask (BMI2's PDEP).
func pdep(x, mask uint64) (r uint64) {
	for ; mask != 0; x >>= 1 {
		low := mask & -mask
		if x&1 != 0 {
			r |= low
		}
		mask &^= low
	}
	return r
}

// skipWindows passes over text and the tags that need nothing from the
// rewriter from b[i], i in the data state, and returns where it stopped:
// at the '<' of markup it does not read, or in text with less than a
// window of input left.
func skipWindows(b []byte, i int, tab *skipTables) int {
	return skipWindowsGo(b, i, tab, true)
}

// skipWindowsAll is skipWindows with walk reading the simple tags too, as
// skipWindowsAVX2 does.
func skipWindowsAll(b []byte, i int, tab *skipTables) int {
	return skipWindowsGo(b, i, tab, false)
}

func skipWindowsGo(b []byte, i int, tab *skipTables, simple bool) int {
	var m window
	for w := i; ; {
		if len(b)-w < 64 {
			return w
		}
		p := b[w : w+64]
		maskWindow(p, &m)
		left := m.lt | m.gt | m.q
		if simple {
			left &^= m.simpleTags()
		}
		k, stop := m.walk(p, left, tab)
		if stop || k == 0 {
			return w + k
		}
		w += k
	}
}

// walk reads the window p[:64] from its start, in the data state, one
// byte that may change the state ('<', '>', a quote) at a time: those of
// left, which are all but the ones of the simple tags it may skip. It
// returns where it stops and true, at the '<' of markup skipData must
// read, or where the next window starts (a tag that runs past this
// window starts it) and false.
//
// Each step depends on the one before only through the mask of the bytes
// left, one instruction; the rest of a step (a name's end, the checks of
// a quote) can run in parallel with the next steps.
func (m *window) walk(p []byte, left uint64, tab *skipTables) (int, bool) {
	p = p[:64]
	// The tag being read: its '<' at t, its name up to e, s the last byte
	// after which it is between attributes, whether it loads a URL.
	var t, e, s int
	var res bool
	for left != 0 {
		// Data.
		k := bits.TrailingZeros64(left)
		left &= left - 1
		if p[k] != '<' {
			continue
		}
		if k > 60 {
			return k, false
		}
		t = k
		n := t + 1
		c := p[n]
		endTag := c == '/'
		if endTag {
			n++
			c = p[n]
		}
		d := m.del >> (n + 1)
		if d == 0 {
			return more(t)
		}
		e = n + 1 + bits.TrailingZeros64(d)
		// Not a letter: a comment, doctype, bogus comment or text.
		l := (e - n) & 31
		res = false
		switch {
		case endTag:
			if tab.end[c]>>l&1 != 0 {
				return t, true
			}
		case tab.start[c]>>l&1 != 0:
			return t, true
		default:
			res = tab.res[c]>>l&1 != 0
		}
		if c := p[e]; c != '>' && c != ' ' && c != '/' {
			return t, true // white space other than ' ', or a control byte
		}
		s = e
	tag:
		// In the tag, after its name.
		for {
			if left == 0 {
				return more(t)
			}
			k := bits.TrailingZeros64(left)
			left &= left - 1
			if k < e {
				continue // a quote or '<' in the name
			}
			switch p[k] {
			case '<':
				continue
			case '>':
				if res && m.u&(lowBits(k+1)&^lowBits(t)) != 0 {
					return t, true
				}
				break tag
			}
			// A quote: it must open a value (see quoteOpens).
			if !m.quoteOpens(p, k, s) {
				return t, true
			}
			q := p[k]
			for {
				if left == 0 {
					return more(t)
				}
				k := bits.TrailingZeros64(left)
				left &= left - 1
				if p[k] == q {
					s = k
					break
				}
			}
		}
	}
	return 64, false
}

// more is walk's answer for a tag at t that runs past the window: the
// next window starts at it, or, when the window already does, the tag
// is too long for the fast path.
func more(t int) (int, bool) { return t, t == 0 }

// quoteOpens tells whether the quote at p[q], the first byte after s
// other than '<' that may end the tag, opens an attribute value; s is
// the tag name's end or the last closing quote, after which the tag is
// between attributes. A quote opens a value only right after an '=' that
// ends an attribute name; here the name must follow s itself, or ' '
// after a byte other than '=' (after an '=', the name would be an
// unquoted value) and other white space. Any other shape is left to
// scanTag.
func (m *window) quoteOpens(p []byte, q, s int) bool {
	p = p[:64]
	if p[q-1] != '=' {
		return false
	}
	// The byte before the name.
	r := 63 - bits.LeadingZeros64(m.x&lowBits(q-1))
	if r >= q-2 {
		return false // no name: the '=' is one
	}
	if r == s {
		return true
	}
	if p[r] != ' ' {
		return false
	}
	k := 63 - bits.LeadingZeros64(^m.sp&lowBits(r))
	c := p[k]
	return c != '=' && c > '\r'
}

// lowBits returns a mask of the bits below n, n <= 64.
func lowBits(n int) uint64 { return 1<<n - 1 }

// useWindows: skipData goes through skipFast first. Only with vector
// instructions to make the masks is that faster than skipData alone.
var useWindows = haveVector

// skipImpl is an implementation of skipWindows.
type skipImpl struct {
	name string
	skip func(b []byte, i int, tab *skipTables) int
	// mirror is the Go implementation it follows step for step, whose
	// answer it must give.
	mirror func(b []byte, i int, tab *skipTables) int
}
