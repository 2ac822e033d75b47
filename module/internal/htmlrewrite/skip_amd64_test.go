package htmlrewrite

import "testing"

// TestFastPDEP: every CPU with AVX-512 runs PDEP and PEXT fast (Intel's,
// and AMD's since Zen 4), so reading the vendor and family must say so.
func TestFastPDEP(t *testing.T) {
	t.Logf("vendor %q, family %#x, AVX2 %v, AVX-512 %v, fast PDEP %v", cpuVendor(), cpuFamily(), haveAVX2, haveAVX512, fastPDEP)
	if haveAVX512 && !fastPDEP {
		t.Fatal("a CPU with AVX-512 read as one whose PDEP is slow")
	}
}
