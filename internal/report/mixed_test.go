package report

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// TestReplayMixedLinkTypes: a pcapng of an Ethernet and a raw-IP interface
// (what sonde fleet merges) is decoded per packet's interface, and the
// filter is compiled for each: every UDP packet of both counts as UDP,
// none as malformed.
func TestReplayMixedLinkTypes(t *testing.T) {
	b := pcapio.AppendSectionHeader(nil, "")
	b = pcapio.AppendInterface(b, capture.LinkTypeEthernet, 65535, "a/eth0", "sonde node a")
	b = pcapio.AppendInterface(b, capture.LinkTypeRaw, 65535, "b/wg0", "sonde node b")
	frame := func(raw bool, port uint16) []byte {
		d := make([]byte, 14+20+8+16)
		binary.BigEndian.PutUint16(d[12:], 0x0800)
		ip := d[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
		binary.BigEndian.PutUint16(ip[20:], 4000)
		binary.BigEndian.PutUint16(ip[22:], port)
		binary.BigEndian.PutUint16(ip[24:], 8+16)
		if raw {
			return ip
		}
		return d
	}
	for i := range 100 {
		raw := i%2 == 1
		d := frame(raw, uint16(53+i%4))
		b = pcapio.AppendPacket(b, uint32(i%2), int64(1e18)+int64(i)*1000, uint32(len(d)), d)
	}
	for _, c := range []struct {
		filter string
		want   uint64
	}{{"", 100}, {"udp dst port 53 or udp dst port 54", 50}} {
		x, err := NewAnalysis(0, 1024)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapio.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		n, err := x.Replay(r, c.filter)
		if err != nil || n != c.want {
			t.Fatalf("filter %q: replayed %d packets (%v), want %d", c.filter, n, err, c.want)
		}
		doc := x.Document([]string{"mixed.pcapng"})
		var malformed uint64
		for _, v := range doc.Malformed {
			malformed += v
		}
		if doc.Protocols["udp"].Packets != c.want || malformed != 0 {
			t.Fatalf("filter %q: protocols %v, malformed %v; want %d UDP packets and none malformed", c.filter, doc.Protocols, doc.Malformed, c.want)
		}
	}
}
