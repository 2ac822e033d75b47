package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a fixed-size log-linear latency histogram (HDR style) over
// nanosecond values. Values below histSub are stored exactly; above that every
// power-of-two range is split into histHalf equal buckets, so the bucket width
// is at most 2/histSub (~0.2 %) of the value. Memory is constant
// (histBuckets counters, 128 KiB) no matter how many requests are recorded.
type histogram struct {
	counts []uint64
	total  uint64
	sum    uint64 // ns; overflows only after ~584 years of summed latency
	min    uint64
	max    uint64
}

const (
	histSubBits = 10
	histSub     = 1 << histSubBits // exact region [0, histSub) ns
	histHalf    = histSub / 2      // buckets per power of two above it
	histMaxBits = 40               // values are clamped below 2^40 ns (~18 min)
	histBuckets = (histMaxBits - histSubBits + 2) * histHalf
	histMaxVal  = 1<<histMaxBits - 1
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, histBuckets)}
}

// bucketIndex maps a value (ns) to its bucket.
func bucketIndex(v uint64) int {
	if v > histMaxVal {
		v = histMaxVal
	}
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits
	return shift*histHalf + int(v>>uint(shift))
}

// bucketBounds returns the smallest value of bucket i and its width: the
// bucket holds the values [lo, lo+width).
func bucketBounds(i int) (lo, width uint64) {
	if i < histSub {
		return uint64(i), 1
	}
	shift := i/histHalf - 1
	m := i - shift*histHalf
	return uint64(m) << uint(shift), 1 << uint(shift)
}

func (h *histogram) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketIndex(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += v
}

func (h *histogram) reset() {
	clear(h.counts)
	h.total, h.sum, h.min, h.max = 0, 0, 0, 0
}

func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// percentile returns the p-th percentile (0 < p <= 100) in ns using the
// nearest-rank method: the smallest recorded value such that at least p % of
// all values are <= it. The value is reported as the middle of its bucket
// (exact below histSub ns), clamped to the recorded min/max. An empty
// histogram yields 0.
func (h *histogram) percentile(p float64) uint64 {
	if h.total == 0 {
		return 0
	}
	if p >= 100 {
		return h.max
	}
	// The relative epsilon keeps e.g. 99.9 % of 1000 at rank 999 despite
	// 99.9 not being exactly representable.
	x := p / 100 * float64(h.total)
	rank := uint64(math.Ceil(x - x*1e-12))
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var cum uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		cum += c
		if cum >= rank {
			lo, w := bucketBounds(i)
			v := lo + (w-1)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() float64 {
	if h.total == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.total)
}
