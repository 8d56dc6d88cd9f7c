package analysis

import (
	"errors"
	"io"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// Replay feeds every packet of r to a, in blocks built the way capture
// hands them over, so a file runs through exactly the live path. filter,
// when not nil, drops the packets it rejects before analysis. It returns
// how many packets were fed, and the reader's error unless the file ended
// cleanly; everything read before the damage has been analysed.
func Replay(r *pcapio.Reader, a *Analyzer, filter bpf.Program) (uint64, error) {
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
	for {
		rec, err := r.Next()
		if err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		if filter != nil && filter.Match(rec.Data, int(rec.Length)) == 0 {
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
