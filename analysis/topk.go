package analysis

import "sort"

// topK is a space-saving sketch (Metwally et al.) of the heaviest keys by
// bytes: it holds at most k keys; a new key replaces the lightest and
// inherits its weight as an over-estimate bound (Err). It is fed once per
// flow per window at the window's close, never per packet, so a map index is
// affordable; the map is sized once and reused.
type topK[K comparable] struct {
	k     int
	index map[K]int
	items []TopItem[K]
}

// TopItem is one heavy key with its estimated packets and bytes. Err is the
// most the bytes may be over-estimated by (0 while the sketch never
// evicted anything, which makes the counts exact).
type TopItem[K comparable] struct {
	Key     K
	Packets uint64
	Bytes   uint64
	Err     uint64
}

func newTopK[K comparable](k int) *topK[K] {
	return &topK[K]{k: k, index: make(map[K]int, k), items: make([]TopItem[K], 0, k)}
}

func (t *topK[K]) add(key K, packets, bytes uint64) {
	if i, ok := t.index[key]; ok {
		t.items[i].Packets += packets
		t.items[i].Bytes += bytes
		return
	}
	if len(t.items) < t.k {
		t.index[key] = len(t.items)
		t.items = append(t.items, TopItem[K]{Key: key, Packets: packets, Bytes: bytes})
		return
	}
	min := 0
	for i := range t.items {
		if t.items[i].Bytes < t.items[min].Bytes {
			min = i
		}
	}
	old := t.items[min]
	delete(t.index, old.Key)
	t.index[key] = min
	t.items[min] = TopItem[K]{Key: key, Packets: old.Packets + packets, Bytes: old.Bytes + bytes, Err: old.Bytes}
}

func (t *topK[K]) addItem(it TopItem[K]) {
	t.add(it.Key, it.Packets, it.Bytes)
	if i, ok := t.index[it.Key]; ok {
		t.items[i].Err += it.Err
	}
}

func (t *topK[K]) reset() {
	clear(t.index)
	t.items = t.items[:0]
}

// sorted returns a copy of the items, heaviest first.
func (t *topK[K]) sorted() []TopItem[K] {
	out := append([]TopItem[K](nil), t.items...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out
}
