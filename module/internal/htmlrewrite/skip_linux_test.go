package htmlrewrite

import (
	"syscall"
	"testing"
)

// TestSkipWindowsReadsNoFurther: the assembly reads no byte past its
// input. Each input ends where a page the process may not read begins,
// so a read one byte too far faults.
func TestSkipWindowsReadsNoFurther(t *testing.T) {
	size := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[size:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	inputs := windowSeeds()[:500]
	for _, tail := range []string{"<", "<a", "</", "<a ", `<a b="`, "<div>", "<img src=x>", "x"} {
		for n := 60; n <= 200; n++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = "<a>x "[i%5]
			}
			copy(b[n-len(tail):], tail)
			inputs = append(inputs, b)
		}
	}
	for _, in := range inputs {
		if len(in) > size {
			continue
		}
		b := mem[size-len(in) : size]
		copy(b, in)
		for _, impl := range skipImpls {
			for i := 0; i < len(b); i += 7 {
				impl.skip(b, i, &skipTabs[0])
			}
		}
	}
}
