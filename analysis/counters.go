package analysis

import (
	"github.com/sonde-project/sonde/analysis/decode"
)

// Proto is the protocol bucket a packet is counted under: its outermost
// transport protocol, so a VXLAN frame counts as UDP (its inner packet is
// what flows, TCP and DNS analysis look at).
type Proto uint8

const (
	ProtoTCP Proto = iota
	ProtoUDP
	ProtoICMP
	ProtoICMP6
	ProtoARP
	ProtoOther
	NumProtos
)

var protoNames = [NumProtos]string{"tcp", "udp", "icmp", "icmp6", "arp", "other"}

// String returns the bucket's name as used in reports and metric labels.
func (p Proto) String() string { return protoNames[p] }

// ProtoNames lists the bucket names in Proto order.
func ProtoNames() []string { return protoNames[:] }

// PacketsBytes is a packet and byte count; bytes are wire lengths.
type PacketsBytes struct {
	Packets uint64
	Bytes   uint64
}

// TCPCounters are TCP events as seen from the capture point.
type TCPCounters struct {
	Segments     uint64
	DataSegments uint64 // segments carrying payload
	SYNs         uint64 // SYN without ACK, retransmissions included
	SYNRetrans   uint64
	SYNACKs      uint64
	// Opened counts connection attempts: first SYNs of a connection.
	Opened uint64
	// Established counts handshakes completed by the client's ACK.
	Established uint64
	// Closed counts connections that saw a FIN in both directions.
	Closed uint64
	// ConnResets counts connections ended by a RST; Resets counts RST
	// segments.
	ConnResets uint64
	Resets     uint64
	// Retransmissions counts every segment whose sequence range was sent
	// before, as Wireshark's tcp.analysis.retransmission does: the fast and
	// spurious ones below are included in it.
	Retransmissions     uint64
	FastRetransmissions uint64 // after two or more duplicate ACKs, within 20 ms
	// RTORetransmissions are plain retransmissions sent at least 200 ms
	// (the Linux minimum RTO) and twice the handshake RTT after the
	// highest sequence was sent: the sender timed out.
	RTORetransmissions uint64
	// The classes below are the segments tshark flags with the
	// tcp.analysis field named, by the same rules (tcpSegment).
	SpuriousRetransmits  uint64    // spurious_retransmission: data the receiver had already acknowledged
	OutOfOrder           uint64    // out_of_order
	DupAcks              uint64    // duplicate_ack
	ZeroWindows          uint64    // zero_window
	LowWindows           uint64    // window_full: data reaching the right edge of the advertised window
	KeepAlives           uint64    // keep_alive
	HandshakeSYN         Histogram // SYN to SYN-ACK: the path beyond the capture point
	HandshakeACK         Histogram // SYN-ACK to ACK: the path before the capture point
	HandshakeRTT         Histogram // SYN to the first ACK: Wireshark's tcp.analysis.initial_rtt
	DataRTT              Histogram // data segment to the ACK covering it (Karn's rule)
	UnmatchedHandshakeAC uint64    // ACKs completing nothing we saw the start of
}

// DNSCounters are DNS over UDP port 53.
type DNSCounters struct {
	Queries   uint64
	Responses uint64
	// Answered counts responses matched to a query by ID and 5-tuple;
	// Latency holds their delays.
	Answered uint64
	// Unsolicited counts responses with no pending query.
	Unsolicited uint64
	// Timeouts counts queries still unanswered DNSTimeout after they were
	// sent; Unanswered counts those the capture ended on before their
	// timeout passed.
	Timeouts   uint64
	Unanswered uint64
	// PendingOverflow counts queries forgotten because the pending table's
	// bucket was full.
	PendingOverflow uint64
	Rcodes          [16]uint64
	Latency         Histogram
}

// RcodeNames are the DNS response codes by number (RFC 6895).
var RcodeNames = [16]string{
	"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
	"NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
}

// Counters are additive totals: per worker per window, merged across
// workers into a window, and summed over windows into running totals.
type Counters struct {
	Packets uint64
	Bytes   uint64
	// FirstTS and LastTS are the times of the first and last packet in
	// Unix ns (0 when none).
	FirstTS, LastTS int64
	// Drops counts packets the kernel dropped before analysis saw them.
	Drops  uint64
	Protos [NumProtos]PacketsBytes
	// Malformed counts frames whose decoding stopped early, by reason
	// (index decode.ReasonNone is unused).
	Malformed [decode.NumReasons]uint64
	Tunnels   [decode.NumTunnels]uint64
	VLAN      uint64
	IPv4      uint64
	IPv6      uint64
	// FragFirst and FragNonFirst count IP fragments (v4 and v6).
	FragFirst    uint64
	FragNonFirst uint64
	// ICMP: destination unreachable (v4 type 3, v6 type 1), of which the
	// path-MTU signals (v4 3/4 frag-needed, v6 type 2 packet-too-big,
	// counted separately since ICMPv6 has its own type), and time exceeded.
	ICMPUnreachable  uint64
	ICMPFragNeeded   uint64
	ICMPPacketTooBig uint64
	ICMPTimeExceeded uint64

	// Flows: NewFlows entered the table; Expired left it idle; Dropped were
	// not tracked because the table was full (their packets still count
	// everywhere except TCP, DNS-latency and jitter analysis).
	NewFlows     uint64
	ExpiredFlows uint64
	DroppedFlows uint64

	// AnalyzerPanics counts packets whose analysis panicked and was
	// recovered (Analyzer.HandleBlock); they count in Packets and Bytes and
	// possibly in part of the rest.
	AnalyzerPanics uint64

	TCP TCPCounters
	DNS DNSCounters
	// Jitter holds one RFC 3550 interarrival jitter estimate per UDP flow
	// direction per window, for directions with enough packets.
	Jitter Histogram
}

// Add merges o into c.
func (c *Counters) Add(o *Counters) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.Drops += o.Drops
	if o.FirstTS != 0 && (c.FirstTS == 0 || o.FirstTS < c.FirstTS) {
		c.FirstTS = o.FirstTS
	}
	c.LastTS = max(c.LastTS, o.LastTS)
	for i := range c.Protos {
		c.Protos[i].Packets += o.Protos[i].Packets
		c.Protos[i].Bytes += o.Protos[i].Bytes
	}
	for i := range c.Malformed {
		c.Malformed[i] += o.Malformed[i]
	}
	for i := range c.Tunnels {
		c.Tunnels[i] += o.Tunnels[i]
	}
	c.VLAN += o.VLAN
	c.IPv4 += o.IPv4
	c.IPv6 += o.IPv6
	c.FragFirst += o.FragFirst
	c.FragNonFirst += o.FragNonFirst
	c.ICMPUnreachable += o.ICMPUnreachable
	c.ICMPFragNeeded += o.ICMPFragNeeded
	c.ICMPPacketTooBig += o.ICMPPacketTooBig
	c.ICMPTimeExceeded += o.ICMPTimeExceeded
	c.NewFlows += o.NewFlows
	c.ExpiredFlows += o.ExpiredFlows
	c.DroppedFlows += o.DroppedFlows
	c.AnalyzerPanics += o.AnalyzerPanics

	t, u := &c.TCP, &o.TCP
	t.Segments += u.Segments
	t.DataSegments += u.DataSegments
	t.SYNs += u.SYNs
	t.SYNRetrans += u.SYNRetrans
	t.SYNACKs += u.SYNACKs
	t.Opened += u.Opened
	t.Established += u.Established
	t.Closed += u.Closed
	t.ConnResets += u.ConnResets
	t.Resets += u.Resets
	t.Retransmissions += u.Retransmissions
	t.FastRetransmissions += u.FastRetransmissions
	t.RTORetransmissions += u.RTORetransmissions
	t.SpuriousRetransmits += u.SpuriousRetransmits
	t.OutOfOrder += u.OutOfOrder
	t.DupAcks += u.DupAcks
	t.ZeroWindows += u.ZeroWindows
	t.LowWindows += u.LowWindows
	t.KeepAlives += u.KeepAlives
	t.UnmatchedHandshakeAC += u.UnmatchedHandshakeAC
	t.HandshakeSYN.Add(&u.HandshakeSYN)
	t.HandshakeACK.Add(&u.HandshakeACK)
	t.HandshakeRTT.Add(&u.HandshakeRTT)
	t.DataRTT.Add(&u.DataRTT)

	d, e := &c.DNS, &o.DNS
	d.Queries += e.Queries
	d.Responses += e.Responses
	d.Answered += e.Answered
	d.Unsolicited += e.Unsolicited
	d.Timeouts += e.Timeouts
	d.Unanswered += e.Unanswered
	d.PendingOverflow += e.PendingOverflow
	for i := range d.Rcodes {
		d.Rcodes[i] += e.Rcodes[i]
	}
	d.Latency.Add(&e.Latency)
	c.Jitter.Add(&o.Jitter)
}

// MalformedTotal sums Malformed over all reasons.
func (c *Counters) MalformedTotal() uint64 {
	var n uint64
	for _, v := range c.Malformed[1:] {
		n += v
	}
	return n
}
