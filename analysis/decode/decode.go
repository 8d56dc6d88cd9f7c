// Package decode parses captured frames into a flat, fixed-size Packet
// without allocating, for sonde's per-packet analysis.
//
// Data enters as the captured bytes of one frame and its pcap link type;
// it leaves as the fields of a caller-owned Packet, which Decode overwrites.
// Every header is read at fixed offsets after a length check, so a
// truncated or malformed frame yields a Reason instead of a panic, and the
// fields decoded before the damage stay usable (a frame cut inside its TCP
// header still counts as TCP towards protocol totals).
//
// Tunnels (VXLAN, Geneve, GRE) are counted on the Packet and their inner
// packet is decoded in place of the outer one; OuterProto keeps the outer
// transport so that protocol totals reflect what travelled on the wire.
package decode

import (
	"encoding/binary"
)

// LinkType is a pcap LINKTYPE_* value.
type LinkType uint32

// Link types Decode understands.
const (
	LinkNull     LinkType = 0   // BSD loopback: 4-byte address family, host byte order
	LinkEthernet LinkType = 1   // Ethernet II, optionally 802.1Q/QinQ tagged
	LinkRaw12    LinkType = 12  // raw IP (DLT_RAW on most systems)
	LinkRaw14    LinkType = 14  // raw IP (DLT_RAW on OpenBSD)
	LinkRaw      LinkType = 101 // raw IPv4 or IPv6
	LinkLoop     LinkType = 108 // OpenBSD loopback: address family in network byte order
	LinkSLL      LinkType = 113 // Linux cooked capture v1
	LinkIPv4     LinkType = 228 // raw IPv4 only
	LinkIPv6     LinkType = 229 // raw IPv6 only
	LinkSLL2     LinkType = 276 // Linux cooked capture v2
)

// EtherTypes Decode follows.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeQinQ = 0x88a8
	EtherType9100 = 0x9100
	EtherTypeIPv6 = 0x86dd
	EtherTypeTEB  = 0x6558 // transparent Ethernet bridging, inside GRE
	EtherTypeMPLS = 0x8847
)

// IP protocol numbers.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoIPIP     = 4
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoIPv6     = 41
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoGRE      = 47
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDestOpts = 60
	ProtoMH       = 135
)

// TCP flags as they appear in the 13th byte of the header.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// Well-known ports that switch on payload decoding.
const (
	PortDNS    = 53
	PortVXLAN  = 4789
	PortGeneve = 6081
)

// Reason says why decoding stopped before the end of the headers Decode
// knows. ReasonNone means every header it looked at was whole and sane.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonTruncatedLink
	ReasonTruncatedIPv4
	ReasonBadIPv4Header // version, IHL or total length wrong
	ReasonTruncatedIPv6
	ReasonBadIPv6Header
	ReasonIPv6ExtChain // extension header walk too long or truncated
	ReasonTruncatedTCP
	ReasonBadTCPHeader // data offset below 5 or beyond the segment
	ReasonTruncatedUDP
	ReasonTruncatedICMP
	ReasonTruncatedARP
	ReasonTruncatedDNS
	ReasonBadDNSName
	ReasonTruncatedTunnel
	ReasonUnknownLinkType
	ReasonTooManyTags // more VLAN tags or tunnel levels than Decode follows
	NumReasons
)

var reasonNames = [NumReasons]string{
	"none", "truncated_link", "truncated_ipv4", "bad_ipv4_header", "truncated_ipv6",
	"bad_ipv6_header", "ipv6_ext_chain", "truncated_tcp", "bad_tcp_header", "truncated_udp",
	"truncated_icmp", "truncated_arp", "truncated_dns", "bad_dns_name", "truncated_tunnel",
	"unknown_link_type", "too_many_tags",
}

// String returns the reason's metric label, e.g. "truncated_tcp".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// L3 says which network layer a packet carries.
type L3 uint8

const (
	L3None L3 = iota
	L3IPv4
	L3IPv6
	L3ARP
)

// Tunnel kinds.
type Tunnel uint8

const (
	TunnelNone Tunnel = iota
	TunnelVXLAN
	TunnelGeneve
	TunnelGRE
	TunnelIPinIP
	NumTunnels
)

var tunnelNames = [NumTunnels]string{"none", "vxlan", "geneve", "gre", "ipip"}

func (t Tunnel) String() string {
	if t < NumTunnels {
		return tunnelNames[t]
	}
	return "unknown"
}

// Fragment says where an IP packet stands among the fragments of a datagram.
type Fragment uint8

const (
	FragNone     Fragment = iota // not a fragment
	FragFirst                    // offset 0, more fragments follow: transport header present
	FragNonFirst                 // offset > 0: no transport header
)

// MaxSACKBlocks is how many SACK blocks of a segment Decode keeps (a TCP
// header has room for 4, 3 alongside timestamps).
const MaxSACKBlocks = 4

// MaxNameLen is the longest presentation form of a DNS name (253) plus room
// for the trailing dot Decode never writes.
const MaxNameLen = 256

// TCP holds a segment's header fields and options.
type TCP struct {
	Seq, Ack   uint32
	Flags      uint8
	Window     uint16 // unscaled, as on the wire
	PayloadLen uint32 // from the IP lengths, so right even when the capture is cut
	MSS        uint16 // 0 when absent
	WScale     uint8  // shift; valid when HasWScale
	HasWScale  bool
	SACKPerm   bool
	HasTS      bool
	TSVal      uint32
	TSEcr      uint32
	NumSACK    uint8
	SACK       [MaxSACKBlocks][2]uint32 // left and right edges
}

// DNS holds a message's header and its first question.
type DNS struct {
	ID       uint16
	Response bool
	Opcode   uint8
	Rcode    uint8
	QDCount  uint16
	ANCount  uint16
	QType    uint16
	// NameHash is FNV-1a of the lower-cased first question name in
	// presentation form; 0 when the message has no question.
	NameHash uint64
	NameLen  uint16
	Name     [MaxNameLen]byte // lower-cased, dots between labels, no trailing dot
}

// Packet is one decoded frame. Decode overwrites every field it sets and
// resets the rest, so one Packet is reused for a whole capture.
type Packet struct {
	Reason  Reason
	VLANs   uint8  // number of 802.1Q/QinQ tags
	VLANID  uint16 // outermost tag's VLAN ID
	L3      L3
	Tunnel  Tunnel
	Frag    Fragment
	IPProto uint8 // transport protocol of the (inner) packet; 0 also for IPv6 hop-by-hop, see HasL4
	// OuterProto is the transport protocol of the outermost IP header:
	// equal to IPProto unless the packet was tunneled.
	OuterProto uint8
	HasL4      bool // the transport header of IPProto was whole and decoded
	TTL        uint8
	// Src and Dst are IPv6 addresses or IPv4-mapped IPv6 addresses
	// (::ffff:a.b.c.d), so one key type holds both families.
	Src, Dst         [16]byte
	IPLen            uint32 // IP total length (IPv4) or header + payload length (IPv6)
	SrcPort, DstPort uint16
	ICMPType         uint8
	ICMPCode         uint8
	TCP              TCP
	IsDNS            bool // a DNS header was decoded into DNS
	DNS              DNS
	ARPOp            uint16
}

// maxTags bounds the VLAN tag walk; maxIPv6Ext the IPv6 extension header
// walk; maxTunnel the tunnel nesting.
const (
	maxTags    = 4
	maxIPv6Ext = 8
	maxTunnel  = 2
)

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// Decode parses data, a frame of link type lt, into p. It never allocates
// and never panics; p.Reason says where it stopped if the frame was short
// or malformed.
func Decode(lt LinkType, data []byte, p *Packet) {
	p.reset()
	switch lt {
	case LinkEthernet:
		p.ethernet(data, 0)
	case LinkRaw, LinkRaw12, LinkRaw14:
		p.rawIP(data, 0)
	case LinkIPv4:
		p.ipv4(data, 0)
	case LinkIPv6:
		p.ipv6(data, 0)
	case LinkNull, LinkLoop:
		if len(data) < 4 {
			p.Reason = ReasonTruncatedLink
			return
		}
		// The family is in the writer's byte order for LinkNull; AF_INET is
		// 2 everywhere and AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs), so
		// look at whichever end byte is non-zero.
		fam := uint32(data[0]) | uint32(data[3])
		if lt == LinkLoop {
			fam = uint32(data[3])
		}
		switch fam {
		case 2:
			p.ipv4(data[4:], 0)
		case 10, 24, 28, 30:
			p.ipv6(data[4:], 0)
		}
	case LinkSLL:
		if len(data) < 16 {
			p.Reason = ReasonTruncatedLink
			return
		}
		p.etherType(binary.BigEndian.Uint16(data[14:16]), data[16:], 0)
	case LinkSLL2:
		if len(data) < 20 {
			p.Reason = ReasonTruncatedLink
			return
		}
		p.etherType(binary.BigEndian.Uint16(data[0:2]), data[20:], 0)
	default:
		p.Reason = ReasonUnknownLinkType
	}
}

func (p *Packet) reset() {
	// Clearing the whole struct would cost a 400-byte memclr per packet for
	// the DNS name buffer; clear everything except it (NameLen guards it).
	p.Reason = 0
	p.VLANs, p.VLANID = 0, 0
	p.L3, p.Tunnel, p.Frag = 0, 0, 0
	p.IPProto, p.OuterProto, p.HasL4, p.TTL = 0, 0, false, 0
	p.IPLen, p.SrcPort, p.DstPort = 0, 0, 0
	p.ICMPType, p.ICMPCode = 0, 0
	p.TCP = TCP{}
	p.IsDNS = false
	p.DNS.ID, p.DNS.Response, p.DNS.Opcode, p.DNS.Rcode = 0, false, 0, 0
	p.DNS.QDCount, p.DNS.ANCount, p.DNS.QType, p.DNS.NameHash, p.DNS.NameLen = 0, 0, 0, 0, 0
	p.ARPOp = 0
}

func (p *Packet) ethernet(b []byte, depth int) {
	if len(b) < 14 {
		p.Reason = ReasonTruncatedLink
		return
	}
	p.etherType(binary.BigEndian.Uint16(b[12:14]), b[14:], depth)
}

func (p *Packet) etherType(et uint16, b []byte, depth int) {
	for tags := 0; et == EtherTypeVLAN || et == EtherTypeQinQ || et == EtherType9100; tags++ {
		if tags == maxTags {
			p.Reason = ReasonTooManyTags
			return
		}
		if len(b) < 4 {
			p.Reason = ReasonTruncatedLink
			return
		}
		if p.VLANs == 0 {
			p.VLANID = binary.BigEndian.Uint16(b[0:2]) & 0x0fff
		}
		p.VLANs++
		et = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch et {
	case EtherTypeMPLS:
		// Pop labels to the bottom of the stack; the payload's first nibble
		// says IPv4 or IPv6 (pseudowires carrying Ethernet are not followed).
		for i := 0; ; i++ {
			if i == maxTags || len(b) < 4 {
				p.Reason = ReasonTooManyTags
				if len(b) < 4 {
					p.Reason = ReasonTruncatedLink
				}
				return
			}
			bottom := b[2]&1 != 0
			b = b[4:]
			if bottom {
				break
			}
		}
		if len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6) {
			p.rawIP(b, depth)
		}
	case EtherTypeIPv4:
		p.ipv4(b, depth)
	case EtherTypeIPv6:
		p.ipv6(b, depth)
	case EtherTypeARP:
		if depth > 0 {
			// An ARP inside a tunnel: the outer packet is what we account.
			return
		}
		p.L3 = L3ARP
		if len(b) < 8 {
			p.Reason = ReasonTruncatedARP
			return
		}
		p.ARPOp = binary.BigEndian.Uint16(b[6:8])
	}
}

func (p *Packet) rawIP(b []byte, depth int) {
	if len(b) < 1 {
		p.Reason = ReasonTruncatedIPv4
		return
	}
	switch b[0] >> 4 {
	case 4:
		p.ipv4(b, depth)
	case 6:
		p.ipv6(b, depth)
	default:
		p.Reason = ReasonBadIPv4Header
	}
}

func (p *Packet) ipv4(b []byte, depth int) {
	if depth == 0 {
		p.L3 = L3IPv4
	}
	if len(b) < 20 {
		p.Reason = ReasonTruncatedIPv4
		return
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if b[0]>>4 != 4 || ihl < 20 {
		p.Reason = ReasonBadIPv4Header
		return
	}
	proto := b[9]
	if depth == 0 {
		p.OuterProto = proto
	}
	p.IPProto = proto
	p.TTL = b[8]
	copy(p.Src[:12], v4Mapped[:])
	copy(p.Dst[:12], v4Mapped[:])
	copy(p.Src[12:], b[12:16])
	copy(p.Dst[12:], b[16:20])
	p.IPLen = uint32(total)
	if total < ihl {
		// TSO-offloaded captures write 0 here; trust the frame instead.
		if total == 0 {
			total = len(b)
			p.IPLen = uint32(total)
		} else {
			p.Reason = ReasonBadIPv4Header
			return
		}
	}
	if len(b) < ihl {
		p.Reason = ReasonTruncatedIPv4
		return
	}
	fo := binary.BigEndian.Uint16(b[6:8])
	switch {
	case fo&0x1fff != 0:
		p.Frag = FragNonFirst
		return
	case fo&0x2000 != 0:
		p.Frag = FragFirst
	}
	end := total
	if end > len(b) {
		end = len(b)
	}
	p.transport(proto, b[ihl:end], uint32(total-ihl), depth)
}

func (p *Packet) ipv6(b []byte, depth int) {
	if depth == 0 {
		p.L3 = L3IPv6
	}
	if len(b) < 40 {
		p.Reason = ReasonTruncatedIPv6
		return
	}
	if b[0]>>4 != 6 {
		p.Reason = ReasonBadIPv6Header
		return
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	next := b[6]
	p.TTL = b[7]
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	if plen == 0 {
		// A jumbogram (hop-by-hop option) or a TSO capture: use the frame.
		plen = len(b) - 40
	}
	p.IPLen = uint32(40 + plen)
	end := 40 + plen
	if end > len(b) {
		end = len(b)
	}
	rest := b[40:end]
	wire := uint32(plen)
	for i := 0; ; i++ {
		if depth == 0 {
			p.OuterProto = next
		}
		p.IPProto = next
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts, ProtoMH:
		case ProtoFragment:
			if len(rest) < 8 {
				p.Reason = ReasonIPv6ExtChain
				return
			}
			off := binary.BigEndian.Uint16(rest[2:4])
			if off&0xfff8 != 0 {
				p.Frag = FragNonFirst
				p.IPProto = rest[0]
				if depth == 0 {
					p.OuterProto = rest[0]
				}
				return
			}
			if off&1 != 0 {
				p.Frag = FragFirst
			}
			next = rest[0]
			rest = rest[8:]
			wire -= 8
			continue
		default:
			p.transport(next, rest, wire, depth)
			return
		}
		if i == maxIPv6Ext {
			p.Reason = ReasonIPv6ExtChain
			return
		}
		if len(rest) < 8 {
			p.Reason = ReasonIPv6ExtChain
			return
		}
		n := (int(rest[1]) + 1) * 8
		if len(rest) < n || uint32(n) > wire {
			p.Reason = ReasonIPv6ExtChain
			return
		}
		next = rest[0]
		rest = rest[n:]
		wire -= uint32(n)
	}
}

// transport decodes the transport header at the start of b; wire is the
// transport length the IP header claims (b may be shorter when cut).
func (p *Packet) transport(proto uint8, b []byte, wire uint32, depth int) {
	switch proto {
	case ProtoTCP:
		p.tcp(b, wire)
	case ProtoUDP:
		p.udp(b, depth)
	case ProtoICMP, ProtoICMPv6:
		if len(b) < 4 {
			p.Reason = ReasonTruncatedICMP
			return
		}
		p.ICMPType, p.ICMPCode = b[0], b[1]
		p.HasL4 = true
	case ProtoGRE:
		p.gre(b, depth)
	case ProtoIPIP:
		if depth < maxTunnel && p.Frag == FragNone {
			p.Tunnel = TunnelIPinIP
			p.ipv4(b, depth+1)
		}
	case ProtoIPv6:
		if depth < maxTunnel && p.Frag == FragNone {
			p.Tunnel = TunnelIPinIP
			p.ipv6(b, depth+1)
		}
	}
}

func (p *Packet) tcp(b []byte, wire uint32) {
	if len(b) < 20 {
		p.Reason = ReasonTruncatedTCP
		return
	}
	t := &p.TCP
	p.SrcPort = binary.BigEndian.Uint16(b[0:2])
	p.DstPort = binary.BigEndian.Uint16(b[2:4])
	t.Seq = binary.BigEndian.Uint32(b[4:8])
	t.Ack = binary.BigEndian.Uint32(b[8:12])
	off := uint32(b[12]>>4) * 4
	t.Flags = b[13]
	t.Window = binary.BigEndian.Uint16(b[14:16])
	if off < 20 || off > wire {
		p.Reason = ReasonBadTCPHeader
		return
	}
	t.PayloadLen = wire - off
	p.HasL4 = true
	if int(off) > len(b) {
		// Options cut by the snaplen: the fixed header is still good.
		p.Reason = ReasonTruncatedTCP
		return
	}
	p.tcpOptions(b[20:off])
}

func (p *Packet) tcpOptions(o []byte) {
	t := &p.TCP
	for len(o) > 0 {
		kind := o[0]
		if kind == 0 { // end of options
			return
		}
		if kind == 1 { // NOP
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return // a malformed option ends the walk; the header stays valid
		}
		n := int(o[1])
		switch {
		case kind == 2 && n == 4:
			t.MSS = binary.BigEndian.Uint16(o[2:4])
		case kind == 3 && n == 3:
			t.WScale, t.HasWScale = o[2], true
		case kind == 4 && n == 2:
			t.SACKPerm = true
		case kind == 5 && n >= 10:
			for i := 2; i+8 <= n && t.NumSACK < MaxSACKBlocks; i += 8 {
				t.SACK[t.NumSACK][0] = binary.BigEndian.Uint32(o[i : i+4])
				t.SACK[t.NumSACK][1] = binary.BigEndian.Uint32(o[i+4 : i+8])
				t.NumSACK++
			}
		case kind == 8 && n == 10:
			t.HasTS = true
			t.TSVal = binary.BigEndian.Uint32(o[2:6])
			t.TSEcr = binary.BigEndian.Uint32(o[6:10])
		}
		o = o[n:]
	}
}

func (p *Packet) udp(b []byte, depth int) {
	if len(b) < 8 {
		p.Reason = ReasonTruncatedUDP
		return
	}
	p.SrcPort = binary.BigEndian.Uint16(b[0:2])
	p.DstPort = binary.BigEndian.Uint16(b[2:4])
	p.HasL4 = true
	if p.Frag != FragNone {
		return // the payload continues in other fragments
	}
	pl := b[8:]
	switch {
	case p.SrcPort == PortDNS || p.DstPort == PortDNS:
		p.dns(pl)
	case p.DstPort == PortVXLAN && depth < maxTunnel:
		// VXLAN: 8-byte header, I flag set, then an Ethernet frame.
		if len(pl) < 8 {
			p.Reason = ReasonTruncatedTunnel
			return
		}
		p.Tunnel = TunnelVXLAN
		p.inner()
		p.ethernet(pl[8:], depth+1)
	case p.DstPort == PortGeneve && depth < maxTunnel:
		if len(pl) < 8 {
			p.Reason = ReasonTruncatedTunnel
			return
		}
		optLen := int(pl[0]&0x3f) * 4
		proto := binary.BigEndian.Uint16(pl[2:4])
		if len(pl) < 8+optLen {
			p.Reason = ReasonTruncatedTunnel
			return
		}
		p.Tunnel = TunnelGeneve
		p.inner()
		if proto == EtherTypeTEB {
			p.ethernet(pl[8+optLen:], depth+1)
		} else {
			p.etherType(proto, pl[8+optLen:], depth+1)
		}
	}
}

// inner forgets the outer transport fields before a tunnel's inner packet
// is decoded over them.
func (p *Packet) inner() {
	p.HasL4 = false
	p.SrcPort, p.DstPort = 0, 0
}

func (p *Packet) gre(b []byte, depth int) {
	if len(b) < 4 {
		p.Reason = ReasonTruncatedTunnel
		return
	}
	p.HasL4 = true
	if depth >= maxTunnel || p.Frag != FragNone {
		return
	}
	flags := b[0]
	ver := b[1] & 7
	if ver != 0 {
		return // PPTP's enhanced GRE carries PPP: counted, not followed
	}
	n := 4
	if flags&0x80 != 0 { // checksum present (with reserved1)
		n += 4
	}
	if flags&0x20 != 0 { // key
		n += 4
	}
	if flags&0x10 != 0 { // sequence
		n += 4
	}
	if len(b) < n {
		p.Reason = ReasonTruncatedTunnel
		return
	}
	p.Tunnel = TunnelGRE
	proto := binary.BigEndian.Uint16(b[2:4])
	p.inner()
	if proto == EtherTypeTEB {
		p.ethernet(b[n:], depth+1)
		return
	}
	p.etherType(proto, b[n:], depth+1)
}

// dns decodes a DNS header and its first question. The name is lower-cased
// into p.DNS.Name and hashed; compression pointers are not followed (a first
// question never needs one).
func (p *Packet) dns(b []byte) {
	if len(b) < 12 {
		p.Reason = ReasonTruncatedDNS
		return
	}
	d := &p.DNS
	p.IsDNS = true
	d.ID = binary.BigEndian.Uint16(b[0:2])
	d.Response = b[2]&0x80 != 0
	d.Opcode = (b[2] >> 3) & 0x0f
	d.Rcode = b[3] & 0x0f
	d.QDCount = binary.BigEndian.Uint16(b[4:6])
	d.ANCount = binary.BigEndian.Uint16(b[6:8])
	if d.QDCount == 0 {
		return
	}
	const (
		fnvOffset = 14695981039346656037
		fnvPrime  = 1099511628211
	)
	h := uint64(fnvOffset)
	i, n := 12, 0
	for {
		if i >= len(b) {
			p.Reason = ReasonTruncatedDNS
			return
		}
		l := int(b[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(b) || n+l+1 > MaxNameLen-1 {
			// A compression pointer, a label type we do not know, a cut
			// message or an over-long name.
			if i+l > len(b) && l <= 63 {
				p.Reason = ReasonTruncatedDNS
			} else {
				p.Reason = ReasonBadDNSName
			}
			return
		}
		if n > 0 {
			d.Name[n] = '.'
			h = (h ^ '.') * fnvPrime
			n++
		}
		for _, c := range b[i : i+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			d.Name[n] = c
			h = (h ^ uint64(c)) * fnvPrime
			n++
		}
		i += l
	}
	if n == 0 {
		d.Name[0] = '.'
		h = (h ^ '.') * fnvPrime
		n = 1
	}
	d.NameLen = uint16(n)
	d.NameHash = h
	if i+2 <= len(b) {
		d.QType = binary.BigEndian.Uint16(b[i : i+2])
	}
}

// NameString returns the first question name; it allocates, so it is for
// reports, not for the packet path.
func (d *DNS) NameString() string { return string(d.Name[:d.NameLen]) }
