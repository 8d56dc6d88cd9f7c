package report

import (
	"context"
	"io"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/ring"
)

// RingSource is a report over the packets of the ring in [from, to) (unix
// ns) that match accepts (nil: all): files are the ring's entries
// overlapping the window, read through root by extract, as /api/v1/pcap
// serves them. name is the input as the document names it.
func RingSource(src extract.Opener, files []ring.FileInfo, from, to int64, match bpf.Program, name string) Source {
	var size int64
	for _, f := range files {
		// The part of each file inside the window, assuming an even rate.
		lo, hi := max(f.First, from), min(f.Last, to)
		switch {
		case f.Last <= f.First:
			size += f.Bytes
		case hi > lo:
			size += int64(float64(f.Bytes) * float64(hi-lo) / float64(f.Last-f.First))
		}
	}
	return Source{Kind: "ring", Name: name, Size: size, Open: func(ctx context.Context) (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			_, err := extract.Extract(ctx, pw, src, files, extract.Request{From: from, To: to, Match: match})
			pw.CloseWithError(err)
		}()
		return pr, nil
	}}
}
