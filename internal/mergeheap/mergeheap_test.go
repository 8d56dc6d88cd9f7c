package mergeheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMerge merges sorted streams of random lengths and keys (many equal)
// through the heap and checks the output is every key, in order.
func TestMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		type stream struct{ keys []int }
		var all []int
		var ss []*stream
		for range r.IntN(9) {
			s := &stream{}
			for range r.IntN(20) {
				s.keys = append(s.keys, r.IntN(30))
			}
			slices.Sort(s.keys)
			all = append(all, s.keys...)
			if len(s.keys) > 0 {
				ss = append(ss, s)
			}
		}
		slices.Sort(all)
		h := New(ss, func(a, b *stream) bool { return a.keys[0] < b.keys[0] })
		var got []int
		for h.Len() > 0 {
			s := h.Min()
			got = append(got, s.keys[0])
			if s.keys = s.keys[1:]; len(s.keys) > 0 {
				h.Fix()
			} else {
				h.Pop()
			}
		}
		if !slices.Equal(got, all) {
			t.Fatalf("round %d: merged %v, want %v", round, got, all)
		}
	}
}

// TestItems checks what is left in the heap when a merge stops early.
func TestItems(t *testing.T) {
	a, b, c := 1, 2, 3
	h := New([]*int{&c, &a, &b}, func(x, y *int) bool { return *x < *y })
	if *h.Min() != 1 {
		t.Fatalf("min %d", *h.Min())
	}
	h.Pop()
	left := []int{}
	for _, p := range h.Items() {
		left = append(left, *p)
	}
	slices.Sort(left)
	if !slices.Equal(left, []int{2, 3}) || h.Len() != 2 {
		t.Fatalf("left %v", left)
	}
}
