package htmlrewrite

import "testing"

// TestFastPDEP: every CPU with AVX-512 runs PDEP and PEXT fast (Intel's,
// and AMD's since Zen 4), so reading the vendor and family must say so.
func TestFastPDEP(t *testing.T) {
	_, b, c, d := cpuid(0)
	a, _, _, _ := cpuid(1)
	t.Logf("vendor %q, family %#x (cpuid 1: %#x), AVX2 %v, AVX-512 %v, fast PDEP %v",
		string([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24), byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24),
			byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)}), a>>8&0xf+a>>20&0xff, a, haveAVX2, haveAVX512, fastPDEP)
	if haveAVX512 && !fastPDEP {
		t.Fatal("a CPU with AVX-512 read as one whose PDEP is slow")
	}
}
