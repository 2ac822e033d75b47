package htmlrewrite

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// dataWalk follows b from 0 in the data state with scanTag, the tag
// machine that mirrors the tokenizer, as far as skipData may go alone: it
// returns the offset of the first markup the rewriter must act on or
// that is not a tag (stop), and which offsets before it are in the data
// state (text, or the '<' of a tag).
func dataWalk(b []byte, baseSeen bool) (inData []bool, stop int) {
	inData = make([]bool, len(b)+1)
	i := 0
	for {
		for i < len(b) && b[i] != '<' {
			inData[i] = true
			i++
		}
		inData[i] = true
		if i+2 >= len(b) {
			return inData, i
		}
		n, endTag := i+1, false
		if b[n] == '/' {
			n, endTag = n+1, true
		}
		if !isLetter(b[n]) {
			return inData, i
		}
		ts := tagScan{pos: n + 1 - i, endTag: endTag}
		end := scanTag(b[i:], &ts, nil)
		if end < 0 {
			return inData, i
		}
		if !passes(ts.name, endTag, baseSeen, b[i:i+end]) {
			return inData, i
		}
		i += end
	}
}

// checkSkipWindows: skipWindows, with the vector masks and with the Go
// ones, stops in the data state and never past markup that matters.
func checkSkipWindows(t *testing.T, b []byte) {
	t.Helper()
	for seen := range 2 {
		inData, stop := dataWalk(b, seen == 1)
		for _, impl := range skipImpls {
			k := impl.skip(b, 0, &skipTabs[seen])
			if k > stop || !inData[k] {
				t.Fatalf("%s, base seen %v: stopped at %d, in the data state: %v; the tag machine stops at %d\ninput %q\nfrom there %q",
					impl.name, seen == 1, k, inData[k], stop, b, b[k:])
			}
			if impl.mirror != nil {
				if want := impl.mirror(b, 0, &skipTabs[seen]); k != want {
					t.Fatalf("%s, base seen %v: stopped at %d, the Go code it follows at %d\ninput %q", impl.name, seen == 1, k, want, b)
				}
			}
		}
	}
}

// windowSeeds are inputs longer than a window with tags of every shape
// skipWindows reads, and of shapes it must leave to scanTag.
func windowSeeds() [][]byte {
	var out [][]byte
	rnd := rand.New(rand.NewPCG(3, 4))
	seps := []string{"", "", "", " ", " ", "\n", "\t", "\x00", "\r", "\v", "\f"}
	var b bytes.Buffer
	for range 3000 {
		b.Reset()
		for b.Len() < 64+rnd.IntN(200) {
			b.WriteString(windowWords[rnd.IntN(len(windowWords))])
			b.WriteString(seps[rnd.IntN(len(seps))])
		}
		out = append(out, bytes.Clone(b.Bytes()))
	}
	for _, in := range trickySeeds() {
		out = append(out, bytes.Repeat(in, 1+128/(len(in)+1)))
	}
	return append(out, cgbenchPage(2<<10))
}

// windowWords are the bytes and tag shapes whose reading differs between
// the tokenizer's states.
var windowWords = strings.Fields(`< > </ / = == " ' "" '' =" =' =x x= a b c <a <b <div <p </a </p </div <h2> </h2>
	<a <A <img <IMG <script <source <iframe </iframe> </head> <head <title <track <link <b> <br/> <hr / >
	class="x" class='y' x="a'b" y='a"b' a=b c=d/e f="g>h" i='j>k' href="/p/1" src="//m/p" src=x.gif alt="p"
	data-x="<script>" title=">" =y z="1"w="2" k= "v" k ="v" k = "v" / x/=y x/y="z" <!-- --> <! <? &amp; : \ //
	="a>b" ='a>b' x="a>b" x=y="a>b" x==="a>b" x="1"="a>b" x=/y="a>b" x=y/z="a>b" <a/x="a>b" <a="a>b"
	"<b> '<p> "</a> x"<i> <b></head> <p></iframe> </h2> </H1> <1> </1> <div> </DIV> <ab>`)

func TestSkipWindowsStopsWhereItMust(t *testing.T) {
	for _, impl := range skipImpls {
		t.Logf("testing skipWindows in %s", impl.name)
	}
	for _, in := range windowSeeds() {
		checkSkipWindows(t, in)
	}
}

// FuzzSkipWindows checks skipWindows against the tag machine on any
// input, repeated to span several windows.
func FuzzSkipWindows(f *testing.F) {
	for _, in := range windowSeeds()[:300] {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 4<<10 {
			return
		}
		checkSkipWindows(t, bytes.Repeat(in, 1+128/len(in)))
	})
}

// TestSkipWindowsGoesFar: on ordinary dense markup the fast path reads
// nearly every tag itself.
func TestSkipWindowsGoesFar(t *testing.T) {
	page := cgbenchPage(8 << 10)
	start := bytes.Index(page, []byte("<body>")) + len("<body>")
	stops := 0
	for i := start; i < len(page); {
		k := skipFast(page, i, &skipTabs[0])
		if len(page)-k < 64 {
			break
		}
		stops++
		// Past the tag it stopped at.
		i = k + 1 + bytes.IndexByte(page[k+1:], '<')
	}
	tags := bytes.Count(page[start:], []byte("<"))
	if stops*20 > tags {
		t.Errorf("skipWindows stopped %d times in %d tags", stops, tags)
	}
}

// BenchmarkSkipWindows: the fast path alone, in each implementation this
// CPU runs, over cgbench's page (one page again and again, whose branches
// the CPU learns) and over 16 pages of varied markup in turn, as a server
// sees them.
func BenchmarkSkipWindows(b *testing.B) {
	page := cgbenchPage(50 << 10)
	body := bytes.Index(page, []byte("<body>")) + len("<body>")
	varied := variedPages(16, 50<<10)
	for _, impl := range skipImpls {
		b.Run(impl.name+"/cgbench", func(b *testing.B) {
			b.SetBytes(int64(len(page) - body))
			for b.Loop() {
				skipAll(impl, page, body)
			}
		})
		b.Run(impl.name+"/varied", func(b *testing.B) {
			b.SetBytes(int64(len(varied[0])))
			k := 0
			for b.Loop() {
				skipAll(impl, varied[k%len(varied)], 0)
				k++
			}
		})
	}
}

// skipAll runs the fast path over page from i, past each tag it stops at.
func skipAll(impl skipImpl, page []byte, i int) {
	for len(page)-i >= 64 {
		k := impl.skip(page, i, &skipTabs[0])
		i = k + 1 + bytes.IndexByte(page[k+1:], '<')
		if i == k {
			return
		}
	}
}

// variedPages returns n pages of about size bytes of the shapes of
// cgbench's page, products, navigation and text, in random order and with
// text of random length.
func variedPages(n, size int) [][]byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit")
	text := func() string {
		var w []string
		for range rnd.IntN(6) + 1 {
			w = append(w, words[rnd.IntN(len(words))])
		}
		return strings.Join(w, " ")
	}
	var out [][]byte
	for range n {
		var b bytes.Buffer
		for b.Len() < size {
			switch rnd.IntN(8) {
			case 0:
				fmt.Fprintf(&b, `<div class="product p%d"><h2>%s</h2>`, rnd.IntN(100), text())
			case 1:
				fmt.Fprintf(&b, `<p>%s <a href="/p/%d">%s</a> %s</p>`, text(), rnd.IntN(1000), text(), text())
			case 2:
				fmt.Fprintf(&b, `<img src="/img/p%d.jpg" alt="%s">`, rnd.IntN(1000), text())
			case 3:
				fmt.Fprintf(&b, `<span class="c%d">%s</span> <b>%s</b>`, rnd.IntN(9), text(), text())
			case 4:
				b.WriteString("</div>\n")
			case 5:
				fmt.Fprintf(&b, `<li><a href="/c/%d" class="nav">%s</a></li>`, rnd.IntN(50), text())
			case 6:
				fmt.Fprintf(&b, `<button type="button" data-sku="WC-%d">%s</button>`, rnd.IntN(99), text())
			case 7:
				fmt.Fprintf(&b, `<em>%s</em> %s<br>`, text(), text())
			}
		}
		out = append(out, b.Bytes())
	}
	return out
}

// TestSkipWindowsSimpleTags: the simple tags the fast path may skip
// without reading (simpleTags), in the states where it may and where it
// must not, before a tag the rewriter acts on, at every offset across the
// first windows' edges.
func TestSkipWindowsSimpleTags(t *testing.T) {
	simple := []string{`<p>`, `</p>`, `<b>`, `</h2>`, `<h2>`, `</H1>`, `<i>`, `</i>`, `<ab>`, `</div>`, `<DIV>`,
		`<dIv>`, `<p1>`, `<1>`, `</1>`, `<a->`, `</a b>`, `<head>`, `</head>`, `</HEAD>`, `<img>`, `</iframe>`,
		`</if>`, `<html>`, `</html>`, `<main>`, `</span>`, `<s>`, `<td>`}
	before := []string{``, `>`, `x>`, `<p>`, `</a>`, `<div class="x">`, `<div class="x"`, `<div a='x'`, `<div a=x`,
		`<a b`, `<p title="a>`, `<p title='a>`, `"`, `'`, `don't `, `<a x="y">'`}
	after := []string{`<script>x</script>`, `<iframe src=//m/></iframe>`, `<img src=//m/p>`, `</head>`, `<base href=//m/>`}
	for _, s := range simple {
		for _, b := range before {
			for _, a := range after {
				for off := range 70 {
					in := strings.Repeat("t", off) + b + s + "t" + s + a + `"'>` + strings.Repeat(" ", 150)
					checkSkipWindows(t, []byte(in))
				}
			}
		}
	}
}

// TestSkipWindowsAtEveryOffset: tags of each shape, starting at every
// offset of the first two windows and running across their edges.
func TestSkipWindowsAtEveryOffset(t *testing.T) {
	tags := []string{
		`<div class="a>b">`, `<a href='/x>y' title="z">`, `<p x= y="z>">`, `<b =" >">`,
		`<img src="//m/p">`, `<img src="/p.gif" alt="a">`, `<script>`, `</iframe>`, `</head >`,
		`<span a="1"b="2">`, `<i x=y"z w="v>">`, `<!-- <div> -->`, `<h2>`, `</h2>`,
		`<div	class="x">`, `<div/class="x>">`, `<` + strings.Repeat("x", 70) + ` y="a>b">`,
	}
	for _, tag := range tags {
		for off := range 130 {
			in := strings.Repeat("t", off) + tag + `<p>text</p>` + strings.Repeat(" ", 150)
			checkSkipWindows(t, []byte(in))
			checkSameAsReferenceNow(t, []byte(in))
		}
	}
}
