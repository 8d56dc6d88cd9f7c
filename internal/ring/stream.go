package ring

import (
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// Stream is the ring's end of one capture worker. The capture goroutine
// serialises packets into a buffer (HandleBlock), and hands whole buffers
// to the stream's writer goroutine, which owns the files.
type Stream struct {
	ring    *Ring
	log     *zap.Logger
	iface   string
	worker  int
	lt      capture.LinkType
	snaplen int
	format  pcapio.Format
	header  []byte // file header, written at the start of every file
	kdrops  func() uint64

	// Capture side, touched only by the capture goroutine.
	cur       *buffer
	allocated int // buffers made so far, at most nbuf
	nbuf      int
	flushNs   int64

	// full carries filled buffers to the writer; free brings them back.
	// Both have room for every buffer, so sends never block.
	full chan *buffer
	free chan *buffer
	done chan struct{} // closed when the writer has published everything

	dropsQueue atomic.Uint64
	dropsWrite atomic.Uint64
	packets    atomic.Uint64
	bytes      atomic.Uint64
	files      atomic.Uint64
}

var _ capture.Consumer = (*Stream)(nil)

// buffer is a run of serialised records with a summary the capture side
// keeps as it appends, so the writer parses records one by one only when a
// rotation boundary falls inside the buffer.
type buffer struct {
	b           []byte
	first, last int64 // timestamps of the first and last record
	maxTS       int64 // the latest timestamp (clocks can step back)
	packets     uint64
	wire        uint64
}

func (b *buffer) reset() {
	b.b = b.b[:0]
	b.first, b.last, b.maxTS, b.packets, b.wire = 0, 0, 0, 0, 0
}

// HandleBlock appends the block's packets to the current buffer. It never
// blocks: when the writer has fallen behind and every buffer is queued, the
// packet is dropped and counted.
func (s *Stream) HandleBlock(b *capture.Block) {
	var drops uint64
	for i := range b.Packets {
		p := &b.Packets[i]
		data := p.Data
		if len(data) > s.snaplen {
			data = data[:s.snaplen]
		}
		need := pcapio.RecordLen(s.format, len(data))
		if s.cur != nil && cap(s.cur.b)-len(s.cur.b) < need {
			s.handOff()
		}
		if s.cur == nil && !s.takeBuffer() {
			drops++
			continue
		}
		c := s.cur
		if c.packets == 0 {
			c.first = p.Timestamp
		}
		c.last = p.Timestamp
		c.maxTS = max(c.maxTS, p.Timestamp)
		c.packets++
		c.wire += uint64(p.Length)
		c.b = pcapio.AppendRecord(c.b, s.format, p.Timestamp, p.Length, data)
	}
	if drops > 0 {
		s.dropsQueue.Add(drops)
	}
}

// takeBuffer makes s.cur an empty buffer, reporting false when none is free.
func (s *Stream) takeBuffer() bool {
	select {
	case b := <-s.free:
		b.reset()
		s.cur = b
		return true
	default:
	}
	if s.allocated < s.nbuf {
		// Buffers are made on demand so an idle stream costs little memory;
		// this happens at most nbuf times, never per packet.
		s.allocated++
		s.cur = &buffer{b: make([]byte, 0, s.ring.cfg.BufferBytes)}
		return true
	}
	return false
}

func (s *Stream) handOff() {
	if s.cur.packets > 0 {
		s.full <- s.cur
	} else {
		s.free <- s.cur
	}
	s.cur = nil
}

// Idle hands off a partial buffer whose first packet has waited longer than
// FlushInterval, so a quiet link still reaches disk promptly.
func (s *Stream) Idle(now int64) {
	if s.cur != nil && s.cur.packets > 0 && now-s.cur.first >= s.flushNs {
		s.handOff()
	}
}

// Close hands off the last buffer and tells the writer no more will come.
func (s *Stream) Close() {
	if s.cur != nil {
		s.handOff()
	}
	close(s.full)
}

// userDrops is every packet this stream lost in user space.
func (s *Stream) userDrops() uint64 { return s.dropsQueue.Load() + s.dropsWrite.Load() }

func (s *Stream) kernelDrops() uint64 {
	if s.kdrops == nil {
		return 0
	}
	return s.kdrops()
}

func (s *Stream) stats() StreamStats {
	return StreamStats{
		Interface:       s.iface,
		Worker:          s.worker,
		Packets:         s.packets.Load(),
		Bytes:           s.bytes.Load(),
		Files:           s.files.Load(),
		DropsQueueFull:  s.dropsQueue.Load(),
		DropsWriteError: s.dropsWrite.Load(),
	}
}
