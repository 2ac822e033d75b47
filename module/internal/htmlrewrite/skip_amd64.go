//go:build amd64

package htmlrewrite

import "golang.org/x/sys/cpu"

//go:generate python3 gen_skip.py

// skipWindowsAVX2 is skipWindows in assembly (skip_amd64.s, made by
// gen_skip.py): the masks of a window take a few dozen vector
// instructions instead of a loop over its 64 bytes, and the bit
// operations need no checks.
//
//go:noescape
func skipWindowsAVX2(b []byte, i int, tab *skipTables) int

var haveVector = cpu.X86.HasAVX2 && cpu.X86.HasBMI1 && cpu.X86.HasBMI2

// skipFast is skipWindows as fast as the CPU runs it.
func skipFast(b []byte, i int, tab *skipTables) int {
	if haveVector {
		return skipWindowsAVX2(b, i, tab)
	}
	return skipWindows(b, i, tab)
}
