package analysis

import (
	"net/netip"

	"github.com/sonde-project/sonde/analysis/decode"
)

// FlowRecord is one flow's traffic in one window, seen from its client:
// what anomaly detection needs to tell who talked to whom and how. Records
// are built at the window's close from the flows the window touched (never
// per packet), at most Config.FlowRecords per worker.
type FlowRecord struct {
	// Client started the flow: the sender of the first SYN for TCP; for
	// other protocols, or TCP joined midway, the side with the higher port
	// (the lower one is taken for the service).
	Client, Server         netip.Addr
	ClientPort, ServerPort uint16
	Proto                  uint8 // IP protocol number
	// First is the flow's first packet (Unix ns), New whether that was in
	// this window; Last is its latest packet.
	First, Last int64
	New         bool
	// Packets and Bytes in this window, [0] client to server, [1] back.
	Packets [2]uint32
	Bytes   [2]uint64
	// TCP: the client's SYN, the server's SYN-ACK and the completing ACK
	// were seen; the connection was reset or closed.
	SYN, SYNACK, Established, Reset, Closed bool
}

// HalfOpen reports a TCP connection attempt that never completed its
// handshake.
func (r *FlowRecord) HalfOpen() bool { return r.SYN && !r.Established }

func flowRecord(f *flow, winStart int64) FlowRecord {
	r := FlowRecord{Proto: f.key.proto, First: f.first, Last: f.last, New: f.first >= winStart}
	c := 1 // direction index of the client: B by default (A has the lower endpoint)
	switch {
	case f.key.proto == decode.ProtoTCP && f.tcp.haveSYN:
		c = int(f.tcp.client)
	case f.key.pa > f.key.pb:
		c = 0
	}
	if c == 0 {
		r.Client, r.Server, r.ClientPort, r.ServerPort = unmap(f.key.a), unmap(f.key.b), f.key.pa, f.key.pb
	} else {
		r.Client, r.Server, r.ClientPort, r.ServerPort = unmap(f.key.b), unmap(f.key.a), f.key.pb, f.key.pa
	}
	// Direction 0 of the flow is A to B; the record's 0 is client to server.
	r.Packets[0], r.Packets[1] = f.winPkts[c], f.winPkts[1-c]
	r.Bytes[0], r.Bytes[1] = f.winBytes[c], f.winBytes[1-c]
	if f.key.proto == decode.ProtoTCP {
		t := &f.tcp
		r.SYN, r.SYNACK, r.Established, r.Reset, r.Closed = t.haveSYN, t.haveSYNACK, t.estab, t.reset, t.closed
	}
	return r
}
