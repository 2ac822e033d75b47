package htmlrewrite

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Markup is dense: a tag every few dozen bytes, attribute values of a few
// bytes. bytes.IndexByte's vector loop pays off only on longer runs, so
// the scanner first looks at a few words of 8 bytes itself.

const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// swarWords is how many 8-byte words indexFrom reads before it hands the
// rest of the search to bytes.IndexByte.
const swarWords = 4

// zeroBytes marks the bytes of x that are zero with their high bit; the
// lowest mark is exact (higher ones may be false after a zero byte).
func zeroBytes(x uint64) uint64 { return (x - lows) &^ x & highs }

// lessBytes marks the bytes of x below n (n <= 128) with their high bit;
// the lowest mark is exact.
func lessBytes(x uint64, n byte) uint64 { return (x - lows*uint64(n)) &^ x & highs }

// indexFrom returns the offset of the first c in b at or after i, or
// len(b).
func indexFrom(b []byte, i int, c byte) int {
	pat := lows * uint64(c)
	for range swarWords {
		if i+8 > len(b) {
			for ; i < len(b); i++ {
				if b[i] == c {
					return i
				}
			}
			return len(b)
		}
		if m := zeroBytes(binary.LittleEndian.Uint64(b[i:]) ^ pat); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	if j := bytes.IndexByte(b[i:], c); j >= 0 {
		return i + j
	}
	return len(b)
}
