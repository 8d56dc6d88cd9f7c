// Package mergeheap is the binary min-heap behind sonde's k-way merges of
// time-ordered packet streams (ring windows in extract, members' answers in
// fleet): the stream with the earliest next packet is at the top, its
// packet is written, and the stream is moved down to where its next packet
// belongs, or dropped when it ends.
package mergeheap

// Heap holds the streams of one merge, ordered by less.
type Heap[T any] struct {
	items []T
	less  func(a, b T) bool
}

// New orders items (the heap takes them over) by less.
func New[T any](items []T, less func(a, b T) bool) *Heap[T] {
	h := &Heap[T]{items: items, less: less}
	for i := len(items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return h
}

// Len reports how many streams are left.
func (h *Heap[T]) Len() int { return len(h.items) }

// Min is the stream that orders first. The heap must not be empty.
func (h *Heap[T]) Min() T { return h.items[0] }

// Fix restores the order after Min's key grew (its next packet was read).
func (h *Heap[T]) Fix() { h.down(0) }

// Pop drops Min (its stream ended).
func (h *Heap[T]) Pop() {
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	h.down(0)
}

// Items are the streams left, in heap order.
func (h *Heap[T]) Items() []T { return h.items }

func (h *Heap[T]) down(i int) {
	s := h.items
	for {
		l := 2*i + 1
		if l >= len(s) {
			return
		}
		c := l
		if r := l + 1; r < len(s) && h.less(s[r], s[l]) {
			c = r
		}
		if !h.less(s[c], s[i]) {
			return
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
}
