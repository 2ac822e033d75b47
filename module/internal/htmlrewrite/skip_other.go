//go:build !amd64

package htmlrewrite

const haveVector = false

var skipImpls = []skipImpl{{"Go", skipWindows}}

// skipFast is skipWindows as fast as the CPU runs it.
func skipFast(b []byte, i int, tab *skipTables) int { return skipWindows(b, i, tab) }
