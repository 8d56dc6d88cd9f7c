//go:build libpcap

package capture

import (
	"errors"
	"fmt"
	"time"

	"github.com/gopacket/gopacket/pcap"
	"go.uber.org/zap"
)

// PcapAvailable reports whether this binary includes the pcap engine.
const PcapAvailable = true

// pcapSource is one libpcap handle: the pcap engine's worker. libpcap reuses
// its buffer for every packet, so packets are copied into an arena of
// BlockBytes and handed to consumers as a Block when the arena fills or the
// block timeout passes, exactly as AF_PACKET blocks are.
type pcapSource struct {
	h     *pcap.Handle
	arena []byte
}

func (s *pcapSource) close() {
	if s.h != nil {
		s.h.Close()
		s.h = nil
	}
}

// openPcap opens iface through libpcap with one worker (libpcap has no fanout).
func (c *Capture) openPcap(name string) (*iface, error) {
	cfg := &c.cfg
	in, err := pcap.NewInactiveHandle(name)
	if err != nil {
		return nil, fmt.Errorf("interface %q: libpcap: %w", name, err)
	}
	defer in.CleanUp()
	for _, set := range []func() error{
		func() error { return in.SetSnapLen(cfg.Snaplen) },
		func() error { return in.SetPromisc(cfg.Promisc) },
		func() error { return in.SetTimeout(cfg.BlockTimeout) },
		func() error { return in.SetBufferSize(int(cfg.RingBytes)) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("interface %q: libpcap: %w", name, err)
		}
	}
	h, err := in.Activate()
	if err != nil {
		return nil, fmt.Errorf("interface %q: libpcap: %w", name, err)
	}
	if cfg.PcapFilter != "" {
		if err := h.SetBPFFilter(cfg.PcapFilter); err != nil {
			h.Close()
			return nil, fmt.Errorf("interface %q: %w: libpcap: filter %q: %v", name, ErrFilter, cfg.PcapFilter, err)
		}
	}
	ifc := &iface{name: name, linkType: LinkType(h.LinkType())}
	ifc.state.Store(StateStarting)
	ifc.errMsg.Store("")
	w := &worker{
		pcap:    &pcapSource{h: h, arena: make([]byte, 0, max(cfg.BlockBytes, cfg.Snaplen))},
		iface:   ifc,
		snaplen: cfg.Snaplen,
		block:   Block{Interface: name, LinkType: ifc.linkType},
	}
	ifc.workers = []*worker{w}
	return ifc, nil
}

// runPcap is the pcap engine's read loop. It checks for a stop at every read
// timeout (the block timeout), then hands over what it holds and closes.
func (w *worker) runPcap(done <-chan struct{}, blockTimeout time.Duration, log *zap.Logger) {
	log = log.With(zap.String("interface", w.iface.name), zap.String("engine", EnginePcap))
	src := w.pcap
	defer func() {
		w.flushPcap()
		w.readPcapStats(log)
	}()
	w.block.Packets = make([]Packet, 0, cap(src.arena)/64)
	var (
		deadline  = time.Now().Add(blockTimeout)
		lastIdle  = time.Now()
		lastStats = lastIdle
	)
	for {
		select {
		case <-done:
			return
		default:
		}
		data, ci, err := src.h.ZeroCopyReadPacketData()
		switch {
		case err == nil:
			data = data[:min(len(data), w.snaplen)]
			if len(src.arena)+len(data) > cap(src.arena) {
				w.flushPcap()
			}
			off := len(src.arena)
			src.arena = append(src.arena, data...)
			w.block.Packets = append(w.block.Packets, Packet{
				Timestamp: ci.Timestamp.UnixNano(),
				Length:    uint32(ci.Length),
				Data:      src.arena[off:len(src.arena):len(src.arena)],
			})
		case errors.Is(err, pcap.NextErrorTimeoutExpired):
		default:
			log.Error("libpcap read failed; stopping this interface", zap.Error(err))
			w.iface.state.Store(StateFailed)
			w.iface.errMsg.Store(err.Error())
			return
		}
		now := time.Now()
		if now.After(deadline) {
			w.flushPcap()
			deadline = now.Add(blockTimeout)
		}
		if now.Sub(lastIdle) >= pollInterval {
			lastIdle = now
			w.idle(now)
			if now.Sub(lastStats) >= statsInterval {
				lastStats = now
				w.readPcapStats(log)
			}
		}
	}
}

// flushPcap hands the packets gathered so far to the consumers as one block.
func (w *worker) flushPcap() {
	if len(w.block.Packets) == 0 {
		return
	}
	var wire uint64
	for i := range w.block.Packets {
		wire += uint64(w.block.Packets[i].Length)
	}
	for _, c := range w.consumers {
		c.HandleBlock(&w.block)
	}
	w.stats.packets.Add(uint64(len(w.block.Packets)))
	w.stats.bytes.Add(wire)
	w.block.Packets = w.block.Packets[:0]
	w.pcap.arena = w.pcap.arena[:0]
}

// readPcapStats copies libpcap's counters, which are running totals already.
func (w *worker) readPcapStats(log *zap.Logger) {
	st, err := w.pcap.h.Stats()
	if err != nil {
		log.Warn("reading libpcap statistics failed", zap.Error(err))
		return
	}
	w.stats.kernelPackets.Store(uint64(st.PacketsReceived))
	w.stats.kernelDrops.Store(uint64(st.PacketsDropped))
}
