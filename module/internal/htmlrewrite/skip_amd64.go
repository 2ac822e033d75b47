//go:build amd64

package htmlrewrite

import "golang.org/x/sys/cpu"

// skipWindowsAVX2 and skipWindowsAVX512 are skipWindows in assembly
// (skip_amd64.s, written by genSkipAsm in skipasm_test.go): the masks of a window take a few
// dozen vector instructions instead of a loop over its 64 bytes, and the
// bit operations need no checks.
//
//go:noescape
func skipWindowsAVX2(b []byte, i int, tab *skipTables) int

//go:noescape
func skipWindowsAVX512(b []byte, i int, tab *skipTables) int

var (
	haveAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasBMI1 && cpu.X86.HasBMI2
	haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW
	haveVector = haveAVX2
)

// skipImpls are the implementations of skipWindows this CPU runs, the
// fastest first.
var skipImpls = func() (impls []skipImpl) {
	if haveAVX512 {
		impls = append(impls, skipImpl{"AVX-512", skipWindowsAVX512, skipWindows})
	}
	if haveAVX2 {
		impls = append(impls, skipImpl{"AVX2", skipWindowsAVX2, skipWindowsAll})
	}
	return append(impls, skipImpl{"Go", skipWindows, nil}, skipImpl{"Go, all tags", skipWindowsAll, nil})
}()

// skipFast is skipWindows as fast as the CPU runs it.
func skipFast(b []byte, i int, tab *skipTables) int {
	switch {
	case haveAVX512:
		return skipWindowsAVX512(b, i, tab)
	case haveAVX2:
		return skipWindowsAVX2(b, i, tab)
	}
	return skipWindows(b, i, tab)
}
