package analysis

import (
	"math/bits"
	"time"
)

// Histogram is a fixed-size log-linear histogram of durations in
// nanoseconds: every power of two is split into 32 equal buckets, so any
// recorded value is known to within 1/32 (3.1 %) and a quantile's midpoint
// estimate to within 1.6 %. It covers 0 to 2^38 ns (275 s); larger values
// land in the last bucket. Recording is a few instructions and never
// allocates; two histograms merge by adding buckets.
type Histogram struct {
	Count   uint64
	SumNano uint64
	Buckets [histBuckets]uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histMaxExp  = 38 - histSubBits - 1 // largest shift
	histBuckets = (histMaxExp+1)*histSub + histSub
)

func histIndex(v uint64) int {
	l := bits.Len64(v)
	if l <= histSubBits+1 {
		return int(v) // values below 64 have their own bucket
	}
	e := l - histSubBits - 1
	if e > histMaxExp {
		return histBuckets - 1
	}
	return e*histSub + int(v>>uint(e))
}

// bucketBounds returns the half-open range [lo, hi) of bucket i in ns.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i) + 1
	}
	e := uint(i/histSub - 1)
	m := uint64(i%histSub + histSub)
	return m << e, (m + 1) << e
}

// Observe records one duration in nanoseconds; negative ones are dropped
// (they come from captures whose clock stepped back).
func (h *Histogram) Observe(ns int64) {
	if ns < 0 {
		return
	}
	h.Count++
	h.SumNano += uint64(ns)
	h.Buckets[histIndex(uint64(ns))]++
}

// Add merges o into h.
func (h *Histogram) Add(o *Histogram) {
	if o.Count == 0 {
		return
	}
	h.Count += o.Count
	h.SumNano += o.SumNano
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1) as the
// midpoint of the bucket holding it, or 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.Buckets {
		cum += c
		if cum >= rank {
			lo, hi := bucketBounds(i)
			return time.Duration((lo + hi - 1) / 2)
		}
	}
	return 0
}

// Mean returns the average recorded duration.
func (h *Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.SumNano / h.Count)
}

// CumulativeCounts returns, for each upper bound (ascending, in seconds),
// how many observations were at or below it as far as the buckets tell:
// a bucket counts towards a bound when it lies wholly below it. This is the
// shape a Prometheus histogram needs.
func (h *Histogram) CumulativeCounts(upperSeconds []float64) []uint64 {
	out := make([]uint64, len(upperSeconds))
	var cum uint64
	j := 0
	for i, c := range h.Buckets {
		_, hi := bucketBounds(i)
		for j < len(upperSeconds) && float64(hi) > upperSeconds[j]*1e9 {
			out[j] = cum
			j++
		}
		cum += c
	}
	for ; j < len(upperSeconds); j++ {
		out[j] = cum
	}
	return out
}
