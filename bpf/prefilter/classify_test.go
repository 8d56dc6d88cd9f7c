package prefilter

import (
	"testing"
)

type class struct {
	l3, l4        string
	syn, rst, fin bool
}

func classFrames() []struct {
	name  string
	frame []byte
	want  class
} {
	payload := make([]byte, 32)
	return []struct {
		name  string
		frame []byte
		want  class
	}{
		{"ipv4 tcp syn", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpSYN, nil))), class{"ipv4", "tcp", true, false, false}},
		{"ipv4 tcp syn-ack", eth(0x0800, ipv4(6, ip4B, ip4A, 0, nil, tcp(80, 40000, tcpSYN|tcpACK, nil))), class{"ipv4", "tcp", true, false, false}},
		{"ipv4 tcp rst", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpRST|tcpACK, nil))), class{"ipv4", "tcp", false, true, false}},
		{"ipv4 tcp fin", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpFIN|tcpACK, payload))), class{"ipv4", "tcp", false, false, true}},
		{"ipv4 tcp ack", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpACK, payload))), class{"ipv4", "tcp", false, false, false}},
		{"ipv4 options tcp syn+fin", eth(0x0800, ipv4(6, ip4A, ip4B, 0, []byte{1, 1, 1, 0, 1, 1, 1, 0}, tcp(1, 2, tcpSYN|tcpFIN, nil))), class{"ipv4", "tcp", true, false, true}},
		{"ipv4 udp", eth(0x0800, ipv4(17, ip4A, ip4B, 0, nil, udp(5353, 53, payload))), class{"ipv4", "udp", false, false, false}},
		{"ipv4 icmp", eth(0x0800, ipv4(1, ip4A, ip4B, 0, nil, icmpEcho())), class{"ipv4", "icmp", false, false, false}},
		{"ipv4 gre", eth(0x0800, ipv4(47, ip4A, ip4B, 0, nil, payload)), class{"ipv4", "other", false, false, false}},
		{"ipv4 later fragment of tcp", eth(0x0800, ipv4(6, ip4A, ip4B, 185, nil, pad([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff}, 20))), class{"ipv4", "tcp", false, false, false}},
		{"ipv4 bad ihl", eth(0x0800, append([]byte{0x42}, ipv4(6, ip4A, ip4B, 0, nil, tcp(1, 2, tcpSYN, nil))[1:]...)), class{"ipv4", "tcp", false, false, false}},
		{"ipv6 tcp syn", eth(0x86dd, ipv6(6, ip6A, ip6B, tcp(40000, 443, tcpSYN, nil))), class{"ipv6", "tcp", true, false, false}},
		{"ipv6 tcp rst", eth(0x86dd, ipv6(6, ip6A, ip6B, tcp(40000, 443, tcpRST, nil))), class{"ipv6", "tcp", false, true, false}},
		{"ipv6 udp", eth(0x86dd, ipv6(17, ip6A, ip6B, udp(1, 2, payload))), class{"ipv6", "udp", false, false, false}},
		{"ipv6 icmpv6", eth(0x86dd, ipv6(58, ip6A, ip6B, []byte{128, 0, 0, 0, 0, 1, 0, 1})), class{"ipv6", "icmp", false, false, false}},
		{"ipv6 hop-by-hop udp", eth(0x86dd, ipv6(0, ip6A, ip6B, cat(ext6(17), udp(1, 2, nil)))), class{"ipv6", "udp", false, false, false}},
		{"ipv6 hop, routing, dstopts tcp fin", eth(0x86dd, ipv6(0, ip6A, ip6B, cat(ext6(43), ext6(60), ext6(6), tcp(1, 2, tcpFIN, nil)))), class{"ipv6", "tcp", false, false, true}},
		{"ipv6 first fragment tcp syn", eth(0x86dd, ipv6(44, ip6A, ip6B, cat(frag6(6, 0), tcp(1, 2, tcpSYN, nil)))), class{"ipv6", "tcp", true, false, false}},
		{"ipv6 later fragment tcp", eth(0x86dd, ipv6(44, ip6A, ip6B, cat(frag6(6, 100), pad([]byte{13: 0xff}, 20)))), class{"ipv6", "tcp", false, false, false}},
		{"ipv6 five extension headers", eth(0x86dd, ipv6(0, ip6A, ip6B, cat(ext6(60), ext6(60), ext6(60), ext6(60), ext6(6), tcp(1, 2, tcpSYN, nil)))), class{"ipv6", "other", false, false, false}},
		{"ipv6 no next header", eth(0x86dd, ipv6(59, ip6A, ip6B, nil)), class{"ipv6", "other", false, false, false}},
		{"arp", eth(0x0806, pad([]byte{0, 1, 8, 0, 6, 4, 0, 1}, 28)), class{"arp", "other", false, false, false}},
		{"lldp", eth(0x88cc, pad(nil, 46)), class{"other", "other", false, false, false}},
		{"802.3 length field", eth(0x002e, pad([]byte{0x42, 0x42, 0x03}, 46)), class{"other", "other", false, false, false}},
		{"vlan ipv4 udp", eth(0x8100, cat(vlanTag(100, 0x0800), ipv4(17, ip4A, ip4B, 0, nil, udp(1, 2, nil)))), class{"ipv4", "udp", false, false, false}},
		{"qinq ipv4 tcp fin", eth(0x88a8, cat(vlanTag(10, 0x8100), vlanTag(20, 0x0800), ipv4(6, ip4A, ip4B, 0, nil, tcp(1, 2, tcpFIN, nil)))), class{"ipv4", "tcp", false, false, true}},
		{"vlan ipv6 icmpv6", eth(0x8100, cat(vlanTag(7, 0x86dd), ipv6(58, ip6A, ip6B, []byte{129, 0, 0, 0}))), class{"ipv6", "icmp", false, false, false}},
		{"vlan arp", eth(0x8100, cat(vlanTag(7, 0x0806), pad(nil, 28))), class{"arp", "other", false, false, false}},
		{"three vlan tags", eth(0x8100, cat(vlanTag(1, 0x8100), vlanTag(2, 0x8100), vlanTag(3, 0x0800), ipv4(17, ip4A, ip4B, 0, nil, udp(1, 2, nil)))), class{"other", "other", false, false, false}},
		{"truncated vlan tag", eth(0x8100, []byte{0, 7}), class{"other", "other", false, false, false}},
		// Truncated packets count as far as they can be read. (The kernel's
		// test run refuses IPv4 frames under 20 bytes and IPv6 frames under
		// 40, Ethernet header included, so none are shorter.)
		{"ipv4 cut in header, protocol readable", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, nil)[:12]), class{"ipv4", "tcp", false, false, false}},
		{"ipv4 cut before protocol", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, nil)[:8]), class{"ipv4", "other", false, false, false}},
		{"ipv4 tcp cut before flags", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(1, 2, tcpSYN, nil)[:13])), class{"ipv4", "tcp", false, false, false}},
		{"ipv4 tcp cut after flags", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(1, 2, tcpSYN, nil)[:14])), class{"ipv4", "tcp", true, false, false}},
		{"ipv6 cut in header, next header readable", eth(0x86dd, ipv6(17, ip6A, ip6B, nil)[:26]), class{"ipv6", "udp", false, false, false}},
		{"ipv6 cut in extension header", eth(0x86dd, ipv6(0, ip6A, ip6B, ext6(17))[:44]), class{"ipv6", "other", false, false, false}},
		{"full-size ipv4 tcp", eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(1, 2, tcpACK, make([]byte, 1460)))), class{"ipv4", "tcp", false, false, false}},
	}
}

func TestClassCounters(t *testing.T) {
	for _, l := range loaders {
		t.Run(l.name, func(t *testing.T) { testClassCounters(t, l.load(t, Config{})) })
	}
}

func testClassCounters(t *testing.T, objs *objects) {
	var total InterfaceStats
	for _, c := range classFrames() {
		t.Run(c.name, func(t *testing.T) {
			before := readStats(t, objs)
			if v := runFrame(t, objs.Prefilter, c.frame); v != defaultSnaplen {
				t.Errorf("verdict %d, want %d (accept, snaplen)", v, defaultSnaplen)
			}
			got := readStats(t, objs).sub(before)
			n := uint64(len(c.frame))
			one := Counter{1, n}
			var want InterfaceStats
			want.Packets, want.Bytes = 1, n
			*map[string]*Counter{"ipv4": &want.L3.IPv4, "ipv6": &want.L3.IPv6, "arp": &want.L3.ARP, "other": &want.L3.Other}[c.want.l3] = one
			*map[string]*Counter{"tcp": &want.L4.TCP, "udp": &want.L4.UDP, "icmp": &want.L4.ICMP, "other": &want.L4.Other}[c.want.l4] = one
			for _, f := range []struct {
				on bool
				c  *Counter
			}{{c.want.syn, &want.TCPSyn}, {c.want.rst, &want.TCPRst}, {c.want.fin, &want.TCPFin}} {
				if f.on {
					*f.c = one
				}
			}
			if got != want {
				t.Errorf("counted\n %+v\nwant\n %+v", got, want)
			}
			total.Packets += got.Packets
		})
	}
	if total.Packets != uint64(len(classFrames())) {
		t.Errorf("%d packets counted over the table, want %d", total.Packets, len(classFrames()))
	}
}
