package analysis

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/analysis/decode"
	"github.com/sonde-project/sonde/capture"
)

// Analyzer is one capture worker's analysis: it implements capture.Consumer,
// owns its flow table, DNS pending table and window counters outright (no
// locks, no channels, no allocation per packet), and hands its window to the
// Engine when the window closes: on the first packet past its end, on Idle
// past its end, or on Close.
type Analyzer struct {
	eng    *Engine
	worker int
	window int64 // ns

	pkt      decode.Packet
	flows    *flowTable
	high     int          // slab indices below this have been used
	touched  []int32      // flows touched in the current window
	recs     []FlowRecord // buffer for the next window's flow records, from the engine
	spare    *part        // a part the engine gave back, for the next window
	dns      dnsPending
	names    nameSketch
	drops    func() uint64
	lastDrop uint64
	log      *zap.Logger
	panicked bool // the first recovered panic has been logged

	winStart, winEnd int64
	lastTS           int64
	c                Counters
}

// SetDropCounter gives the analyzer the running total of packets the kernel
// dropped before they reached it (capture.Worker.KernelDrops), so windows
// and the health score account for them. Call it before the first block.
func (a *Analyzer) SetDropCounter(fn func() uint64) {
	a.drops = fn
	if fn != nil {
		a.lastDrop = fn()
	}
}

// SetLogger gives the analyzer a logger for the one message it may log:
// the first analyzer panic (see HandleBlock). Without one it logs nothing.
func (a *Analyzer) SetLogger(l *zap.Logger) { a.log = l }

var _ capture.Consumer = (*Analyzer)(nil)

// HandleBlock analyses every packet of b.
//
// A packet whose analysis panics is skipped and counted
// (Counters.AnalyzerPanics); the first such panic is logged with the
// packet's timestamp, length and place in the block. The block goes on with
// the next packet, so a decoder bug triggered by one hostile packet never
// stops capture. The recover is deferred once per block, not per packet:
// handleFrom is re-entered after each panic, and the normal path pays
// nothing.
func (a *Analyzer) HandleBlock(b *capture.Block) {
	lt := decode.LinkType(b.LinkType)
	for i := 0; i < len(b.Packets); {
		i = a.handleFrom(lt, b, i)
	}
}

// handleFrom analyses b's packets from i on and returns len(b.Packets), or
// the index after a packet that panicked.
func (a *Analyzer) handleFrom(lt decode.LinkType, b *capture.Block, i int) (next int) {
	defer func() {
		if r := recover(); r != nil {
			a.recovered(r, b, next)
			next++
		}
	}()
	for next = i; next < len(b.Packets); next++ {
		p := &b.Packets[next]
		a.packet(lt, p.Timestamp, p.Length, p.Data)
	}
	return next
}

func (a *Analyzer) recovered(r any, b *capture.Block, i int) {
	a.c.AnalyzerPanics++
	if a.panicked || a.log == nil {
		return
	}
	a.panicked = true
	p := &b.Packets[i]
	a.log.Error("analysis panicked on a packet; the packet was skipped, further panics are only counted (Counters.AnalyzerPanics)",
		zap.Int("worker", a.worker),
		zap.Time("packet_time", time.Unix(0, p.Timestamp).UTC()),
		zap.Int64("packet_time_ns", p.Timestamp),
		zap.Uint32("packet_length", p.Length),
		zap.Int("captured_bytes", len(p.Data)),
		zap.Int("index_in_block", i),
		zap.String("panic", fmt.Sprint(r)),
		zap.ByteString("stack", debug.Stack()))
}

// Idle closes the current window when the wall clock has passed its end,
// so that a quiet worker does not hold back the engine's windows.
func (a *Analyzer) Idle(now int64) {
	if a.winEnd == 0 {
		a.eng.report(a.worker, nil, now-now%a.window)
		return
	}
	if now >= a.winEnd {
		a.closeWindow(now)
	}
}

// Close publishes the last, partial window and tells the engine this
// worker is done.
func (a *Analyzer) Close() {
	if a.winEnd != 0 {
		a.closeWindow(a.lastTS)
		a.finishDNS()
	}
	a.report(a.takePart(true), maxTime)
}

const maxTime = int64(^uint64(0) >> 1)

func (a *Analyzer) packet(lt decode.LinkType, ts int64, wire uint32, data []byte) {
	if ts >= a.winEnd {
		if a.winEnd == 0 {
			a.winStart = ts - ts%a.window
			a.winEnd = a.winStart + a.window
		} else {
			a.closeWindow(ts)
		}
	}
	a.lastTS = ts
	c := &a.c
	p := &a.pkt
	decode.Decode(lt, data, p)
	if c.FirstTS == 0 {
		c.FirstTS = ts
	}
	c.LastTS = ts
	c.Packets++
	c.Bytes += uint64(wire)
	if p.Reason != decode.ReasonNone {
		c.Malformed[p.Reason]++
	}
	var proto Proto
	switch p.L3 {
	case decode.L3IPv4, decode.L3IPv6:
		if p.L3 == decode.L3IPv4 {
			c.IPv4++
		} else {
			c.IPv6++
		}
		switch p.OuterProto {
		case decode.ProtoTCP:
			proto = ProtoTCP
		case decode.ProtoUDP:
			proto = ProtoUDP
		case decode.ProtoICMP:
			proto = ProtoICMP
		case decode.ProtoICMPv6:
			proto = ProtoICMP6
		default:
			proto = ProtoOther
		}
	case decode.L3ARP:
		proto = ProtoARP
	default:
		proto = ProtoOther
	}
	c.Protos[proto].Packets++
	c.Protos[proto].Bytes += uint64(wire)
	if p.VLANs > 0 {
		c.VLAN++
	}
	if p.Tunnel != decode.TunnelNone {
		c.Tunnels[p.Tunnel]++
	}
	switch p.Frag {
	case decode.FragFirst:
		c.FragFirst++
	case decode.FragNonFirst:
		c.FragNonFirst++
	}
	if p.L3 != decode.L3IPv4 && p.L3 != decode.L3IPv6 {
		return
	}
	if p.HasL4 {
		switch p.IPProto {
		case decode.ProtoICMP:
			switch p.ICMPType {
			case 3:
				c.ICMPUnreachable++
				if p.ICMPCode == 4 {
					c.ICMPFragNeeded++
				}
			case 11:
				c.ICMPTimeExceeded++
			}
		case decode.ProtoICMPv6:
			switch p.ICMPType {
			case 1:
				c.ICMPUnreachable++
			case 2:
				c.ICMPPacketTooBig++
			case 3:
				c.ICMPTimeExceeded++
			}
		}
	}

	// Flow: the key is the canonical (smaller endpoint first) 5-tuple of the
	// innermost decoded packet; without a transport header ports are 0.
	var k flowKey
	d := 0
	k.proto = p.IPProto
	if cmp := bytes.Compare(p.Src[:], p.Dst[:]); cmp < 0 || (cmp == 0 && p.SrcPort <= p.DstPort) {
		k.a, k.b, k.pa, k.pb = p.Src, p.Dst, p.SrcPort, p.DstPort
	} else {
		k.a, k.b, k.pa, k.pb = p.Dst, p.Src, p.DstPort, p.SrcPort
		d = 1
	}
	h := hashKey(&k)
	idx, created := a.flows.lookup(&k, h)
	if idx < 0 {
		c.DroppedFlows++
		if p.IsDNS {
			a.dnsCount(p)
		}
		return
	}
	f := &a.flows.slab[idx]
	if created {
		c.NewFlows++
		f.first = ts
		if idx >= a.high {
			a.high = idx + 1
		}
	}
	if f.epoch != a.winStart || created {
		f.epoch = a.winStart
		f.winPkts = [2]uint32{}
		f.winBytes = [2]uint64{}
		a.touched = append(a.touched, int32(idx))
	}
	f.last = ts
	f.winPkts[d]++
	f.winBytes[d] += uint64(wire)
	if !p.HasL4 || p.Frag == decode.FragNonFirst {
		return
	}
	switch p.IPProto {
	case decode.ProtoTCP:
		a.tcpSegment(f, d, p, ts, &c.TCP)
	case decode.ProtoUDP:
		f.udp[d].arrive(ts)
		if p.IsDNS {
			a.dnsCount(p)
			a.dnsMatch(f, p, ts)
		}
	}
}

// jitterState estimates RFC 3550 interarrival jitter for one direction of
// a UDP flow from arrival times alone: without the sender's clock, the
// transit-time difference is taken to be the change in spacing between
// consecutive packets, which is exact for constant-rate senders (voice,
// video, telemetry) and RFC 3393's IPDV of consecutive packets otherwise.
type jitterState struct {
	last, lastGap int64
	j16           int64 // jitter in ns, times 16 (RFC 3550 A.8 integer form)
	n             uint32
}

func (j *jitterState) arrive(ts int64) {
	if j.n > 0 {
		gap := ts - j.last
		if j.n > 1 {
			dv := gap - j.lastGap
			if dv < 0 {
				dv = -dv
			}
			j.j16 += dv - (j.j16+8)>>4
		}
		j.lastGap = gap
	}
	j.last = ts
	j.n++
}

func (a *Analyzer) dnsCount(p *decode.Packet) {
	dc := &a.c.DNS
	if p.DNS.Response {
		dc.Responses++
		dc.Rcodes[p.DNS.Rcode]++
		return
	}
	dc.Queries++
	if p.DNS.NameLen > 0 {
		a.names.add(p.DNS.NameHash, p.DNS.Name[:p.DNS.NameLen])
	}
}

func (a *Analyzer) closeWindow(now int64) {
	c := &a.c
	// Window-level flow work: feed the top-K sketches from the flows this
	// window touched, sample jitter, then expire idle flows.
	part := a.takePart(false)
	idle := a.eng.cfg.FlowIdleTimeout.Nanoseconds()
	for _, i := range a.touched {
		f := &a.flows.slab[i]
		pk := uint64(f.winPkts[0]) + uint64(f.winPkts[1])
		by := f.winBytes[0] + f.winBytes[1]
		part.talkers.add(f.key.a, pk, by)
		part.talkers.add(f.key.b, pk, by)
		part.convs.add(convKey{f.key.a, f.key.b}, pk, by)
		part.ports.add(serverPort(f), pk, by)
		if f.key.proto == decode.ProtoUDP {
			for d := range f.udp {
				if j := &f.udp[d]; j.n >= uint32(a.eng.cfg.JitterMinPackets) && f.winPkts[d] >= 2 {
					part.c.Jitter.Observe(j.j16 >> 4)
				}
			}
		}
	}
	if n := a.eng.cfg.FlowRecords; n > 0 && len(a.touched) > 0 {
		// The buffer comes back from the engine once the window is
		// published; it is only reallocated to grow.
		recs := a.recs[:0]
		a.recs = nil
		if want := min(n, len(a.touched)); cap(recs) < want {
			recs = make([]FlowRecord, 0, want)
		}
		for _, i := range a.touched {
			if len(recs) == n {
				part.omitted++
				continue
			}
			recs = append(recs, flowRecord(&a.flows.slab[i], a.winStart))
		}
		part.flows = append(part.flows, recs)
	}
	a.touched = a.touched[:0]
	for i := 0; i < a.high; i++ {
		f := &a.flows.slab[i]
		if f.hash != 0 && now-f.last > idle {
			a.flows.remove(i)
			part.c.ExpiredFlows++
		}
	}
	part.c.DNS.Timeouts += a.dns.expire(now - a.eng.cfg.DNSTimeout.Nanoseconds())
	part.activeFlows = uint64(a.flows.live)
	if a.drops != nil {
		d := a.drops()
		part.c.Drops += d - a.lastDrop
		a.lastDrop = d
	}
	_ = c
	// The next window is the one holding now; empty windows in between are
	// simply not reported (the engine's watermark covers them).
	a.winStart = now - now%a.window
	a.winEnd = a.winStart + a.window
	a.report(part, a.winStart)
}

// report hands pt to the engine and keeps the part and record buffer it
// gives back for the next window.
func (a *Analyzer) report(pt *part, watermark int64) {
	spare, recs := a.eng.report(a.worker, pt, watermark)
	if spare != nil && a.spare == nil {
		a.spare = spare
	}
	if recs != nil && a.recs == nil {
		a.recs = recs
	}
}

// takePart moves the current window's counters and DNS names into a part
// for the engine: one the engine gave back from an earlier window, or a new
// one. Nothing is allocated per packet.
func (a *Analyzer) takePart(empty bool) *part {
	pt := a.newPart()
	if empty {
		return pt
	}
	pt.c = a.c
	a.c = Counters{}
	pt.names = a.names.items()
	a.names.reset()
	return pt
}

// newPart returns an empty part for the current window: the spare the
// engine gave back, or a new one.
func (a *Analyzer) newPart() *part {
	if pt := a.spare; pt != nil {
		a.spare = nil
		return pt.reuse(a.winStart, a.winEnd)
	}
	return newPart(a.eng.cfg, a.winStart, a.winEnd)
}

// finishDNS counts the queries still pending at the end of the capture.
func (a *Analyzer) finishDNS() {
	n := a.dns.expire(maxTime)
	pt := a.newPart()
	pt.c.DNS.Unanswered = n
	a.report(pt, a.winStart)
}

// serverPort guesses the service side of a flow: the port the client
// connected to when the handshake was seen, else the lower port.
func serverPort(f *flow) portKey {
	pk := portKey{Proto: f.key.proto}
	switch {
	case f.key.proto == decode.ProtoTCP && f.tcp.haveSYN:
		if f.tcp.client == 0 {
			pk.Port = f.key.pb
		} else {
			pk.Port = f.key.pa
		}
	case f.key.pa < f.key.pb:
		pk.Port = f.key.pa
	default:
		pk.Port = f.key.pb
	}
	return pk
}
