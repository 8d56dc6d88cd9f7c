package netnstest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
)

// DstMAC is the destination of every generated frame: locally administered,
// unicast, and no interface's address, so receivers capture it but never
// answer it.
var DstMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}

// Magic starts the UDP payload of every generated frame.
const Magic = "SNDE"

// Frame size limits without FCS: the Ethernet minimum and the largest
// untagged frame of a 1500-byte MTU.
const (
	MinFrame = 60
	MaxFrame = 1514
)

const (
	ethHdr      = 14
	vlanTag     = 4
	ipHdr       = 20
	udpHdr      = 8
	payloadHead = len(Magic) + 4 + 8 // magic, stream, sequence
)

// Flow describes a numbered stream of UDP/IPv4 frames.
type Flow struct {
	SrcMAC           net.HardwareAddr
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Stream           uint32
	// VLAN, when non-zero, is the 802.1Q TCI (priority and VLAN ID) the
	// frames carry in the packet data.
	VLAN uint16
}

// Flow returns a flow from p.A to p.B (whose IP stack ignores it).
func (p *Pair) Flow(stream uint32) Flow {
	return Flow{
		SrcMAC: p.A.MAC, Src: p.A.Addr.Addr(), Dst: p.B.Addr.Addr(),
		SrcPort: 40000 + uint16(stream%20000), DstPort: 9, Stream: stream,
	}
}

// Frame builds frame seq of the flow with total length size (including the
// VLAN tag when there is one; no FCS). Checksums are valid; the payload is
// Magic, the stream, the sequence number and a pattern derived from seq.
func (f Flow) Frame(seq uint64, size int) []byte {
	hdr := ethHdr + ipHdr + udpHdr
	if f.VLAN != 0 {
		hdr += vlanTag
	}
	if size < hdr+payloadHead {
		size = hdr + payloadHead
	}
	b := make([]byte, size)
	copy(b[0:6], DstMAC)
	copy(b[6:12], f.SrcMAC)
	o := 12
	if f.VLAN != 0 {
		binary.BigEndian.PutUint16(b[o:], 0x8100)
		binary.BigEndian.PutUint16(b[o+2:], f.VLAN)
		o += vlanTag
	}
	binary.BigEndian.PutUint16(b[o:], 0x0800)
	o += 2
	ipLen := size - o
	ip := b[o : o+ipHdr]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen))
	binary.BigEndian.PutUint16(ip[4:], uint16(seq))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64
	ip[9] = 17 // UDP
	src, dst := f.Src.As4(), f.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	udp := b[o+ipHdr:]
	binary.BigEndian.PutUint16(udp[0:], f.SrcPort)
	binary.BigEndian.PutUint16(udp[2:], f.DstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	pl := udp[udpHdr:]
	copy(pl, Magic)
	binary.BigEndian.PutUint32(pl[4:], f.Stream)
	binary.BigEndian.PutUint64(pl[8:], seq)
	for i := payloadHead; i < len(pl); i++ {
		pl[i] = byte(seq + uint64(i))
	}
	// Pseudo-header: addresses, protocol, UDP length.
	var sum uint32
	for i := 0; i < 4; i += 2 {
		sum += uint32(src[i])<<8 | uint32(src[i+1])
		sum += uint32(dst[i])<<8 | uint32(dst[i+1])
	}
	sum += 17 + uint32(len(udp))
	c := checksum(udp, sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return b
}

// Frames builds frames 0..len(sizes)-1 of the flow with the given sizes.
func (f Flow) Frames(sizes []int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, s := range sizes {
		out[i] = f.Frame(uint64(i), s)
	}
	return out
}

// MixedSizes returns n frame sizes in [MinFrame, MaxFrame], always the same
// for the same seed, with both extremes included.
func MixedSizes(n int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	s := make([]int, n)
	for i := range s {
		switch i % 10 {
		case 0:
			s[i] = MinFrame
		case 1:
			s[i] = MaxFrame
		default:
			s[i] = MinFrame + r.IntN(MaxFrame-MinFrame+1)
		}
	}
	return s
}

// Parse extracts stream and sequence number from a generated frame (tagged or
// not, possibly truncated by a snaplen after the sequence number).
func Parse(frame []byte) (stream uint32, seq uint64, err error) {
	o := 12
	if len(frame) >= o+2 && binary.BigEndian.Uint16(frame[o:]) == 0x8100 {
		o += vlanTag
	}
	if len(frame) < o+2+ipHdr+udpHdr+payloadHead {
		return 0, 0, fmt.Errorf("frame of %d bytes too short", len(frame))
	}
	if binary.BigEndian.Uint16(frame[o:]) != 0x0800 || frame[o+2] != 0x45 || frame[o+2+9] != 17 {
		return 0, 0, fmt.Errorf("not a generated UDP/IPv4 frame")
	}
	pl := frame[o+2+ipHdr+udpHdr:]
	if string(pl[:len(Magic)]) != Magic {
		return 0, 0, fmt.Errorf("payload lacks magic %q", Magic)
	}
	return binary.BigEndian.Uint32(pl[4:]), binary.BigEndian.Uint64(pl[8:]), nil
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
