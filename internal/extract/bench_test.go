package extract

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/pcapio"
)

// BenchmarkExtract cuts a window out of a ring of 64 files from 4 workers
// (4-8 MiB each, read from page cache after the first iteration) and
// writes it to io.Discard: MB/s is ring bytes read per second. "mixed" has
// frame sizes from 64 to 1500 bytes (average ~780), "full" 1500-byte frames;
// "filtered" also runs a BPF filter over every packet.
func BenchmarkExtract(b *testing.B) {
	sizes := map[string]func(int) int{
		"mixed": func(i int) int { return 64 + (i*7919)%1437 },
		"full":  func(int) int { return 1500 },
	}
	for _, name := range []string{"mixed", "full"} {
		size := sizes[name]
		perFile := (4 << 20) / (size(0)/2 + size(1)/2 + 16)
		dir := b.TempDir()
		t0 := time.Now().UnixNano()
		index, _ := writeRing(b, dir, pcapio.FormatPcap, 4, 16, perFile, t0, time.Microsecond, size)
		root, err := os.OpenRoot(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, filter := range []string{"", "udp and dst port 53"} {
			label := name
			if filter != "" {
				label += "/filtered"
			}
			b.Run(label, func(b *testing.B) {
				prog, err := Compile(filter, nil, index[0].LinkType)
				if err != nil {
					b.Fatal(err)
				}
				req := Request{From: t0, To: t0 + int64(time.Hour), Match: prog}
				res, err := Extract(context.Background(), io.Discard, Dir(root), index, req) // warm the page cache
				if err != nil {
					b.Fatal(err)
				}
				var in int64
				for _, f := range index {
					in += f.Bytes
				}
				b.SetBytes(in)
				b.ReportMetric(float64(res.Bytes)/float64(in), "out/in")
				b.ReportMetric(float64(res.Packets), "packets/op")
				b.ResetTimer()
				for b.Loop() {
					if _, err := Extract(context.Background(), io.Discard, Dir(root), index, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		root.Close()
	}
}
