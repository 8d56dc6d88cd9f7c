package analysis

import (
	"encoding/binary"
	"math/bits"
)

// flowKey is a bidirectional 5-tuple in canonical order: endpoint A is the
// smaller (address, port), so both directions of a conversation share a key.
// Addresses are IPv6 or IPv4-mapped.
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
}

// flow is one conversation's state. Direction 0 is A to B.
type flow struct {
	key  flowKey
	hash uint64
	// first and last are packet times in ns.
	first, last int64
	// epoch is the window the window counters below belong to (the
	// window's start); a flow touched in a new window resets them.
	epoch    int64
	winPkts  [2]uint32
	winBytes [2]uint64
	tcp      tcpConn
	udp      [2]jitterState
}

// flowTable is an open-addressing hash index over a slab of preallocated
// flows: the slab index of a flow never changes while it lives, so a
// window's list of touched flows stays valid, and removal from the index is
// a backward shift (no tombstones), so probe chains stay short under churn.
type flowTable struct {
	slab  []flow
	free  []uint32 // unused slab indices
	index []uint32 // slab index + 1; 0 is empty
	mask  uint64
	live  int
}

func newFlowTable(max int) *flowTable {
	n := 1 << bits.Len(uint(max*2-1)) // load factor at most 1/2
	t := &flowTable{
		slab:  make([]flow, max),
		free:  make([]uint32, max),
		index: make([]uint32, n),
		mask:  uint64(n - 1),
	}
	for i := range t.free {
		t.free[i] = uint32(max - 1 - i)
	}
	return t
}

// hashKey mixes the key's 37 bytes a word at a time (wyhash-style
// multiply-xorshift); it only has to spread keys over the index, not resist
// an adversary who controls the index size, which is a power of two we
// choose.
func hashKey(k *flowKey) uint64 {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	h := uint64(k.proto)<<32 | uint64(k.pa)<<16 | uint64(k.pb)
	h ^= binary.LittleEndian.Uint64(k.a[0:8]) * m1
	h = bits.RotateLeft64(h, 31) * m2
	h ^= binary.LittleEndian.Uint64(k.a[8:16])
	h = bits.RotateLeft64(h, 29) * m1
	h ^= binary.LittleEndian.Uint64(k.b[0:8])
	h = bits.RotateLeft64(h, 31) * m2
	h ^= binary.LittleEndian.Uint64(k.b[8:16])
	h = (h ^ h>>32) * m1
	return h ^ h>>29
}

// lookup returns the flow for k, inserting it when absent. created is true
// for a new flow; idx is -1 when the table is full.
func (t *flowTable) lookup(k *flowKey, h uint64) (idx int, created bool) {
	i := h & t.mask
	for {
		s := t.index[i]
		if s == 0 {
			break
		}
		f := &t.slab[s-1]
		if f.hash == h && f.key == *k {
			return int(s - 1), false
		}
		i = (i + 1) & t.mask
	}
	if len(t.free) == 0 {
		return -1, false
	}
	n := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	t.index[i] = n + 1
	t.live++
	f := &t.slab[n]
	*f = flow{key: *k, hash: h}
	return int(n), true
}

// remove deletes slab entry n from the index (backward-shift deletion) and
// frees it.
func (t *flowTable) remove(n int) {
	h := t.slab[n].hash
	i := h & t.mask
	for t.index[i] != uint32(n+1) {
		i = (i + 1) & t.mask
	}
	j := i
	for {
		j = (j + 1) & t.mask
		s := t.index[j]
		if s == 0 {
			break
		}
		home := t.slab[s-1].hash & t.mask
		// Move s back into the hole at i unless its home lies cyclically
		// in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = s
			i = j
		}
	}
	t.index[i] = 0
	t.slab[n].hash = 0
	t.free = append(t.free, uint32(n))
	t.live--
}
