package analysis

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sonde-project/sonde/internal/pcapio"
)

// craftSeg is one crafted TCP segment of a connection between a client
// (198.18.0.1:40000) and a server (198.19.0.1:5001): seq and ack are
// relative to each side's initial sequence number, at is microseconds
// from the start of the capture.
type craftSeg struct {
	at       int64
	server   bool // sent by the server
	flags    uint8
	seq, ack uint32
	len      int
	win      uint16
	mss      uint16 // option on SYNs; 0: none
	ws       int    // window scale option on SYNs; -1: none
}

const (
	tFIN = 0x01
	tSYN = 0x02
	tRST = 0x04
	tPSH = 0x08
	tACK = 0x10
)

// craftFrame encodes s as an Ethernet/IPv4/TCP frame (checksums zero:
// neither sonde nor tshark by default verifies them).
func craftFrame(s craftSeg) []byte {
	const clientISN, serverISN = 1000000, 5000000
	src, dst := [4]byte{198, 18, 0, 1}, [4]byte{198, 19, 0, 1}
	sport, dport := uint16(40000), uint16(5001)
	seq, ack := clientISN+s.seq, serverISN+s.ack
	if s.server {
		src, dst, sport, dport = dst, src, dport, sport
		seq, ack = serverISN+s.seq, clientISN+s.ack
	}
	if s.flags&tACK == 0 {
		ack = 0
	}
	var opts []byte
	if s.flags&tSYN != 0 {
		if s.mss != 0 {
			opts = binary.BigEndian.AppendUint16(append(opts, 2, 4), s.mss)
		}
		if s.ws >= 0 {
			opts = append(opts, 1, 3, 3, byte(s.ws))
		}
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
	}
	thl := 20 + len(opts)
	b := make([]byte, 14+20+thl+s.len)
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	if s.server {
		copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
		copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	}
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+thl+s.len))
	ip[6] = 0x40 // DF
	ip[8], ip[9] = 64, 6
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = byte(thl/4) << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	copy(tcp[20:], opts)
	return b
}

// writeCrafted writes segs as a pcap file in a test directory.
func writeCrafted(t *testing.T, segs []craftSeg) string {
	t.Helper()
	const base = int64(1_700_000_000) * 1e9
	buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, 1, 65535, "")
	for _, s := range segs {
		f := craftFrame(s)
		buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, base+s.at*1000, uint32(len(f)), f)
	}
	file := filepath.Join(t.TempDir(), "crafted.pcap")
	if dir := os.Getenv("SONDE_CRAFTED_DIR"); dir != "" {
		file = filepath.Join(dir, t.Name()+".pcap")
	}
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// handshake is a client-server handshake with a 1 ms RTT at the capture
// point (SYN at 0, SYN-ACK at 500 µs, ACK at 1000 µs), MSS 1000 and no
// window scaling, so the out-of-order threshold is 1 ms.
func handshake() []craftSeg {
	return []craftSeg{
		{at: 0, flags: tSYN, seq: 0, win: 64000, mss: 1000, ws: -1},
		{at: 500, server: true, flags: tSYN | tACK, seq: 0, ack: 1, win: 64000, mss: 1000, ws: -1},
		{at: 1000, flags: tACK, seq: 1, ack: 1, win: 64000, ws: -1},
	}
}

// checkCrafted checks sonde's per-frame classes of segs against want (frame
// numbers from 1) and, where tshark is installed, against tshark's.
func checkCrafted(t *testing.T, segs []craftSeg, want map[int]tcpFlag) {
	t.Helper()
	file := writeCrafted(t, segs)
	got := sondeFrameFlags(t, file)
	for _, l := range diffFlags(got, want, "sonde", "expected", 50) {
		t.Error(l)
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark is not installed: checked against the expected classes only")
		return
	}
	for _, l := range diffFlags(want, tsharkFrameFlags(t, file), "expected", "tshark", 50) {
		t.Error(l)
	}
}

// TestCraftedBaseline: a clean transfer has no class at all, and a plain
// retransmission long after the original is one.
func TestCraftedBaseline(t *testing.T) {
	segs := append(handshake(),
		craftSeg{at: 2000, flags: tACK | tPSH, seq: 1, ack: 1, len: 1000, win: 64000},
		craftSeg{at: 2100, flags: tACK | tPSH, seq: 1001, ack: 1, len: 1000, win: 64000},
		craftSeg{at: 3000, server: true, flags: tACK, seq: 1, ack: 1001, win: 64000},
		craftSeg{at: 300000, flags: tACK | tPSH, seq: 1001, ack: 1, len: 1000, win: 64000},
		craftSeg{at: 301000, server: true, flags: tACK, seq: 1, ack: 2001, win: 64000},
	)
	checkCrafted(t, segs, map[int]tcpFlag{7: flagRetrans})
}

// data is a client data segment of n bytes at seq, acking the server's 1.
func data(at int64, seq uint32, n int) craftSeg {
	return craftSeg{at: at, flags: tACK | tPSH, seq: seq, ack: 1, len: n, win: 64000}
}

// sack is a server pure ACK of ack with window win.
func sack(at int64, seq, ack uint32, win uint16) craftSeg {
	return craftSeg{at: at, server: true, flags: tACK, seq: seq, ack: ack, win: win}
}

// TestCraftedSpuriousAdvancing: data the receiver has already acknowledged
// is a spurious retransmission even when the capture never saw it sent
// before (tshark checks lastack whether or not the sequence advanced).
func TestCraftedSpuriousAdvancing(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		sack(3000, 1, 2001, 64000), // acks data the capture missed
		data(4000, 1001, 1000),     // new to the capture, already acknowledged
	)
	checkCrafted(t, segs, map[int]tcpFlag{6: flagRetrans | flagSpurious})
}

// TestCraftedOneBelowNextSeq: a segment of more than one byte starting one
// byte below the highest sequence is new data after a zero-window probe,
// never out of order or a retransmission.
func TestCraftedOneBelowNextSeq(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		data(2100, 1000, 1000),
		data(200000, 1999, 1000),
	)
	checkCrafted(t, segs, map[int]tcpFlag{})
}

// TestCraftedDupAckCountSurvivesData: the receiver's data segment carrying
// the same ACK does not reset its duplicate-ACK count, so two duplicates
// around it still make the next retransmission a fast one.
func TestCraftedDupAckCountSurvivesData(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		data(2010, 1001, 1000),
		data(2020, 2001, 1000),
		sack(3000, 1, 1001, 64000), // 7
		sack(3010, 1, 1001, 64000), // 8: duplicate 1
		craftSeg{at: 3020, server: true, flags: tACK | tPSH, seq: 1, ack: 1001, len: 100, win: 64000},
		sack(3030, 101, 1001, 64000), // 10: duplicate 2
		data(3100, 1001, 1000),       // 11: fast retransmission
	)
	checkCrafted(t, segs, map[int]tcpFlag{8: flagDupAck, 10: flagDupAck, 11: flagRetrans | flagFast})
}

// TestCraftedDupAckNeedsNextSeq: an ACK repeating the last one is a
// duplicate only when its sequence number is the sender's next one.
func TestCraftedDupAckNeedsNextSeq(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		craftSeg{at: 3000, server: true, flags: tACK | tPSH, seq: 1, ack: 1001, len: 100, win: 64000},
		sack(3010, 1, 1001, 64000),                                       // 6: old sequence: not a duplicate
		sack(3020, 101, 1001, 64000),                                     // 7: duplicate
		sack(3030, 101, 1001, 64000),                                     // 8: duplicate
		craftSeg{at: 3040, flags: tACK, seq: 1001, ack: 101, win: 64000}, // 9
		// The client's segments from 1001 to 5001 never reach the capture
		// (lost before it, as the sender's queue drops them under load):
		// its next pure ACK is past the next sequence, so not a duplicate,
		// and the one after it is.
		craftSeg{at: 4000, flags: tACK, seq: 5001, ack: 101, win: 64000}, // 10
		craftSeg{at: 4010, flags: tACK, seq: 5001, ack: 101, win: 64000}, // 11: duplicate
	)
	checkCrafted(t, segs, map[int]tcpFlag{7: flagDupAck, 8: flagDupAck, 11: flagDupAck})
}

// TestCraftedKeepAliveAck: the ACKs answering a keep-alive repeat the last
// ACK but are keep-alive ACKs, not duplicate ones, until the peer sends
// something else.
func TestCraftedKeepAliveAck(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		sack(3000, 1, 1001, 64000),
		craftSeg{at: 5000000, flags: tACK, seq: 1000, ack: 1, win: 64000}, // 6: keep-alive
		sack(5001000, 1, 1001, 64000),                                     // 7: keep-alive ACK
		sack(5002000, 1, 1001, 64000),                                     // 8: keep-alive ACK
		craftSeg{at: 5003000, flags: tACK, seq: 1001, ack: 1, win: 64000}, // 9: repeats the client's ACK
		sack(5004000, 1, 1001, 64000),                                     // 10: duplicate
	)
	checkCrafted(t, segs, map[int]tcpFlag{6: flagKeepAlive, 9: flagDupAck, 10: flagDupAck})
}

// TestCraftedZeroWindowProbe: a one-byte probe into a zero window does not
// advance the sequence, so the data sent from it once the window opens is
// new, and a repeated probe is a probe again.
func TestCraftedZeroWindowProbe(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		sack(3000, 1, 1001, 0),       // 5: zero window
		data(300000, 1001, 1),        // 6: probe
		data(900000, 1001, 1),        // 7: probe again
		sack(901000, 1, 1001, 64000), // 8: window update
		data(902000, 1001, 1000),     // 9: new data
	)
	checkCrafted(t, segs, map[int]tcpFlag{5: flagZeroWindow})
}

// TestCraftedFINRetransmission: a FIN counts one in the sequence, so a
// quick resend of a FIN segment ends where the next sequence is: a
// retransmission, not out of order (the loaded-run mismatch of a FIN
// resent 26 µs after the original, inside the 69 µs handshake RTT).
func TestCraftedFINRetransmission(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		craftSeg{at: 2100, flags: tACK | tPSH | tFIN, seq: 1001, ack: 1, len: 500, win: 64000},
		sack(2200, 1, 1001, 64000),
		craftSeg{at: 2300, flags: tACK | tPSH | tFIN, seq: 1001, ack: 1, len: 500, win: 64000}, // 7
	)
	checkCrafted(t, segs, map[int]tcpFlag{7: flagRetrans})
}

// TestCraftedSpuriousBeforeOutOfOrder: data the receiver has acknowledged,
// resent within the out-of-order threshold, is a spurious retransmission.
func TestCraftedSpuriousBeforeOutOfOrder(t *testing.T) {
	segs := append(handshake(),
		data(2000, 1, 1000),
		data(2010, 1001, 1000),
		sack(2200, 1, 2001, 64000),
		data(2300, 1, 1000), // 7
	)
	checkCrafted(t, segs, map[int]tcpFlag{7: flagRetrans | flagSpurious})
}
