//go:build amd64

package htmlrewrite

import "golang.org/x/sys/cpu"

// skipWindowsAVX2 and skipWindowsAVX512 are skipWindows in assembly
// (skip_amd64.s, written by genSkipAsm in skipasm_test.go): the masks of
// a window take a few dozen vector instructions instead of a loop over its
// 64 bytes, and the bit operations need no checks.
//
//go:noescape
func skipWindowsAVX2(b []byte, i int, tab *skipTables) int

//go:noescape
func skipWindowsAVX512(b []byte, i int, tab *skipTables) int

// skipWindowsAVX2Simple is skipWindowsAVX2 taking the simple tags out of
// the masks (simpleTags) and making the next window's masks while it
// walks one, as skipWindowsAVX512 does.
//
//go:noescape
func skipWindowsAVX2Simple(b []byte, i int, tab *skipTables) int

// cpuid returns what the CPUID instruction answers for leaf (and ECX 0).
func cpuid(leaf uint32) (eax, ebx, ecx, edx uint32)

var (
	haveAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasBMI1 && cpu.X86.HasBMI2
	haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW
	haveVector = haveAVX2
	// fastPDEP: PDEP and PEXT take a few cycles, as on Intel CPUs and AMD's
	// since Zen 3, not hundreds, as on AMD's (and Hygon's) before.
	fastPDEP = haveAVX2 && !slowPDEP()
)

// slowPDEP reports whether the CPU is AMD's or Hygon's of a family before
// 19h (Zen 3), whose PDEP and PEXT are microcoded.
func slowPDEP() bool {
	if v := cpuVendor(); v != "AuthenticAMD" && v != "HygonGenuine" {
		return false
	}
	return cpuFamily() < 0x19
}

// cpuVendor is the CPU's vendor string (CPUID leaf 0: EBX, EDX, ECX).
func cpuVendor() string {
	_, b, c, d := cpuid(0)
	var v []byte
	for _, r := range []uint32{b, d, c} {
		v = append(v, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(v)
}

// cpuFamily is the CPU's family, the extended family added (CPUID leaf 1).
func cpuFamily() uint32 {
	a, _, _, _ := cpuid(1)
	family := a >> 8 & 0xf
	if family == 0xf {
		family += a >> 20 & 0xff
	}
	return family
}

// skipImpls are the implementations of skipWindows this CPU runs, the
// fastest first.
var skipImpls = func() (impls []skipImpl) {
	if haveAVX512 {
		impls = append(impls, skipImpl{"AVX-512", skipWindowsAVX512, skipWindows})
	}
	if haveAVX2 {
		impls = append(impls, skipImpl{"AVX2, simple tags", skipWindowsAVX2Simple, skipWindows},
			skipImpl{"AVX2", skipWindowsAVX2, skipWindowsAll})
	}
	return append(impls, skipImpl{"Go", skipWindows, nil}, skipImpl{"Go, all tags", skipWindowsAll, nil})
}()

// skipFast is skipWindows as fast as the CPU runs it.
func skipFast(b []byte, i int, tab *skipTables) int {
	switch {
	case haveAVX512:
		return skipWindowsAVX512(b, i, tab)
	case fastPDEP:
		return skipWindowsAVX2Simple(b, i, tab)
	case haveAVX2:
		return skipWindowsAVX2(b, i, tab)
	}
	return skipWindows(b, i, tab)
}
