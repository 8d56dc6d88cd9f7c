package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Generated packets for the differential test: the cases the corpus is thin
// on, framed for every supported link type.

func csumless(b ...[]byte) []byte {
	var out []byte
	for _, x := range b {
		out = append(out, x...)
	}
	return out
}

func ipv4(proto byte, src, dst string, fragOff uint16, mf bool, ihl int, payload []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(payload)))
	f := fragOff & 0x1fff
	if mf {
		f |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], f)
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return csumless(h, payload)
}

func ipv6(next byte, src, dst string, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return csumless(h, payload)
}

// ext6 prepends an IPv6 extension header of type typ carrying next.
func ext6(next byte, typ byte, payload []byte) []byte {
	if typ == 44 {
		h := []byte{next, 0, 0, 0, 0, 0, 0, 1}
		return csumless(h, payload)
	}
	h := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	return csumless(h, payload)
}

func l4(sport, dport uint16, flags byte, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	if n > 13 {
		b[12] = 0x50
		b[13] = flags
	}
	return b
}

func icmpMsg(typ, code byte) []byte { return []byte{typ, code, 0, 0, 0, 1, 0, 1, 'a', 'b', 'c', 'd'} }

func arpMsg(op uint16, spa, tpa string) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b, 1)
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:], []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55})
	s, t := netip.MustParseAddr(spa).As4(), netip.MustParseAddr(tpa).As4()
	copy(b[14:], s[:])
	copy(b[24:], t[:])
	return b
}

type l3 struct {
	etype uint16
	data  []byte
}

// l3Packets is a spread of network-layer packets.
func l3Packets() []l3 {
	var out []l3
	v4 := func(b []byte) { out = append(out, l3{etherTypeIP, b}) }
	v6 := func(b []byte) { out = append(out, l3{etherTypeIPv6, b}) }
	addrs := [][2]string{{"198.18.0.1", "10.1.2.3"}, {"10.1.2.3", "198.18.0.1"}, {"192.168.1.1", "224.0.0.5"}, {"10.0.0.1", "255.255.255.255"}, {"198.18.5.6", "198.19.0.1"}}
	for i, a := range addrs {
		ports := [][2]uint16{{1000, 80}, {443, 52000}, {53, 53}, {8080, 1024}, {2000, 3000}}[i]
		v4(ipv4(6, a[0], a[1], 0, false, 5, l4(ports[0], ports[1], byte(0x02<<uint(i%4)), 20)))
		v4(ipv4(17, a[0], a[1], 0, false, 5, l4(ports[0], ports[1], 0, 12)))
		v4(ipv4(132, a[0], a[1], 0, false, 5, l4(ports[0], ports[1], 0, 16)))
		v4(ipv4(1, a[0], a[1], 0, false, 5, icmpMsg([]byte{8, 0, 3, 11, 5}[i], byte(i))))
	}
	v4(ipv4(6, "198.18.0.1", "10.1.2.3", 0, false, 6, l4(80, 1000, 0x12, 20)))  // options
	v4(ipv4(6, "198.18.0.1", "10.1.2.3", 0, true, 5, l4(80, 1000, 0x10, 20)))   // first fragment
	v4(ipv4(6, "198.18.0.1", "10.1.2.3", 100, true, 5, l4(80, 1000, 0x10, 20))) // middle fragment
	v4(ipv4(17, "10.1.2.3", "198.18.0.1", 185, false, 5, l4(53, 53, 0, 12)))    // last fragment
	v4(ipv4(2, "10.1.2.3", "224.0.0.1", 0, false, 6, []byte{0x11, 0, 0, 0, 0, 0, 0, 0}))
	v4(ipv4(47, "10.1.2.3", "10.1.2.4", 0, false, 5, []byte{0, 0, 8, 0}))
	v6addrs := [][2]string{{"2001:db8::1", "2001:db8::2"}, {"fe80::1", "ff02::1"}, {"2001:db8:1::5", "2001:db8::1"}}
	for i, a := range v6addrs {
		ports := [][2]uint16{{1000, 80}, {53, 5353}, {443, 2000}}[i]
		v6(ipv6(6, a[0], a[1], l4(ports[0], ports[1], 0x02, 20)))
		v6(ipv6(17, a[0], a[1], l4(ports[0], ports[1], 0, 12)))
		v6(ipv6(132, a[0], a[1], l4(ports[0], ports[1], 0, 16)))
		v6(ipv6(58, a[0], a[1], icmpMsg([]byte{128, 135, 1}[i], 0)))
		for _, ext := range []byte{0, 43, 44, 60} {
			v6(ipv6(ext, a[0], a[1], ext6(6, ext, l4(ports[0], ports[1], 0x02, 20))))
			v6(ipv6(ext, a[0], a[1], ext6(17, ext, l4(ports[0], ports[1], 0, 12))))
			v6(ipv6(ext, a[0], a[1], ext6(58, ext, icmpMsg(129, 0))))
		}
	}
	out = append(out, l3{etherTypeARP, arpMsg(1, "10.1.2.3", "198.18.0.1")}, l3{etherTypeARP, arpMsg(2, "198.18.0.1", "10.1.2.3")},
		l3{etherTypeRARP, arpMsg(3, "10.0.0.1", "198.18.0.1")}, l3{0x9000, make([]byte, 46)}, l3{0x88cc, make([]byte, 46)})
	return out
}

var (
	macUnicast   = []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55}
	macOther     = []byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	macBroadcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macMulticast = []byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x05}
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// framed returns the generated packets framed for link type lt.
func framed(lt LinkType) [][]byte {
	var out [][]byte
	ps := l3Packets()
	for i, p := range ps {
		switch lt {
		case LinkEthernet:
			dsts := [][]byte{macUnicast, macBroadcast, macMulticast, macOther}
			dst, src := dsts[i%4], macOther
			if i%3 == 1 {
				src = macUnicast
			}
			out = append(out, csumless(dst, src, be16(p.etype), p.data))
			switch i % 5 {
			case 0:
				out = append(out, csumless(dst, src, be16(0x8100), be16(100), be16(p.etype), p.data))
			case 1:
				out = append(out, csumless(dst, src, be16(0x88a8), be16(200), be16(0x8100), be16(300), be16(p.etype), p.data))
			case 2:
				out = append(out, csumless(dst, src, be16(0x9100), be16(0x2064), be16(p.etype), p.data))
			case 3:
				out = append(out, csumless(dst, src, be16(0x8100), be16(0xf00a), be16(0x8100), be16(100), be16(p.etype), p.data))
			}
		case LinkSLL:
			out = append(out, csumless(be16(uint16(i%5)), be16(1), be16(6), macUnicast, []byte{0, 0}, be16(p.etype), p.data))
		case LinkSLL2:
			out = append(out, csumless(be16(p.etype), be16(0), []byte{0, 0, 0, 2}, be16(1), []byte{byte(i % 5), 6}, macUnicast, []byte{0, 0}, p.data))
		case LinkRaw, LinkRawAlt12:
			out = append(out, p.data)
		case LinkIPv4:
			if p.etype == etherTypeIP {
				out = append(out, p.data)
			}
		case LinkIPv6:
			if p.etype == etherTypeIPv6 {
				out = append(out, p.data)
			}
		case LinkNull, LinkLoop:
			af := map[uint16][]uint32{etherTypeIP: {2}, etherTypeIPv6: {24, 28, 30}}[p.etype]
			if af == nil {
				af = []uint32{7}
			}
			for _, a := range af {
				var h [4]byte
				if lt == LinkNull {
					binary.NativeEndian.PutUint32(h[:], a)
				} else {
					binary.BigEndian.PutUint32(h[:], a)
				}
				out = append(out, csumless(h[:], p.data))
			}
		}
	}
	// Link-layer specials: 802.3/LLC frames.
	if lt == LinkEthernet {
		for _, sap := range []byte{0x42, 0x06, 0xfe, 0xf0, 0xaa} {
			out = append(out, csumless(macMulticast, macOther, be16(40), []byte{sap, sap, 3}, make([]byte, 40)))
		}
	}
	if lt == LinkSLL || lt == LinkSLL2 {
		for _, sap := range []byte{0x42, 0x06, 0xfe} {
			llc := csumless([]byte{sap, sap, 3}, make([]byte, 20))
			if lt == LinkSLL {
				out = append(out, csumless(be16(0), be16(1), be16(6), macUnicast, []byte{0, 0}, be16(4), llc))
			} else {
				out = append(out, csumless(be16(4), be16(0), []byte{0, 0, 0, 2}, be16(1), []byte{0, 6}, macUnicast, []byte{0, 0}, llc))
			}
		}
	}
	return out
}

// generatedPackets frames the generated packets for lt, and adds every
// truncation of a sample of them (with the original wire length).
func generatedPackets(lt LinkType) []capPacket {
	var out []capPacket
	for i, p := range framed(lt) {
		out = append(out, capPacket{p, len(p)})
		if i%3 == 0 {
			for n := 0; n < len(p); n++ {
				out = append(out, capPacket{p[:n], len(p)})
			}
		}
	}
	return out
}
