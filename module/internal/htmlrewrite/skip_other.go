//go:build !amd64

package htmlrewrite

const haveVector = false

var skipImpls = []skipImpl{{"Go", skipWindows, nil}, {"Go, all tags", skipWindowsAll, nil}}

// skipFast is skipWindows as fast as the CPU runs it.
func skipFast(b []byte, i int, tab *skipTables) int { return skipWindows(b, i, tab) }
