package analysis

import (
	"math/bits"

	"github.com/sonde-project/sonde/analysis/decode"
)

// dnsPending remembers outstanding DNS queries by (flow, ID) in a
// set-associative table: a key hashes to a bucket of dnsWays slots; a full
// bucket gives up its oldest query (counted as overflow). Nothing moves and
// nothing is allocated after construction.
type dnsPending struct {
	slots []dnsSlot
	mask  uint64 // bucket count - 1
}

type dnsSlot struct {
	key uint64
	t   int64 // query time; 0 marks a free slot
}

const dnsWays = 8

func newDNSPending(max int) dnsPending {
	buckets := 1 << bits.Len(uint((max+dnsWays-1)/dnsWays-1))
	return dnsPending{slots: make([]dnsSlot, buckets*dnsWays), mask: uint64(buckets - 1)}
}

func dnsKey(f *flow, id uint16) uint64 {
	k := (f.hash ^ uint64(id)*0x9e3779b97f4a7c15) | 1
	return k
}

func (d *dnsPending) bucket(k uint64) []dnsSlot {
	b := (k >> 17) & d.mask
	return d.slots[b*dnsWays : b*dnsWays+dnsWays]
}

// dnsMatch records a query or matches a response to its query.
func (a *Analyzer) dnsMatch(f *flow, p *decode.Packet, ts int64) {
	k := dnsKey(f, p.DNS.ID)
	b := a.dns.bucket(k)
	if ts == 0 {
		ts = 1
	}
	if !p.DNS.Response {
		oldest := 0
		for i := range b {
			if b[i].key == k && b[i].t != 0 {
				return // a retransmitted query: latency counts from the first
			}
			if b[i].t == 0 {
				b[i] = dnsSlot{key: k, t: ts}
				return
			}
			if b[i].t < b[oldest].t {
				oldest = i
			}
		}
		b[oldest] = dnsSlot{key: k, t: ts}
		a.c.DNS.PendingOverflow++
		return
	}
	for i := range b {
		if b[i].key == k && b[i].t != 0 {
			a.c.DNS.Answered++
			a.c.DNS.Latency.Observe(ts - b[i].t)
			b[i].t = 0
			return
		}
	}
	a.c.DNS.Unsolicited++
}

// expire frees the queries sent before cutoff and returns how many.
func (d *dnsPending) expire(cutoff int64) uint64 {
	var n uint64
	for i := range d.slots {
		if s := &d.slots[i]; s.t != 0 && s.t < cutoff {
			s.t = 0
			n++
		}
	}
	return n
}

// nameSketch counts the most queried DNS names of a window with the
// space-saving algorithm over name hashes, keeping the name text only for
// the names it holds. It is a fixed array scanned linearly: DNS queries are
// a small share of packets and the sketch is small.
type nameSketch struct {
	n     int
	slots [nameSketchSize]nameSlot
}

const nameSketchSize = 64

type nameSlot struct {
	hash  uint64
	count uint64
	err   uint64
	len   uint16
	name  [decode.MaxNameLen]byte
}

func (s *nameSketch) add(h uint64, name []byte) {
	for i := 0; i < s.n; i++ {
		if s.slots[i].hash == h {
			s.slots[i].count++
			return
		}
	}
	i := s.n
	if s.n < nameSketchSize {
		s.n++
		s.slots[i].count, s.slots[i].err = 0, 0
	} else {
		i = 0
		for j := 1; j < s.n; j++ {
			if s.slots[j].count < s.slots[i].count {
				i = j
			}
		}
		s.slots[i].err = s.slots[i].count
	}
	sl := &s.slots[i]
	sl.hash = h
	sl.count++
	sl.len = uint16(copy(sl.name[:], name))
}

func (s *nameSketch) reset() { s.n = 0 }

// items returns the sketch's names as top-K items (allocates; window close
// only). Packets carries the query count.
func (s *nameSketch) items() []TopItem[string] {
	out := make([]TopItem[string], s.n)
	for i := range out {
		sl := &s.slots[i]
		out[i] = TopItem[string]{Key: string(sl.name[:sl.len]), Packets: sl.count, Bytes: sl.count, Err: sl.err}
	}
	return out
}
