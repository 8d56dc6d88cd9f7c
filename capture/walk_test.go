package capture

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// testFrame is a packet to lay into a synthetic ring block.
type testFrame struct {
	sec, nsec uint32
	data      []byte // as the kernel stores it (VLAN tag stripped if vlan != 0)
	wire      uint32
	vlan      uint16 // TCI to report in the header, 0 for none
	tpid      uint16 // 0: TPID not reported
}

// buildBlock lays frames out as the kernel's TPACKET_V3 code does: a block
// descriptor, then per packet a tpacket3_hdr, sockaddr_ll and the frame at a
// 16-byte aligned network offset, with reserve bytes of headroom.
func buildBlock(size int, reserve int, frames []testFrame) []byte {
	b := make([]byte, size)
	const first = 48 // BLK_PLUS_PRIV(0), aligned to 8
	ne.PutUint32(b[bdNumPkts:], uint32(len(frames)))
	ne.PutUint32(b[bdFirstPkt:], first)
	off := first
	for i, f := range frames {
		h := b[off:]
		macoff := (tpacket3HdrLen+20+16+15)&^15 + reserve - 14 // TPACKET_ALIGN(hdrlen+16)+reserve-maclen
		ne.PutUint32(h[phSec:], f.sec)
		ne.PutUint32(h[phNsec:], f.nsec)
		ne.PutUint32(h[phSnaplen:], uint32(len(f.data)))
		ne.PutUint32(h[phLen:], f.wire)
		status := uint32(unix.TP_STATUS_USER)
		if f.vlan != 0 {
			status |= unix.TP_STATUS_VLAN_VALID
			ne.PutUint32(h[phVlanTCI:], uint32(f.vlan))
		}
		if f.tpid != 0 {
			status |= unix.TP_STATUS_VLAN_TPID_VALID
			ne.PutUint16(h[phVlanTPID:], f.tpid)
		}
		ne.PutUint32(h[phStatus:], status)
		ne.PutUint16(h[phMac:], uint16(macoff))
		copy(h[macoff:], f.data)
		next := (macoff + len(f.data) + 15) &^ 15
		if i < len(frames)-1 {
			ne.PutUint32(h[phNextOffset:], uint32(next))
		}
		off += next
	}
	ne.PutUint32(b[bdBlockStatus:], unix.TP_STATUS_USER)
	return b
}

func frame(n int, fill byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = fill + byte(i)
	}
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return f
}

func TestWalkBlock(t *testing.T) {
	plain := frame(60, 1)
	tagged := frame(100, 7) // stripped on receive
	qinq := frame(80, 9)
	blk := buildBlock(1<<16, headroom, []testFrame{
		{sec: 1700000000, nsec: 123456789, data: plain, wire: 60},
		{sec: 1700000001, nsec: 1, data: tagged, wire: 100, vlan: 0x2064},
		{sec: 1700000002, nsec: 2, data: qinq, wire: 80, vlan: 5, tpid: 0x88a8},
	})
	pkts, wire := walkBlock(blk, true, false, 65535, nil)
	if len(pkts) != 3 {
		t.Fatalf("got %d packets, want 3", len(pkts))
	}
	if wire != 60+104+84 {
		t.Errorf("wire bytes %d, want %d", wire, 60+104+84)
	}
	if pkts[0].Timestamp != 1700000000123456789 || pkts[0].Length != 60 || !bytes.Equal(pkts[0].Data, plain) {
		t.Errorf("packet 0: ts %d len %d data %x", pkts[0].Timestamp, pkts[0].Length, pkts[0].Data)
	}
	want := append(append(append([]byte{}, tagged[:12]...), 0x81, 0x00, 0x20, 0x64), tagged[12:]...)
	if pkts[1].Length != 104 || !bytes.Equal(pkts[1].Data, want) {
		t.Errorf("VLAN packet not restored:\n got %x\nwant %x", pkts[1].Data, want)
	}
	want = append(append(append([]byte{}, qinq[:12]...), 0x88, 0xa8, 0x00, 0x05), qinq[12:]...)
	if !bytes.Equal(pkts[2].Data, want) {
		t.Errorf("802.1ad packet not restored with its TPID:\n got %x\nwant %x", pkts[2].Data, want)
	}
}

func TestWalkBlockSnaplenAndRaw(t *testing.T) {
	f := frame(200, 3)
	blk := buildBlock(1<<16, headroom, []testFrame{{data: f, wire: 1500, vlan: 10}})
	// A raw-IP link has no MAC header to put a tag back into.
	pkts, _ := walkBlock(blk, false, false, 96, nil)
	if len(pkts) != 1 || len(pkts[0].Data) != 96 || pkts[0].Length != 1500 || !bytes.Equal(pkts[0].Data, f[:96]) {
		t.Fatalf("got len %d wire %d", len(pkts[0].Data), pkts[0].Length)
	}
}

func TestWalkBlockCorruptOffsetsStayInside(t *testing.T) {
	blk := buildBlock(4096, headroom, []testFrame{{data: frame(60, 1), wire: 60}, {data: frame(60, 2), wire: 60}})
	ne.PutUint32(blk[bdNumPkts:], 1000) // claims more packets than the block holds
	pkts, _ := walkBlock(blk, true, false, 65535, nil)
	if len(pkts) != 2 {
		t.Fatalf("got %d packets from a block holding 2", len(pkts))
	}
	ne.PutUint32(blk[bdFirstPkt:], 4090)
	if pkts, _ := walkBlock(blk, true, false, 65535, nil); len(pkts) != 0 {
		t.Fatalf("read %d packets past the block end", len(pkts))
	}
}

func TestBlockStatusHandshake(t *testing.T) {
	blk := buildBlock(4096, headroom, []testFrame{{data: frame(60, 1), wire: 60}})
	if !blockReady(blk) {
		t.Fatal("block handed to user space not seen as ready")
	}
	releaseBlock(blk)
	if blockReady(blk) {
		t.Fatal("released block still seen as ready")
	}
}

// BenchmarkWalkBlock walks a 1 MiB block of 64-byte frames, the worst case
// for per-packet cost. The figure to read is ns/packet.
func BenchmarkWalkBlock(b *testing.B) {
	var frames []testFrame
	for i := 0; i < 1<<20/160-1; i++ { // 160: header, headroom and a 64-byte frame, 16-aligned
		frames = append(frames, testFrame{sec: uint32(i), data: frame(64, byte(i)), wire: 64, vlan: uint16(i & 1)})
	}
	blk := buildBlock(1<<20, headroom, frames)
	pkts := make([]Packet, 0, len(frames))
	orig := append([]byte(nil), blk...)
	b.ReportAllocs()
	b.SetBytes(int64(len(frames) * 64))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		copy(blk, orig) // the walk restores VLAN tags in place
		b.StartTimer()
		pkts, _ = walkBlock(blk, true, false, 262144, pkts[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/packet")
}

func TestWalkBlockSkipsOutgoingLoopbackCopies(t *testing.T) {
	blk := buildBlock(1<<16, headroom, []testFrame{
		{data: frame(60, 1), wire: 60}, {data: frame(60, 2), wire: 60}, {data: frame(60, 3), wire: 60},
	})
	// Mark the first two frames as the outgoing copies.
	off := int(ne.Uint32(blk[bdFirstPkt:]))
	for i := 0; i < 2; i++ {
		blk[off+phPktType] = unix.PACKET_OUTGOING
		off += int(ne.Uint32(blk[off+phNextOffset:]))
	}
	if pkts, _ := walkBlock(blk, true, true, 65535, nil); len(pkts) != 1 || pkts[0].Data[0] != 3 {
		t.Fatalf("with skipOutgoing: %d packets, want only the third", len(pkts))
	}
	if pkts, _ := walkBlock(blk, true, false, 65535, nil); len(pkts) != 3 {
		t.Fatalf("without skipOutgoing: %d packets, want 3", len(pkts))
	}
}
