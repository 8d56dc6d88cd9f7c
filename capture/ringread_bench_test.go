package capture

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/sys/unix"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// BenchmarkRingRead compares the cost of reading packets out of a TPACKET_V3
// ring with sonde's block walker and with gopacket's afpacket (pure Go, the
// obvious alternative): the ring is filled with real 64-byte frames sent
// across a veth pair, with the timer stopped, and then drained with the timer
// running, so ns/op is the user-space cost of reading one packet. Both read
// the same ring geometry and restore VLAN tags. One op is one packet, so run
// it with a fixed count: -benchtime 1000000x.
func BenchmarkRingRead(b *testing.B) {
	netnstest.Root(b)
	p, err := netnstest.NewPair()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// Fills of 10 000 frames stay far inside both rings. (With fills of
	// 100 000, gopacket's reader timed out here with its ring frozen, while
	// sonde's read every packet; that is not what this benchmark measures.)
	const perFill = 10_000
	sizes := make([]int, perFill)
	for i := range sizes {
		sizes[i] = 64
	}
	frames := p.Flow(1).Frames(sizes)
	tx, err := netnstest.NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	// fill sends n frames and waits until the kernel has retired every block
	// (block timeout 1 ms), so the drain never waits for the kernel.
	fill := func(b *testing.B, n int) {
		b.StopTimer()
		if err := tx.Send(frames[:n]); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		b.StartTimer()
	}
	cfg := Config{Snaplen: 262144, RingBytes: 64 << 20, BlockBytes: 1 << 20, BlockTimeout: time.Millisecond}

	b.Run("sonde", func(b *testing.B) {
		var s *socket
		if err := netnstest.Do(p.B.NS, func() error {
			idx, err := interfaceIndex(p.B.Iface)
			if err != nil {
				return err
			}
			if s, err = openSocket(idx, &cfg); err != nil {
				return err
			}
			return attachFilter(s.fd, []unix.SockFilter{{Code: 0x06, K: uint32(cfg.Snaplen)}})
		}); err != nil {
			b.Fatal(err)
		}
		defer s.close()
		pkts := make([]Packet, 0, cfg.BlockBytes/64)
		var cur, bytes int
		b.ReportAllocs()
		b.ResetTimer()
		for got := 0; got < b.N; {
			fill(b, min(perFill, b.N-got))
			for blk := s.block(cur); blockReady(blk); blk = s.block(cur) {
				pkts, _ = walkBlock(blk, true, false, cfg.Snaplen, pkts[:0])
				for i := range pkts {
					bytes += len(pkts[i].Data)
				}
				got += len(pkts)
				releaseBlock(blk)
				cur = (cur + 1) % s.numBlocks
			}
		}
		_ = bytes
	})

	b.Run("gopacket-afpacket", func(b *testing.B) {
		var h *afpacket.TPacket
		if err := netnstest.Do(p.B.NS, func() (err error) {
			h, err = afpacket.NewTPacket(afpacket.OptInterface(p.B.Iface), afpacket.TPacketVersion3,
				afpacket.OptFrameSize(1<<16), afpacket.OptBlockSize(cfg.BlockBytes), afpacket.OptNumBlocks(int(cfg.RingBytes)/cfg.BlockBytes),
				afpacket.OptBlockTimeout(cfg.BlockTimeout), afpacket.OptPollTimeout(time.Millisecond), afpacket.OptAddVLANHeader(true))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		var bytes int
		b.ReportAllocs()
		b.ResetTimer()
		for got := 0; got < b.N; {
			n := min(perFill, b.N-got)
			fill(b, n)
			for i := 0; i < n; i++ {
				data, _, err := h.ZeroCopyReadPacketData()
				if err != nil {
					_, st3, _ := h.SocketStats()
					b.Fatalf("after %d packets: %v (socket stats %+v)", got+i, err, st3)
				}
				bytes += len(data)
			}
			got += n
		}
		_ = bytes
	})
}
