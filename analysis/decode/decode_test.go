package decode

import (
	"bytes"
	"encoding/binary"

	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/testcorpus"
)

// corpusPackets yields every packet of every corpus file whose link type
// Decode knows.
func corpusPackets(t testing.TB, fn func(file string, lt LinkType, data []byte, wire uint32)) {
	dir := testcorpus.Dir(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no corpus in %s: %v", dir, err)
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapio.NewReader(f)
		if err != nil {
			f.Close()
			continue // the corpus holds deliberately broken files
		}
		lt := LinkType(r.LinkType())
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			fn(filepath.Base(name), lt, rec.Data, rec.Length)
		}
		f.Close()
	}
}

func addr(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

// TestDecodeAgainstGopacket decodes every corpus packet with Decode and with
// gopacket, and requires the fields both decoded to agree.
func TestDecodeAgainstGopacket(t *testing.T) {
	var p Packet
	var checked, tcps, udps, dnss int
	corpusPackets(t, func(file string, lt LinkType, data []byte, wire uint32) {
		Decode(lt, data, &p) // must not panic on any of them
		var first gopacket.Decoder
		switch lt {
		case LinkEthernet:
			first = layers.LayerTypeEthernet
		case LinkRaw:
			first = layers.LayerTypeIPv4
			if len(data) > 0 && data[0]>>4 == 6 {
				first = layers.LayerTypeIPv6
			}
		case LinkSLL:
			first = layers.LayerTypeLinuxSLL
		default:
			return
		}
		if p.Tunnel != TunnelNone || p.Reason != ReasonNone {
			return // gopacket's view of tunnels and damage differs by design
		}
		gp := gopacket.NewPacket(data, first, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		if gp.ErrorLayer() != nil {
			return
		}
		checked++
		where := func() string { return file }
		if ip4, ok := gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && p.L3 == L3IPv4 {
			if addr(p.Src) != netip.AddrFrom4([4]byte(ip4.SrcIP.To4())) || addr(p.Dst) != netip.AddrFrom4([4]byte(ip4.DstIP.To4())) {
				t.Errorf("%s: IPv4 addresses %v>%v, gopacket %v>%v", where(), addr(p.Src), addr(p.Dst), ip4.SrcIP, ip4.DstIP)
			}
			if p.OuterProto != uint8(ip4.Protocol) {
				t.Errorf("%s: IPv4 protocol %d, gopacket %d", where(), p.OuterProto, ip4.Protocol)
			}
		}
		if ip6, ok := gp.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok && p.L3 == L3IPv6 {
			if addr(p.Src) != netip.AddrFrom16([16]byte(ip6.SrcIP.To16())) {
				t.Errorf("%s: IPv6 source %v, gopacket %v", where(), addr(p.Src), ip6.SrcIP)
			}
		}
		if tcp, ok := gp.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
			tcps++
			if !p.HasL4 || p.IPProto != ProtoTCP {
				t.Errorf("%s: gopacket sees TCP, Decode proto %d HasL4 %v", where(), p.IPProto, p.HasL4)
				return
			}
			if p.SrcPort != uint16(tcp.SrcPort) || p.DstPort != uint16(tcp.DstPort) || p.TCP.Seq != tcp.Seq ||
				p.TCP.Ack != tcp.Ack || p.TCP.Window != tcp.Window {
				t.Errorf("%s: TCP header %+v, gopacket %v", where(), p.TCP, tcp)
			}
			if len(tcp.Payload) > 0 && int(p.TCP.PayloadLen) < len(tcp.Payload) {
				t.Errorf("%s: TCP payload %d, gopacket %d", where(), p.TCP.PayloadLen, len(tcp.Payload))
			}
			for _, o := range tcp.Options {
				switch o.OptionType {
				case layers.TCPOptionKindMSS:
					if len(o.OptionData) == 2 && p.TCP.MSS != binary.BigEndian.Uint16(o.OptionData) {
						t.Errorf("%s: MSS %d, gopacket %v", where(), p.TCP.MSS, o.OptionData)
					}
				case layers.TCPOptionKindTimestamps:
					if len(o.OptionData) == 8 && (!p.TCP.HasTS || p.TCP.TSVal != binary.BigEndian.Uint32(o.OptionData)) {
						t.Errorf("%s: TSval %d, gopacket %v", where(), p.TCP.TSVal, o.OptionData)
					}
				case layers.TCPOptionKindWindowScale:
					if len(o.OptionData) == 1 && (!p.TCP.HasWScale || p.TCP.WScale != o.OptionData[0]) {
						t.Errorf("%s: window scale %d, gopacket %v", where(), p.TCP.WScale, o.OptionData)
					}
				}
			}
		}
		if udp, ok := gp.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && p.Frag == FragNone && p.L3 != L3None {
			udps++
			if p.SrcPort != uint16(udp.SrcPort) || p.DstPort != uint16(udp.DstPort) {
				t.Errorf("%s: UDP ports %d>%d, gopacket %v", where(), p.SrcPort, p.DstPort, udp)
			}
		}
		if dns, ok := gp.Layer(layers.LayerTypeDNS).(*layers.DNS); ok && p.IsDNS {
			dnss++
			if p.DNS.ID != dns.ID || p.DNS.Response != dns.QR || p.DNS.Rcode != uint8(dns.ResponseCode)&0x0f {
				t.Errorf("%s: DNS id %d qr %v rcode %d, gopacket %d %v %d", where(), p.DNS.ID, p.DNS.Response, p.DNS.Rcode, dns.ID, dns.QR, dns.ResponseCode)
			}
			if len(dns.Questions) > 0 && !strings.EqualFold(string(dns.Questions[0].Name), p.DNS.NameString()) &&
				!(len(dns.Questions[0].Name) == 0 && p.DNS.NameString() == ".") {
				t.Errorf("%s: DNS name %q, gopacket %q", where(), p.DNS.NameString(), dns.Questions[0].Name)
			}
		}
	})
	t.Logf("compared %d packets with gopacket: %d TCP, %d UDP, %d DNS", checked, tcps, udps, dnss)
	if checked < 5000 || tcps < 1000 || dnss < 50 {
		t.Errorf("too few packets compared (%d, %d TCP, %d DNS): is the corpus complete?", checked, tcps, dnss)
	}
}

// frame builds test frames from hex-free parts.
func eth(et uint16, payload ...[]byte) []byte {
	b := make([]byte, 12, 64)
	b = binary.BigEndian.AppendUint16(b, et)
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

func ipv4Hdr(proto uint8, payloadLen int, fragOff uint16) []byte {
	b := make([]byte, 20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+payloadLen))
	binary.BigEndian.PutUint16(b[6:], fragOff)
	b[8] = 64
	b[9] = proto
	copy(b[12:], []byte{198, 18, 0, 1})
	copy(b[16:], []byte{198, 18, 0, 2})
	return b
}

func ipv6Hdr(next uint8, payloadLen int) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6] = next
	b[7] = 64
	b[8], b[9], b[23] = 0x20, 0x01, 1
	b[24], b[25], b[39] = 0x20, 0x01, 2
	return b
}

func tcpHdr(flags uint8, opts ...byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 1)
	}
	b := make([]byte, 20, 20+len(opts))
	binary.BigEndian.PutUint16(b[0:], 40000)
	binary.BigEndian.PutUint16(b[2:], 443)
	binary.BigEndian.PutUint32(b[4:], 1000)
	binary.BigEndian.PutUint32(b[8:], 2000)
	b[12] = byte((20+len(opts))/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, opts...)
}

func udpHdr(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func dnsMsg(id uint16, flags uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeCases(t *testing.T) {
	syn := tcpHdr(TCPSyn, 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7)
	sack := tcpHdr(TCPAck, 1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40)
	query := dnsMsg(0x1234, 0x0100, "WWW.Example.COM")
	nx := dnsMsg(0x1234, 0x8183, "nope.example")
	udpDNS := udpHdr(5353, 53, query)
	vxInner := eth(EtherTypeIPv4, ipv4Hdr(ProtoTCP, len(syn), 0), syn)
	vx := udpHdr(50000, PortVXLAN, cat([]byte{8, 0, 0, 0, 0, 0, 1, 0}, vxInner))
	hbh := cat([]byte{ProtoFragment, 0, 1, 4, 0, 0, 0, 0}, []byte{ProtoUDP, 0, 0, 1, 0, 0, 0, 1}, udpDNS)

	cases := []struct {
		name  string
		lt    LinkType
		frame []byte
		check func(t *testing.T, p *Packet)
	}{
		{"tcp syn options", LinkEthernet, eth(EtherTypeIPv4, ipv4Hdr(ProtoTCP, len(syn), 0), syn), func(t *testing.T, p *Packet) {
			want := TCP{Seq: 1000, Ack: 2000, Flags: TCPSyn, Window: 65535, MSS: 1460, SACKPerm: true, HasTS: true, TSVal: 7, WScale: 7, HasWScale: true}
			if p.TCP != want || p.Reason != ReasonNone || !p.HasL4 || p.SrcPort != 40000 {
				t.Errorf("got %+v reason %v, want %+v", p.TCP, p.Reason, want)
			}
		}},
		{"sack blocks", LinkEthernet, eth(EtherTypeIPv4, ipv4Hdr(ProtoTCP, len(sack), 0), sack), func(t *testing.T, p *Packet) {
			if p.TCP.NumSACK != 2 || p.TCP.SACK[1] != [2]uint32{30, 40} {
				t.Errorf("SACK %d %v", p.TCP.NumSACK, p.TCP.SACK)
			}
		}},
		{"qinq dns query", LinkEthernet, eth(EtherTypeQinQ, []byte{0, 100, 0x81, 0}, []byte{0, 200, 0x08, 0}, ipv4Hdr(ProtoUDP, len(udpDNS), 0), udpDNS), func(t *testing.T, p *Packet) {
			if p.VLANs != 2 || p.VLANID != 100 || !p.IsDNS || p.DNS.Response || p.DNS.ID != 0x1234 || p.DNS.NameString() != "www.example.com" || p.DNS.QType != 1 {
				t.Errorf("vlans %d id %d dns %v %+v name %q", p.VLANs, p.VLANID, p.IsDNS, p.DNS.ID, p.DNS.NameString())
			}
		}},
		{"dns nxdomain", LinkRaw, cat(ipv4Hdr(ProtoUDP, 8+len(nx), 0), udpHdr(53, 5353, nx)), func(t *testing.T, p *Packet) {
			if !p.DNS.Response || p.DNS.Rcode != 3 || p.DNS.NameString() != "nope.example" {
				t.Errorf("%+v", p.DNS)
			}
		}},
		{"first fragment", LinkRaw, cat(ipv4Hdr(ProtoUDP, 8+len(query), 0x2000), udpHdr(53, 5353, query)), func(t *testing.T, p *Packet) {
			if p.Frag != FragFirst || !p.HasL4 || p.IsDNS {
				t.Errorf("frag %v HasL4 %v dns %v", p.Frag, p.HasL4, p.IsDNS)
			}
		}},
		{"non-first fragment", LinkRaw, cat(ipv4Hdr(ProtoUDP, 100, 0x0010), make([]byte, 100)), func(t *testing.T, p *Packet) {
			if p.Frag != FragNonFirst || p.HasL4 || p.IPProto != ProtoUDP {
				t.Errorf("frag %v HasL4 %v proto %d", p.Frag, p.HasL4, p.IPProto)
			}
		}},
		{"ipv6 hbh+frag ext", LinkRaw, cat(ipv6Hdr(ProtoHopByHop, len(hbh)), hbh), func(t *testing.T, p *Packet) {
			if p.L3 != L3IPv6 || p.IPProto != ProtoUDP || p.Frag != FragFirst || p.SrcPort != 5353 || p.Reason != ReasonNone {
				t.Errorf("l3 %v proto %d frag %v port %d reason %v", p.L3, p.IPProto, p.Frag, p.SrcPort, p.Reason)
			}
		}},
		{"vxlan inner tcp", LinkEthernet, eth(EtherTypeIPv4, ipv4Hdr(ProtoUDP, len(vx), 0), vx), func(t *testing.T, p *Packet) {
			if p.Tunnel != TunnelVXLAN || p.OuterProto != ProtoUDP || p.IPProto != ProtoTCP || p.TCP.MSS != 1460 || p.DstPort != 443 {
				t.Errorf("tunnel %v outer %d proto %d mss %d", p.Tunnel, p.OuterProto, p.IPProto, p.TCP.MSS)
			}
		}},
		{"sll2 icmpv6", LinkSLL2, cat([]byte{0x86, 0xdd}, make([]byte, 18), ipv6Hdr(ProtoICMPv6, 8), []byte{2, 0, 0, 0, 0, 0, 5, 0xdc}), func(t *testing.T, p *Packet) {
			if p.IPProto != ProtoICMPv6 || p.ICMPType != 2 {
				t.Errorf("proto %d type %d", p.IPProto, p.ICMPType)
			}
		}},
		{"null loopback", LinkNull, cat([]byte{2, 0, 0, 0}, ipv4Hdr(ProtoICMP, 8, 0), []byte{3, 4, 0, 0, 0, 0, 0, 0}), func(t *testing.T, p *Packet) {
			if p.IPProto != ProtoICMP || p.ICMPType != 3 || p.ICMPCode != 4 {
				t.Errorf("proto %d type %d code %d", p.IPProto, p.ICMPType, p.ICMPCode)
			}
		}},
		{"arp over sll", LinkSLL, cat(make([]byte, 14), []byte{8, 6}, []byte{0, 1, 8, 0, 6, 4, 0, 2}), func(t *testing.T, p *Packet) {
			if p.L3 != L3ARP || p.ARPOp != 2 {
				t.Errorf("l3 %v op %d", p.L3, p.ARPOp)
			}
		}},
		{"tcp cut in options", LinkEthernet, eth(EtherTypeIPv4, ipv4Hdr(ProtoTCP, len(syn), 0), syn[:24]), func(t *testing.T, p *Packet) {
			if p.Reason != ReasonTruncatedTCP || !p.HasL4 || p.TCP.Flags != TCPSyn {
				t.Errorf("reason %v HasL4 %v", p.Reason, p.HasL4)
			}
		}},
		{"bad tcp offset", LinkRaw, cat(ipv4Hdr(ProtoTCP, 20, 0), func() []byte { b := tcpHdr(0); b[12] = 0x10; return b }()), func(t *testing.T, p *Packet) {
			if p.Reason != ReasonBadTCPHeader || p.HasL4 {
				t.Errorf("reason %v", p.Reason)
			}
		}},
		{"truncated ipv4", LinkEthernet, eth(EtherTypeIPv4, []byte{0x45, 0}), func(t *testing.T, p *Packet) {
			if p.Reason != ReasonTruncatedIPv4 || p.L3 != L3IPv4 {
				t.Errorf("reason %v", p.Reason)
			}
		}},
		{"too many tags", LinkEthernet, eth(EtherTypeVLAN, bytes.Repeat([]byte{0, 1, 0x81, 0}, 6)), func(t *testing.T, p *Packet) {
			if p.Reason != ReasonTooManyTags {
				t.Errorf("reason %v", p.Reason)
			}
		}},
		{"unknown link", 9999, []byte{1, 2, 3}, func(t *testing.T, p *Packet) {
			if p.Reason != ReasonUnknownLinkType {
				t.Errorf("reason %v", p.Reason)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Packet
			p.DNS.NameLen = 99 // stale state from a previous packet must not leak
			Decode(c.lt, c.frame, &p)
			c.check(t, &p)
		})
	}
}

func TestDecodeAllocs(t *testing.T) {
	syn := tcpHdr(TCPSyn, 2, 4, 0x05, 0xb4)
	frame := eth(EtherTypeIPv4, ipv4Hdr(ProtoTCP, len(syn), 0), syn)
	var p Packet
	if n := testing.AllocsPerRun(1000, func() { Decode(LinkEthernet, frame, &p) }); n != 0 {
		t.Errorf("Decode allocates %v times per packet", n)
	}
}

func FuzzDecode(f *testing.F) {
	seen := 0
	corpusPackets(f, func(_ string, lt LinkType, data []byte, _ uint32) {
		// Every 7th packet keeps the seed corpus to a few thousand entries.
		if seen++; seen%7 == 0 && len(data) <= 2048 {
			f.Add(uint32(lt), bytes.Clone(data))
		}
	})
	f.Fuzz(func(t *testing.T, lt uint32, data []byte) {
		var p Packet
		for _, l := range []LinkType{LinkType(lt), LinkEthernet, LinkRaw, LinkSLL, LinkSLL2, LinkNull} {
			Decode(l, data, &p)
			if p.Reason >= NumReasons || p.DNS.NameLen > MaxNameLen {
				t.Fatalf("impossible result %+v", p)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	var frames [][]byte
	var lts []LinkType
	corpusPackets(b, func(_ string, lt LinkType, data []byte, _ uint32) {
		if lt == LinkEthernet && len(frames) < 50000 {
			frames = append(frames, bytes.Clone(data))
			lts = append(lts, lt)
		}
	})
	var p Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(frames)
		Decode(lts[j], frames[j], &p)
	}
}

func BenchmarkGopacketDecodingLayerParser(b *testing.B) {
	var frames [][]byte
	corpusPackets(b, func(_ string, lt LinkType, data []byte, _ uint32) {
		if lt == LinkEthernet && len(frames) < 50000 {
			frames = append(frames, bytes.Clone(data))
		}
	})
	var (
		ethL layers.Ethernet
		d1q  layers.Dot1Q
		ip4  layers.IPv4
		ip6  layers.IPv6
		tcp  layers.TCP
		udp  layers.UDP
		dns  layers.DNS
		pl   gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &ethL, &d1q, &ip4, &ip6, &tcp, &udp, &dns, &pl)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = parser.DecodeLayers(frames[i%len(frames)], &decoded)
	}
}
