package analysis

import (
	"github.com/sonde-project/sonde/analysis/decode"
)

// tcpDir is one direction of a connection, named for the sender.
type tcpDir struct {
	nextSeq     uint32 // highest sequence sent + 1 (SYN and FIN count one)
	nextSeqTime int64
	lastAck     uint32 // ACK field of the last segment, whatever its flags
	lastAckTime int64
	win         uint16 // raw window of the last segment
	dupAcks     uint16 // duplicate ACKs since the ACK number last changed
	mss         uint16
	wscale      uint8
	seqInit     bool
	ackInit     bool
	hasWScale   bool
	synSeen     bool // this direction's SYN was seen, so its window scale is known
	winInit     bool
	winSYN      bool // win came from a SYN, whose window is never scaled
	// lastKeepAlive: the last segment was a keep-alive, so an ACK
	// answering it is a keep-alive ACK, not a duplicate.
	lastKeepAlive bool
	fin           bool
	// One outstanding data-RTT sample: the sequence that must be acked and
	// when the segment ending there was sent; rttTime 0 when none.
	rttSeq  uint32
	rttTime int64
}

// tcpConn is a connection's analysis state.
type tcpConn struct {
	dir        [2]tcpDir
	synSeq     uint32
	synTime    int64 // most recent SYN, as Wireshark's initial RTT uses
	synAckTime int64
	initialRTT int64
	client     uint8
	haveSYN    bool
	haveSYNACK bool
	estab      bool
	closed     bool
	reset      bool
}

// Sequence comparisons modulo 2^32.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }

const (
	fastRetransWindow = 20e6  // ns between the last duplicate ACK and a fast retransmission
	oooDefault        = 3e6   // ns: out-of-order threshold before an RTT is known
	minRTO            = 200e6 // ns: Linux's minimum retransmission timeout
)

// tcpSegment analyses one segment of flow f sent in direction d. It follows
// Wireshark's tcp_analyze_sequence_number closely so that its counts can be
// checked against tshark's, and classifies retransmissions further by how
// long the sender waited.
func (a *Analyzer) tcpSegment(f *flow, d int, p *decode.Packet, ts int64, c *TCPCounters) {
	t := &f.tcp
	tp := &p.TCP
	flags := tp.Flags
	c.Segments++

	// A new SYN on a tuple whose connection ended, or with another initial
	// sequence number, starts a new connection.
	if flags&(decode.TCPSyn|decode.TCPAck) == decode.TCPSyn && t.haveSYN &&
		(t.closed || t.reset || (tp.Seq != t.synSeq && ts-t.synTime > 1e9)) {
		*t = tcpConn{}
	}
	fwd, rev := &t.dir[d], &t.dir[1-d]
	seglen := tp.PayloadLen
	if seglen > 0 {
		c.DataSegments++
	}

	switch flags & (decode.TCPSyn | decode.TCPAck) {
	case decode.TCPSyn:
		c.SYNs++
		if !t.haveSYN {
			t.haveSYN, t.synSeq, t.client = true, tp.Seq, uint8(d)
			c.Opened++
		} else if tp.Seq == t.synSeq {
			c.SYNRetrans++
		}
		t.synTime = ts
		fwd.mss, fwd.wscale, fwd.hasWScale, fwd.synSeen = tp.MSS, tp.WScale, tp.HasWScale, true
	case decode.TCPSyn | decode.TCPAck:
		c.SYNACKs++
		fwd.mss, fwd.wscale, fwd.hasWScale, fwd.synSeen = tp.MSS, tp.WScale, tp.HasWScale, true
		if t.haveSYN && uint8(d) != t.client {
			if !t.haveSYNACK && tp.Ack == t.synSeq+1 {
				c.HandshakeSYN.Observe(ts - t.synTime)
			}
			t.haveSYNACK = true
			t.synAckTime = ts
		}
	case decode.TCPAck:
		if t.haveSYN && t.initialRTT == 0 {
			t.initialRTT = ts - t.synTime
			if t.initialRTT <= 0 {
				t.initialRTT = 1
			}
			c.HandshakeRTT.Observe(ts - t.synTime)
		}
		if !t.estab && t.haveSYNACK && uint8(d) == t.client {
			t.estab = true
			c.Established++
			c.HandshakeACK.Observe(ts - t.synAckTime)
		}
	}

	// The rest follows tcp_analyze_sequence_number of tshark 4.0 (checked
	// against 4.0.17 on crafted captures, tcpseq_test.go) check by check, so that each class is the segments tshark flags with it. Its
	// per-direction state (next sequence, last ACK, window, duplicate-ACK
	// count, last segment's flags) is updated by every segment, whatever
	// its flags.
	noSFR := flags&(decode.TCPSyn|decode.TCPFin|decode.TCPRst) == 0
	win := tp.Window

	// Zero-window probe: one byte at the next sequence into a zero window.
	// It skips the window and duplicate-ACK checks and does not advance
	// the next sequence.
	zwp := seglen == 1 && fwd.seqInit && tp.Seq == fwd.nextSeq && rev.winInit && rev.win == 0
	keepAlive := false
	if !zwp {
		if win == 0 && noSFR {
			c.ZeroWindows++
		}
		// Keep-alive: no more than one byte, one below the next sequence.
		keepAlive = seglen <= 1 && fwd.seqInit && tp.Seq == fwd.nextSeq-1 && noSFR
		if keepAlive {
			c.KeepAlives++
		}
		// Window full, as Wireshark's tcp.analysis.window_full: a data
		// segment reaching exactly the right edge of the window the
		// receiver last advertised, so the sender could send no more until
		// the receiver read. The scale is known only once the receiver's
		// SYN was seen.
		if seglen > 0 && noSFR && rev.ackInit && rev.synSeen {
			w := uint32(rev.win)
			if !rev.winSYN && rev.hasWScale && fwd.hasWScale {
				w <<= rev.wscale
			}
			if tp.Seq+seglen == rev.lastAck+w {
				c.LowWindows++
			}
		}
		// Duplicate ACK: no data, no SYN/FIN/RST, an open window equal to
		// the last one, the next sequence, and the same ACK as before;
		// unless it answers a keep-alive (a keep-alive ACK).
		if seglen == 0 && noSFR && win != 0 && fwd.winInit && win == fwd.win &&
			fwd.seqInit && tp.Seq == fwd.nextSeq && fwd.ackInit && tp.Ack == fwd.lastAck && !rev.lastKeepAlive {
			fwd.dupAcks++
			c.DupAcks++
		}
	}
	// Only a new ACK number resets the count: data with the same ACK does
	// not.
	if !fwd.ackInit || tp.Ack != fwd.lastAck {
		fwd.dupAcks = 0
	}

	// Sequence analysis: is this segment new data, or sent before?
	end := tp.Seq + seglen
	if flags&(decode.TCPSyn|decode.TCPFin) != 0 {
		end++
	}
	if (seglen > 0 || flags&(decode.TCPSyn|decode.TCPFin) != 0) && !keepAlive {
		notAdvanced := fwd.seqInit && seqLT(tp.Seq, fwd.nextSeq)
		// More than one byte from one below the next sequence is new data
		// after a zero-window probe.
		if seglen > 1 && fwd.seqInit && tp.Seq == fwd.nextSeq-1 {
			notAdvanced = false
		}
		// In tshark's order: spurious first, then fast retransmission, out
		// of order (a SYN or FIN counts one), plain retransmission.
		switch {
		case seglen > 0 && rev.ackInit && rev.lastAck != 0 && seqLE(tp.Seq+seglen, rev.lastAck):
			// Already acknowledged, whether or not the capture saw it
			// sent before.
			c.Retransmissions++
			c.SpuriousRetransmits++
			fwd.rttTime = 0
		case notAdvanced && rev.dupAcks >= 2 && rev.lastAck == tp.Seq && ts-rev.lastAckTime < fastRetransWindow:
			c.Retransmissions++
			c.FastRetransmissions++
			fwd.rttTime = 0
		case notAdvanced && ts-fwd.nextSeqTime < oooThreshold(t.initialRTT) && fwd.nextSeq != end:
			c.OutOfOrder++
		case notAdvanced:
			c.Retransmissions++
			if gap := ts - fwd.nextSeqTime; gap >= minRTO && gap >= 2*t.initialRTT {
				c.RTORetransmissions++
			}
			fwd.rttTime = 0 // Karn: an ACK now is ambiguous
		}
	}
	if (!fwd.seqInit || seqGT(end, fwd.nextSeq)) && !zwp {
		if seglen > 0 && fwd.rttTime == 0 && fwd.seqInit {
			fwd.rttSeq, fwd.rttTime = end, ts
		}
		fwd.nextSeq, fwd.nextSeqTime, fwd.seqInit = end, ts, true
	}

	fwd.lastAck, fwd.lastAckTime, fwd.ackInit = tp.Ack, ts, true
	fwd.win, fwd.winInit, fwd.winSYN = win, true, flags&decode.TCPSyn != 0
	fwd.lastKeepAlive = keepAlive
	if flags&decode.TCPAck != 0 && rev.rttTime != 0 && seqLE(rev.rttSeq, tp.Ack) {
		c.DataRTT.Observe(ts - rev.rttTime)
		rev.rttTime = 0
	}

	if flags&decode.TCPFin != 0 && !fwd.fin {
		fwd.fin = true
		if rev.fin && !t.closed && !t.reset {
			t.closed = true
			c.Closed++
		}
	}
	if flags&decode.TCPRst != 0 {
		c.Resets++
		if !t.reset && !t.closed {
			t.reset = true
			c.ConnResets++
		}
	}
}

func oooThreshold(rtt int64) int64 {
	if rtt <= 0 {
		return oooDefault
	}
	return rtt
}
