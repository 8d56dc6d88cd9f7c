package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// syntheticIndex is n files from 4 workers, each worker's files back to back
// with durations up to a minute, sorted as the ring keeps them.
func syntheticIndex(n int, seed uint64) ([]FileInfo, int64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	files := make([]FileInfo, 0, n)
	var next [4]int64
	var span int64
	for i := range n {
		w := i % 4
		first := next[w] + rng.Int64N(int64(time.Second))
		last := first + rng.Int64N(int64(time.Minute))
		next[w] = last + 1
		span = max(span, last-first)
		files = append(files, FileInfo{Name: fmt.Sprintf("f%07d", i), Worker: w, First: first, Last: last})
	}
	slices.SortFunc(files, func(a, b FileInfo) int { return int(min(max(a.First-b.First, -1), 1)) })
	return files, span
}

func TestWindowMatchesScan(t *testing.T) {
	files, span := syntheticIndex(2000, 7)
	end := files[len(files)-1].Last
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		from := rng.Int64N(end)
		to := from + 1 + rng.Int64N(int64(10*time.Minute))
		var want []FileInfo
		for _, f := range files {
			if f.First < to && f.Last >= from {
				want = append(want, f)
			}
		}
		got := window(files, span, from, to)
		if !slices.EqualFunc(got, want, func(a, b FileInfo) bool { return a.Name == b.Name }) {
			t.Fatalf("window [%d,%d): %d files, want %d", from, to, len(got), len(want))
		}
	}
	if got := window(files, span, end+1, end+2); len(got) != 0 {
		t.Fatalf("window after the end: %d files", len(got))
	}
}

// BenchmarkWindow is the index lookup of a one-minute window in the middle
// of the ring: its cost grows with log(files), not files.
func BenchmarkWindow(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		files, span := syntheticIndex(n, 1)
		mid := files[n/2].First
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			for b.Loop() {
				if len(window(files, span, mid, mid+int64(time.Minute))) == 0 {
					b.Fatal("empty")
				}
			}
		})
	}
}
