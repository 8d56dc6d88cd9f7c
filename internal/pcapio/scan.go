package pcapio

import (
	"errors"
	"fmt"
	"io"

	"github.com/sonde-project/sonde/capture"
)

// ScanResult summarises a capture file up to its last whole record.
type ScanResult struct {
	Format   Format
	LinkType capture.LinkType
	Packets  uint64
	// FirstTS and LastTS are the times of the first and last packet in Unix
	// nanoseconds, 0 when there is none.
	FirstTS, LastTS int64
	// WireBytes sums the packets' lengths on the wire.
	WireBytes uint64
	// ValidBytes is the offset just past the last whole record (or the file
	// header when there is none): truncating the file there leaves a valid
	// file holding every whole packet.
	ValidBytes int64
}

// Scan reads the record headers of the first size bytes of r, seeking over
// packet data. A file cut inside its last record is not an error: the
// result then has ValidBytes < size. Damage (a record that cannot be right)
// is returned as an error together with the summary of everything before it.
func Scan(r io.ReaderAt, size int64) (ScanResult, error) {
	rd := &Reader{src: source{ra: r, size: size}, skip: true}
	if err := rd.readHeader(); err != nil {
		return ScanResult{}, err
	}
	res := ScanResult{Format: rd.format, LinkType: rd.linkType}
	for {
		rec, err := rd.Next()
		res.ValidBytes = rd.good
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return res, nil
			}
			return res, fmt.Errorf("pcapio: scanning: %w", err)
		}
		if res.Packets == 0 {
			res.FirstTS = rec.Timestamp
			res.LinkType = rd.linkType
		}
		res.Packets++
		res.LastTS = rec.Timestamp
		res.WireBytes += uint64(rec.Length)
	}
}
