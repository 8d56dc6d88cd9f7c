package analysis

import (
	"os"
	"testing"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// loadBlock reads a capture file into one block, copying the data.
func loadBlock(t testing.TB, path string) *capture.Block {
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no capture to benchmark: %v", err)
	}
	defer f.Close()
	r, err := pcapio.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b := &capture.Block{LinkType: r.LinkType()}
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		b.Packets = append(b.Packets, capture.Packet{Timestamp: rec.Timestamp, Length: rec.Length, Data: append([]byte(nil), rec.Data...)})
	}
	return b
}

// BenchmarkAnalyzerPacket measures the whole per-packet path (decode, flow
// table, TCP and DNS analysis) over real captures replayed in a loop, with
// timestamps advanced so windows close as they would live. Set
// SONDE_BENCH_PCAP to benchmark another file.
func BenchmarkAnalyzerPacket(b *testing.B) {
	path := os.Getenv("SONDE_BENCH_PCAP")
	if path == "" {
		path = "testdata/resp_1_benchmark.pcap"
	}
	blk := loadBlock(b, path)
	n := len(blk.Packets)
	span := blk.Packets[n-1].Timestamp - blk.Packets[0].Timestamp + 1
	eng, err := NewEngine(Config{Workers: 1, MaxFlows: 1 << 16, KeepWindows: 1})
	if err != nil {
		b.Fatal(err)
	}
	a, _ := eng.NewAnalyzer(0)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += n {
		a.HandleBlock(blk)
		for i := range blk.Packets {
			blk.Packets[i].Timestamp += span
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
	a.Close()
}

// TestAnalyzerDoesNotAllocate replays a capture many times and requires the
// per-packet path to allocate nothing (windows closing may, once per window).
func TestAnalyzerDoesNotAllocate(t *testing.T) {
	blk := loadBlock(t, "testdata/resp_1_benchmark.pcap")
	eng, err := NewEngine(Config{Workers: 1, MaxFlows: 1 << 12, Window: 3600e9})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := eng.NewAnalyzer(0)
	a.HandleBlock(blk) // first window opens, flows created
	allocs := testing.AllocsPerRun(20, func() { a.HandleBlock(blk) })
	if allocs != 0 {
		t.Errorf("%v allocations per block of %d packets", allocs, len(blk.Packets))
	}
}
