package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Boolean IR: a tree of tests joined by short-circuit and/or/not. Each
// test computes a value into A and compares it. Evaluation order is the
// order libpcap's code evaluates, which matters because a load beyond the
// captured bytes rejects the whole packet.
type bnode struct {
	kind int // bTest, bAnd, bOr, bNot, bTrue, bFalse
	l, r *bnode
	t    *btest
}

const (
	bTest = iota
	bAnd
	bOr
	bNot
	bTrue
	bFalse
)

type btest struct {
	v   *ax
	jop uint16
	k   uint32
	x   *ax  // if set, compare against this value instead of k
	rel bool // a relation: v and x are computed as gen_relation does
}

// ax is a value computed into A.
type ax struct {
	kind int
	k    uint32 // constant, absolute offset, or base offset of an indexed load
	size uint32
	msh  uint32 // tran4: offset of the IPv4 header whose length goes to X
	op   uint16
	l, r *ax // operands; l is the index of indexed loads
}

const (
	axConst = iota
	axLen
	axAbs   // ld [k]
	axInd   // X = l; ld [x + k]
	axTran4 // X = 4*(p[msh]&0xf) (+ l); ld [x + k]
	axBin
	axNeg
)

var (
	btrue  = &bnode{kind: bTrue}
	bfalse = &bnode{kind: bFalse}
)

func sizeName(s uint32) string { return map[uint32]string{1: "b", 2: "h", 4: "w"}[s] }

func cnst(k uint32) *ax { return &ax{kind: axConst, k: k} }

func and(a, b *bnode) *bnode {
	switch {
	case a == nil:
		return b
	case b == nil || b.kind == bTrue:
		return a
	case a.kind == bTrue:
		return b
	case a.kind == bFalse:
		return bfalse
	}
	// "x and false" still runs x's loads unoptimised; the optimizer drops
	// them, as libpcap's does, because both of x's branches then agree.
	return &bnode{kind: bAnd, l: a, r: b}
}

func or(a, b *bnode) *bnode {
	switch {
	case a.kind == bFalse:
		return b
	case b.kind == bFalse:
		return a
	case a.kind == bTrue:
		return btrue
	}
	return &bnode{kind: bOr, l: a, r: b}
}

func not(a *bnode) *bnode {
	switch a.kind {
	case bTrue:
		return bfalse
	case bFalse:
		return btrue
	case bNot:
		return a.l
	}
	return &bnode{kind: bNot, l: a}
}

// Offset bases, libpcap's OR_* values.
const (
	orLinkHdr = iota
	orLinkType
	orLinkPL
	orTran4
	orTran6
)

// gen holds the code generation state for one expression: the link type and
// the offsets "vlan" moves.
type gen struct {
	lt          LinkType
	offLinkType int // -1: the link type has no type field
	offLinkPL   int
	opt         bool
	expr        string
	// faithful keeps the tree as libpcap's gencode builds it, for the
	// optimizer port: no constant folding, constants as blocks of their own
	// (gen_true/gen_false), relations as relations.
	faithful bool
}

func (g *gen) and(a, b *bnode) *bnode {
	if !g.faithful {
		return and(a, b)
	}
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return &bnode{kind: bAnd, l: a, r: b}
}

func (g *gen) or(a, b *bnode) *bnode {
	if !g.faithful {
		return or(a, b)
	}
	return &bnode{kind: bOr, l: a, r: b}
}

func (g *gen) not(a *bnode) *bnode {
	if !g.faithful {
		return not(a)
	}
	return &bnode{kind: bNot, l: a}
}

type genErr struct {
	pos int
	msg string
}

func (g *gen) fail(pos int, format string, args ...any) {
	panic(genErr{pos, fmt.Sprintf(format, args...)})
}

func (g *gen) hasMAC() bool { return g.lt == LinkEthernet }

func (g *gen) base(rel int) uint32 {
	switch rel {
	case orLinkType:
		return uint32(g.offLinkType)
	case orLinkPL:
		return uint32(g.offLinkPL)
	case orTran6:
		return uint32(g.offLinkPL + 40)
	}
	return 0
}

func (g *gen) load(rel int, off, size uint32) *ax {
	if rel == orTran4 {
		return &ax{kind: axTran4, size: size, msh: g.base(orLinkPL), k: g.base(orLinkPL) + off}
	}
	return &ax{kind: axAbs, size: size, k: g.base(rel) + off}
}

func test(v *ax, jop uint16, k uint32) *bnode {
	return &bnode{kind: bTest, t: &btest{v: v, jop: jop, k: k}}
}

func (g *gen) ncmp(rel int, off, size, mask uint32, jop uint16, reverse bool, v uint32) *bnode {
	val := g.load(rel, off, size)
	if mask != 0xffffffff {
		if mask == 0 && g.opt {
			// libpcap's optimizer turns "and #0" into a constant and drops the load.
			val = cnst(0)
		} else {
			val = &ax{kind: axBin, op: aluAND, l: val, r: cnst(mask)}
		}
	}
	var b *bnode
	if val.kind == axConst {
		if cmpConst(val.k, jop, v) {
			b = btrue
		} else {
			b = bfalse
		}
	} else {
		b = test(val, jop, v)
	}
	if reverse {
		b = g.not(b)
	}
	return b
}

func cmpConst(a uint32, jop uint16, k uint32) bool {
	switch jop {
	case jmpJEQ:
		return a == k
	case jmpJGT:
		return a > k
	case jmpJGE:
		return a >= k
	}
	return a&k != 0
}

func (g *gen) cmp(rel int, off, size, v uint32) *bnode {
	return g.ncmp(rel, off, size, 0xffffffff, jmpJEQ, false, v)
}

func (g *gen) mcmp(rel int, off, size, v, mask uint32) *bnode {
	return g.ncmp(rel, off, size, mask, jmpJEQ, false, v)
}

const (
	etherTypeIP     = 0x0800
	etherTypeARP    = 0x0806
	etherTypeRARP   = 0x8035
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8
	etherTypeQinQ   = 0x9100
	etherMTU        = 1500
)

// linktype mirrors libpcap's gen_linktype: the test that the link-layer
// payload is of the given Ethernet type (or LLC SAP, when <= 1500).
func (g *gen) linktype(proto uint32, pos int) *bnode {
	switch g.lt {
	case LinkSLL2:
		// libpcap 1.10 compares SLL2's protocol field as is, even for SAPs.
		return g.cmp(orLinkType, 0, 2, proto)
	case LinkEthernet, LinkSLL:
		switch proto {
		case 0xe0, 0x809b, 0x80f3:
			g.fail(pos, "IPX and AppleTalk link-layer types are not supported")
		case 0x06, 0xfe, 0xf0: // LLCSAP_IP, LLCSAP_ISONS, LLCSAP_NETBEUI
			if g.lt == LinkEthernet {
				return g.and(g.not(g.ncmp(orLinkType, 0, 2, 0xffffffff, jmpJGT, false, etherMTU)),
					g.cmp(orLinkPL, 0, 2, proto<<8|proto))
			}
			return g.and(g.cmp(orLinkType, 0, 2, 4), g.cmp(orLinkPL, 0, 2, proto<<8|proto))
		}
		if proto <= etherMTU {
			if g.lt == LinkEthernet {
				return g.and(g.not(g.ncmp(orLinkType, 0, 2, 0xffffffff, jmpJGT, false, etherMTU)),
					g.cmp(orLinkType, 2, 1, proto))
			}
			return g.and(g.cmp(orLinkType, 0, 2, 4), g.cmp(orLinkHdr, uint32(g.offLinkPL), 1, proto))
		}
		return g.cmp(orLinkType, 0, 2, proto)
	case LinkRaw, LinkRawAlt12, LinkRawAlt14:
		switch proto {
		case etherTypeIP:
			return g.mcmp(orLinkHdr, 0, 1, 0x40, 0xf0)
		case etherTypeIPv6:
			return g.mcmp(orLinkHdr, 0, 1, 0x60, 0xf0)
		}
		return bfalse
	case LinkIPv4:
		if proto == etherTypeIP {
			return btrue
		}
		return bfalse
	case LinkIPv6:
		if proto == etherTypeIPv6 {
			return btrue
		}
		return bfalse
	case LinkNull, LinkLoop:
		switch proto {
		case etherTypeIP:
			return g.loopback(2)
		case etherTypeIPv6:
			return g.or(g.loopback(30), g.or(g.loopback(24), g.loopback(28)))
		}
		return bfalse
	}
	g.fail(pos, "unsupported link type %d", g.lt)
	return nil
}

// loopback tests the BSD loopback header's address family: in host byte
// order for DLT_NULL, network byte order for DLT_LOOP.
func (g *gen) loopback(af uint32) *bnode {
	if g.lt == LinkNull {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], af)
		af = binary.BigEndian.Uint32(b[:])
	}
	return g.cmp(orLinkHdr, 0, 4, af)
}

var pnameWords = map[int]string{
	qLink: "link", qIP: "ip", qARP: "arp", qRARP: "rarp", qSCTP: "sctp", qTCP: "tcp",
	qUDP: "udp", qICMP: "icmp", qIP6: "ip6", qICMP6: "icmp6",
}

func (g *gen) protoAbbrev(pname int, pos int) *bnode {
	switch pname {
	case qSCTP:
		return g.proto(132, qDefault, qDefault, pos)
	case qTCP:
		return g.proto(6, qDefault, qDefault, pos)
	case qUDP:
		return g.proto(17, qDefault, qDefault, pos)
	case qICMP:
		return g.proto(1, qIP, qDefault, pos)
	case qICMP6:
		return g.proto(58, qIP6, qDefault, pos)
	case qIP:
		return g.linktype(etherTypeIP, pos)
	case qIP6:
		return g.linktype(etherTypeIPv6, pos)
	case qARP:
		return g.linktype(etherTypeARP, pos)
	case qRARP:
		return g.linktype(etherTypeRARP, pos)
	}
	g.fail(pos, "link layer applied in wrong context")
	return nil
}

func (g *gen) proto(v uint32, pq, dir int, pos int) *bnode {
	if dir != qDefault {
		g.fail(pos, "direction applied to 'proto'")
	}
	switch pq {
	case qDefault:
		return g.or(g.proto(v, qIP, dir, pos), g.proto(v, qIP6, dir, pos))
	case qLink:
		return g.linktype(v, pos)
	case qIP:
		return g.and(g.linktype(etherTypeIP, pos), g.cmp(orLinkPL, 9, 1, v))
	case qIP6:
		// Also look behind a fragment header, as libpcap does.
		return g.and(g.linktype(etherTypeIPv6, pos),
			g.or(g.cmp(orLinkPL, 6, 1, v), g.and(g.cmp(orLinkPL, 6, 1, 44), g.cmp(orLinkPL, 40, 1, v))))
	case qARP, qRARP:
		g.fail(pos, "%s does not encapsulate another protocol", pnameWords[pq])
	}
	g.fail(pos, "'%s proto' is bogus", pnameWords[pq])
	return nil
}

func (g *gen) host(addr, mask uint32, pq, dir int, pos int) *bnode {
	switch pq {
	case qDefault:
		return g.or(g.or(g.host(addr, mask, qIP, dir, pos), g.host(addr, mask, qARP, dir, pos)),
			g.host(addr, mask, qRARP, dir, pos))
	case qIP:
		return g.hostop(addr, mask, dir, etherTypeIP, 12, 16, pos)
	case qARP:
		return g.hostop(addr, mask, dir, etherTypeARP, 14, 24, pos)
	case qRARP:
		return g.hostop(addr, mask, dir, etherTypeRARP, 14, 24, pos)
	case qLink:
		g.fail(pos, "link-layer modifier applied to IPv4 address")
	}
	g.fail(pos, "'%s' modifier applied to IPv4 address", pnameWords[pq])
	return nil
}

func (g *gen) hostop(addr, mask uint32, dir int, ll uint32, soff, doff uint32, pos int) *bnode {
	switch dir {
	case qAnd:
		return g.and(g.hostop(addr, mask, qSrc, ll, soff, doff, pos), g.hostop(addr, mask, qDst, ll, soff, doff, pos))
	case qDefault, qOr:
		return g.or(g.hostop(addr, mask, qSrc, ll, soff, doff, pos), g.hostop(addr, mask, qDst, ll, soff, doff, pos))
	}
	off := soff
	if dir == qDst {
		off = doff
	}
	return g.and(g.linktype(ll, pos), g.mcmp(orLinkPL, off, 4, addr, mask))
}

func (g *gen) host6(addr, mask [16]byte, pq, dir int, pos int) *bnode {
	switch pq {
	case qDefault, qIP6:
		return g.hostop6(addr, mask, dir, pos)
	case qLink:
		g.fail(pos, "link-layer modifier applied to IPv6 address")
	}
	g.fail(pos, "'%s' modifier applied to IPv6 address", pnameWords[pq])
	return nil
}

func (g *gen) hostop6(addr, mask [16]byte, dir int, pos int) *bnode {
	switch dir {
	case qAnd:
		return g.and(g.hostop6(addr, mask, qSrc, pos), g.hostop6(addr, mask, qDst, pos))
	case qDefault, qOr:
		return g.or(g.hostop6(addr, mask, qSrc, pos), g.hostop6(addr, mask, qDst, pos))
	}
	off := uint32(8)
	if dir == qDst {
		off = 24
	}
	var b *bnode
	for i := 3; i >= 0; i-- {
		w := binary.BigEndian.Uint32(addr[4*i:])
		m := binary.BigEndian.Uint32(mask[4*i:])
		b = g.and(g.mcmp(orLinkPL, off+uint32(4*i), 4, w, m), b)
	}
	return g.and(g.linktype(etherTypeIPv6, pos), b)
}

func (g *gen) ipfrag() *bnode {
	return g.not(test(g.load(orLinkPL, 6, 2), jmpJSET, 0x1fff))
}

// ports mirrors gen_port/gen_port6 and gen_portrange/gen_portrange6: IPv6
// first, then IPv4, each over SCTP, TCP and UDP when no protocol was given.
func (g *gen) ports(lo, hi uint32, ipproto int, dir int, pos int) *bnode {
	v6 := g.portsFamily(lo, hi, ipproto, dir, true, pos)
	v4 := g.portsFamily(lo, hi, ipproto, dir, false, pos)
	return g.or(v6, v4)
}

func (g *gen) portsFamily(lo, hi uint32, ipproto int, dir int, v6 bool, pos int) *bnode {
	ll := uint32(etherTypeIP)
	if v6 {
		ll = etherTypeIPv6
	}
	b0 := g.linktype(ll, pos)
	var b1 *bnode
	if ipproto < 0 {
		b1 = g.or(g.portop(lo, hi, 132, dir, v6), g.or(g.portop(lo, hi, 6, dir, v6), g.portop(lo, hi, 17, dir, v6)))
	} else {
		b1 = g.portop(lo, hi, uint32(ipproto), dir, v6)
	}
	return g.and(b0, b1)
}

func (g *gen) portop(lo, hi, proto uint32, dir int, v6 bool) *bnode {
	var b0 *bnode
	rel := orTran4
	if v6 {
		b0 = g.cmp(orLinkPL, 6, 1, proto)
		rel = orTran6
	} else {
		b0 = g.and(g.cmp(orLinkPL, 9, 1, proto), g.ipfrag())
	}
	atom := func(off uint32) *bnode {
		if lo == hi {
			return g.cmp(rel, off, 2, lo)
		}
		return g.and(g.ncmp(rel, off, 2, 0xffffffff, jmpJGE, false, lo), g.ncmp(rel, off, 2, 0xffffffff, jmpJGT, true, hi))
	}
	var b1 *bnode
	switch dir {
	case qSrc:
		b1 = atom(0)
	case qDst:
		b1 = atom(2)
	case qAnd:
		b1 = g.and(atom(0), atom(2))
	default:
		b1 = g.or(atom(0), atom(2))
	}
	return g.and(b0, b1)
}

func (g *gen) portProto(pq int, pos int, what string) int {
	switch pq {
	case qUDP:
		return 17
	case qTCP:
		return 6
	case qSCTP:
		return 132
	case qDefault:
		return -1
	}
	g.fail(pos, "illegal qualifier of '%s'", what)
	return 0
}

// atoin parses a dotted decimal IPv4 address or prefix like libpcap's
// __pcap_atoin, returning the value and its length in bits.
func (g *gen) atoin(t token) (uint32, uint32) {
	var v, bits uint32
	for _, part := range strings.Split(t.text, ".") {
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil || n > 255 {
			g.fail(t.pos, "invalid IPv4 address %q", t.text)
		}
		v = v<<8 | uint32(n)
		bits += 8
	}
	return v, bits
}

func (g *gen) prim(n *primNode) *bnode {
	q, t := n.q, n.val
	switch t.kind {
	case tNUM:
		return g.ncode(t, t.num, 32, false, q)
	case tHID:
		if n.mask != nil {
			return g.mcode(n, q)
		}
		switch q.addr {
		case qPort, qPortrange, qProto:
			g.fail(t.pos, "'%s' modifier applied to IP address", addrWord(q.addr))
		}
		v, bits := g.atoin(t)
		return g.ncode(t, v, bits, true, q)
	case tHID6:
		switch q.addr {
		case qPort, qPortrange, qProto:
			g.fail(t.pos, "'%s' modifier applied to IP address", addrWord(q.addr))
		}
		return g.mcode6(n, q)
	case tEID:
		if (q.addr == qHost || q.addr == qDefault) && q.proto == qLink {
			if !g.hasMAC() {
				g.fail(t.pos, "ethernet addresses are not supported on link type %d", g.lt)
			}
			return g.ehostop(etherAton(t.text), q.dir, t.pos)
		}
		g.fail(t.pos, "ethernet address used in non-ether expression")
	case tID:
		return g.scode(t, q)
	}
	g.fail(t.pos, "unexpected %q", t.raw)
	return nil
}

func addrWord(a int) string {
	return map[int]string{qPort: "port", qPortrange: "portrange", qProto: "proto", qHost: "host", qNet: "net"}[a]
}

func (g *gen) ncode(t token, v, vlen uint32, isHID bool, q qual) *bnode {
	switch q.addr {
	case qDefault, qHost, qNet:
		if q.proto == qLink {
			g.fail(t.pos, "illegal link layer address")
		}
		mask := uint32(0xffffffff)
		if !isHID && q.addr == qNet {
			// Promote a short net number: "net 10" is 10.0.0.0/8.
			for v != 0 && v&0xff000000 == 0 {
				v <<= 8
				mask <<= 8
			}
		} else {
			v <<= 32 - vlen
			mask <<= 32 - vlen
		}
		return g.host(v, mask, q.proto, q.dir, t.pos)
	case qPort, qPortrange:
		p := g.portProto(q.proto, t.pos, addrWord(q.addr))
		if v > 65535 {
			g.fail(t.pos, "illegal port number %d > 65535", v)
		}
		return g.ports(v, v, p, q.dir, t.pos)
	case qProto:
		return g.proto(v, q.proto, q.dir, t.pos)
	}
	g.fail(t.pos, "%q needs a qualifier such as host, net or port", t.raw)
	return nil
}

func (g *gen) mcode(n *primNode, q qual) *bnode {
	t := n.val
	switch q.addr {
	case qPort, qPortrange, qProto:
		g.fail(t.pos, "'%s' modifier applied to IP address and mask", addrWord(q.addr))
	}
	v, vlen := g.atoin(t)
	v <<= 32 - vlen
	var m uint32
	if n.mask.kind == tHID {
		mv, mlen := g.atoin(*n.mask)
		m = mv << (32 - mlen)
		if v&^m != 0 {
			g.fail(t.pos, "non-network bits set in \"%s mask %s\"", t.text, n.mask.text)
		}
	} else {
		l := n.mask.num
		if l > 32 {
			g.fail(n.mask.pos, "mask length must be <= 32")
		}
		if l != 0 {
			m = 0xffffffff << (32 - l)
		}
		if v&^m != 0 {
			g.fail(t.pos, "non-network bits set in \"%s/%d\"", t.text, l)
		}
	}
	if q.addr != qNet {
		g.fail(t.pos, "mask syntax for networks only")
	}
	return g.host(v, m, q.proto, q.dir, t.pos)
}

func (g *gen) mcode6(n *primNode, q qual) *bnode {
	t := n.val
	a, err := netip.ParseAddr(t.text)
	if err != nil || !a.Is6() {
		g.fail(t.pos, "bogus IPv6 address %s", t.text)
	}
	l := uint32(128)
	if n.mask != nil {
		l = n.mask.num
		if l > 128 {
			g.fail(n.mask.pos, "mask length must be <= 128")
		}
	}
	addr := a.As16()
	var mask [16]byte
	for i := uint32(0); i < l; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	for i := range addr {
		if addr[i]&^mask[i] != 0 {
			g.fail(t.pos, "non-network bits set in \"%s/%d\"", t.text, l)
		}
	}
	switch q.addr {
	case qDefault, qHost:
		if l != 128 {
			g.fail(t.pos, "mask syntax for networks only")
		}
	case qNet:
	default:
		g.fail(t.pos, "invalid qualifier against IPv6 address")
	}
	return g.host6(addr, mask, q.proto, q.dir, t.pos)
}

// etherAton parses a MAC address like libpcap's pcap_ether_aton.
func etherAton(s string) [6]byte {
	var e [6]byte
	hex := func(c byte) byte {
		switch {
		case c >= '0' && c <= '9':
			return c - '0'
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10
		}
		return c - 'A' + 10
	}
	isHex := func(c byte) bool {
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
	}
	i, n := 0, 0
	for i < len(s) && n < 6 {
		if s[i] == ':' || s[i] == '.' || s[i] == '-' {
			i++
		}
		d := hex(s[i])
		i++
		if i < len(s) && isHex(s[i]) {
			d = d<<4 | hex(s[i])
			i++
		}
		e[n] = d
		n++
	}
	return e
}

func (g *gen) bcmp(off uint32, e [6]byte) *bnode {
	return g.and(g.cmp(orLinkHdr, off+2, 4, binary.BigEndian.Uint32(e[2:])), g.cmp(orLinkHdr, off, 2, uint32(binary.BigEndian.Uint16(e[:2]))))
}

func (g *gen) ehostop(e [6]byte, dir int, pos int) *bnode {
	switch dir {
	case qSrc:
		return g.bcmp(6, e)
	case qDst:
		return g.bcmp(0, e)
	case qAnd:
		return g.and(g.bcmp(6, e), g.bcmp(0, e))
	case qDefault, qOr:
		return g.or(g.bcmp(6, e), g.bcmp(0, e))
	}
	g.fail(pos, "bad direction for ethernet address")
	return nil
}

// ipProtos and etherProtos are the names libpcap resolves after "proto"
// (from /etc/protocols and its own tables); sonde uses a fixed table.
var ipProtos = map[string]uint32{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
	"ipv6-icmp": 58, "pim": 103, "vrrp": 112, "sctp": 132,
}

var etherProtos = map[string]uint32{
	"ip": etherTypeIP, "ip6": etherTypeIPv6, "arp": etherTypeARP, "rarp": etherTypeRARP,
	"loopback": 0x9000, "decnet": 0x6003, "lat": 0x6004, "mopdl": 0x6001, "moprc": 0x6002,
	"sca": 0x6007, "iso": 0xfe, "stp": 0x42, "netbeui": 0xf0,
}

func (g *gen) scode(t token, q qual) *bnode {
	name := t.text
	switch q.addr {
	case qProto:
		var v uint32
		var ok bool
		switch q.proto {
		case qDefault, qIP, qIP6:
			v, ok = ipProtos[name]
		case qLink:
			v, ok = etherProtos[name]
		}
		if !ok {
			g.fail(t.pos, "unknown protocol %q", name)
		}
		return g.proto(v, q.proto, q.dir, t.pos)
	case qPortrange:
		p := g.portProto(q.proto, t.pos, "portrange")
		a, b, ok := strings.Cut(name, "-")
		lo, err1 := strconv.ParseUint(a, 10, 32)
		hi, err2 := strconv.ParseUint(b, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			g.fail(t.pos, "invalid port range %q", name)
		}
		if lo > 65535 || hi > 65535 {
			g.fail(t.pos, "illegal port number > 65535 in %q", name)
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		return g.ports(uint32(lo), uint32(hi), p, q.dir, t.pos)
	}
	g.fail(t.pos, "unknown word %q", t.raw)
	return nil
}

func (g *gen) cast(n *castNode) *bnode {
	pos := n.tok.pos
	if n.multicast {
		switch n.pname {
		case qDefault, qLink:
			if g.hasMAC() {
				return test(g.load(orLinkHdr, 0, 1), jmpJSET, 1)
			}
			g.fail(pos, "link-layer multicast is not supported on link type %d", g.lt)
		case qIP:
			return g.and(g.linktype(etherTypeIP, pos), g.ncmp(orLinkPL, 16, 1, 0xffffffff, jmpJGE, false, 224))
		case qIP6:
			return g.and(g.linktype(etherTypeIPv6, pos), g.cmp(orLinkPL, 24, 1, 255))
		}
		g.fail(pos, "multicast is not defined for %s", pnameWords[n.pname])
	}
	switch n.pname {
	case qDefault, qLink:
		if g.hasMAC() {
			return g.ehostop([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, qDst, pos)
		}
		g.fail(pos, "link-layer broadcast is not supported on link type %d", g.lt)
	case qIP:
		g.fail(pos, "'ip broadcast' needs the interface netmask, which the compiler does not have")
	}
	g.fail(pos, "broadcast is not defined for %s", pnameWords[n.pname])
	return nil
}

func (g *gen) vlan(n *vlanNode) *bnode {
	if g.lt != LinkEthernet {
		g.fail(n.tok.pos, "no VLAN support for link type %d", g.lt)
	}
	b := g.or(g.or(g.linktype(etherType8021Q, n.tok.pos), g.linktype(etherType8021AD, n.tok.pos)), g.linktype(etherTypeQinQ, n.tok.pos))
	if n.has {
		if n.n > 0x0fff {
			g.fail(n.tok.pos, "VLAN tag %d greater than maximum 4095", n.n)
		}
		b = g.and(b, g.mcmp(orLinkPL, 0, 2, n.n, 0x0fff))
	}
	// Later tests look behind the tag, as in libpcap.
	g.offLinkPL += 4
	g.offLinkType += 4
	return b
}

// node generates code for an AST node, in source order.
func (g *gen) node(n node) *bnode {
	switch n := n.(type) {
	case *andNode:
		l := g.node(n.l)
		return g.and(l, g.node(n.r))
	case *orNode:
		l := g.node(n.l)
		return g.or(l, g.node(n.r))
	case *notNode:
		return g.not(g.node(n.x))
	case *primNode:
		return g.prim(n)
	case *abbrevNode:
		return g.protoAbbrev(n.pname, n.tok.pos)
	case *relNode:
		return g.relation(n)
	case *castNode:
		return g.cast(n)
	case *lenNode:
		if n.less {
			return g.not(test(&ax{kind: axLen}, jmpJGT, n.n))
		}
		return test(&ax{kind: axLen}, jmpJGE, n.n)
	case *vlanNode:
		return g.vlan(n)
	}
	panic(fmt.Sprintf("bpf: unknown node %T", n))
}
