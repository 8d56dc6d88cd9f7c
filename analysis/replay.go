package analysis

import (
	"errors"
	"io"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// Replay feeds every packet of r to a, in blocks built the way capture
// hands them over, so a file runs through exactly the live path. A pcapng
// stream may mix interfaces of different link types: a block holds packets
// of one link type, so a change of link type starts a new block. filter,
// when not nil, gives the program for a link type (nil: keep all) and
// drops the packets it rejects before analysis; it is asked once per link
// type. Replay returns how many packets were fed, and the reader's or
// filter's error unless the file ended cleanly; everything read before the
// error has been analysed.
func Replay(r *pcapio.Reader, a *Analyzer, filter func(capture.LinkType) (bpf.Program, error)) (uint64, error) {
	const (
		blockPackets = 1024
		arenaBytes   = 4 << 20
	)
	b := &capture.Block{LinkType: r.LinkType(), Packets: make([]capture.Packet, 0, blockPackets)}
	arena := make([]byte, 0, arenaBytes)
	var n uint64
	flush := func() {
		if len(b.Packets) > 0 {
			a.HandleBlock(b)
			n += uint64(len(b.Packets))
		}
		b.Packets = b.Packets[:0]
		arena = arena[:0]
	}
	progs := map[capture.LinkType]bpf.Program{}
	program := func(lt capture.LinkType) (bpf.Program, error) {
		if filter == nil {
			return nil, nil
		}
		p, ok := progs[lt]
		if !ok {
			var err error
			if p, err = filter(lt); err != nil {
				return nil, err
			}
			progs[lt] = p
		}
		return p, nil
	}
	prog, err := program(b.LinkType)
	if err != nil {
		return 0, err
	}
	iface := 0 // the interface the current block's link type is from
	for {
		rec, err := r.Next()
		if err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		if rec.Interface != iface {
			iface = rec.Interface
			if ifc, ok := r.Interface(iface); ok && ifc.LinkType != b.LinkType {
				flush()
				b.LinkType = ifc.LinkType
				if prog, err = program(b.LinkType); err != nil {
					return n, err
				}
			}
		}
		if prog != nil && prog.Match(rec.Data, int(rec.Length)) == 0 {
			continue
		}
		if len(b.Packets) == blockPackets || len(arena)+len(rec.Data) > cap(arena) {
			flush()
		}
		off := len(arena)
		arena = append(arena, rec.Data...)
		b.Packets = append(b.Packets, capture.Packet{Timestamp: rec.Timestamp, Length: rec.Length, Data: arena[off:len(arena):len(arena)]})
	}
}
