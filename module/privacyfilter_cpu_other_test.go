//go:build !unix

package consentgate

import "time"

// processCPU is unknown here: benchmarks report no cpu-ns/op.
func processCPU() time.Duration { return 0 }
