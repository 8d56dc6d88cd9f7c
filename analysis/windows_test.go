package analysis

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"github.com/sonde-project/sonde/capture"
)

// TestWindowsHeapFlat runs two workers over 60 windows of traffic among
// 65 536 UDP flows (the daemon's soak traffic: one destination, a source
// port per flow) with flow records on, as the daemon configures them, and
// checks that the heap in use after window 50 is within a fixed bound of
// the heap in use after window 10. KeepWindows is 8 so that the windows a
// snapshot legitimately keeps are at their bound before window 10.
//
// The garbage collector is off while it runs. In the daemon the flow table
// (hundreds of MB, allocated up front, mostly untouched) puts the next
// collection hundreds of MB away, so whatever a window allocates stays
// resident for minutes: per-window garbage grows resident memory as a leak
// would. With collection off, heap growth between two windows is exactly
// that garbage plus anything retained.
func TestWindowsHeapFlat(t *testing.T) {
	const (
		workers   = 2
		flows     = 1 << 16
		perFlow   = 2 // packets per flow per window
		windows   = 60
		recsPer   = 1 << 15 // FlowRecords per worker, as the daemon has it
		keep      = 8       // KeepWindows: the snapshot's windows are at their bound by window 10
		blockSize = 1024
		windowNs  = int64(time.Second)
	)
	// What each window may leave behind: the Window and the Snapshot it
	// publishes, immutable so new each time, each a Counters (52 KiB, its
	// six histograms) plus small top-K lists; a third Counters is slack.
	// Before flow-record buffers were reused it was about 16 MiB a window.
	boundBytes := int64(40 * 3 * unsafe.Sizeof(Counters{}))
	var hookFlows int
	eng, err := NewEngine(Config{
		Workers: workers, Window: time.Second, MaxFlows: 1 << 18, FlowRecords: recsPer, KeepWindows: keep,
		OnWindow: func(w *Window, fl []FlowRecord, omitted uint64) { hookFlows = len(fl) + int(omitted) },
	})
	if err != nil {
		t.Fatal(err)
	}
	as := make([]*Analyzer, workers)
	for i := range as {
		if as[i], err = eng.NewAnalyzer(i); err != nil {
			t.Fatal(err)
		}
	}
	arena := make([]byte, blockSize*64)
	blk := &capture.Block{LinkType: 1, Packets: make([]capture.Packet, blockSize)}

	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	var at10, at50 uint64
	ts := int64(1_700_000_000) * windowNs
	for win := 0; win < windows; win++ {
		start := ts + int64(win)*windowNs
		// Each worker gets half of the flows; packets are spread evenly over
		// the window.
		per := flows / workers * perFlow
		for w, a := range as {
			n := 0
			for n < per {
				blk.Packets = blk.Packets[:0]
				for i := 0; i < blockSize && n < per; i++ {
					f := w*flows/workers + n%(flows/workers)
					buf := arena[i*64 : (i+1)*64]
					fr := floodFrame(buf, 0xc0a80001, 0xc0a80002, uint16(f), 500, nil)
					blk.Packets = append(blk.Packets, capture.Packet{
						Timestamp: start + int64(n)*(windowNs/int64(per)), Length: 60, Data: fr[:60]})
					n++
				}
				a.HandleBlock(blk)
			}
		}
		switch win {
		case 10:
			at10 = heap()
		case 50:
			at50 = heap()
		}
	}
	for _, a := range as {
		a.Close()
	}
	s := eng.Snapshot()
	growth := int64(at50) - int64(at10)
	t.Logf("heap in use after window 10: %.1f MiB, after window 50: %.1f MiB (growth %.2f MiB, bound %.1f MiB); %d windows published, last with %d flows, %d active",
		float64(at10)/(1<<20), float64(at50)/(1<<20), float64(growth)/(1<<20), float64(boundBytes)/(1<<20),
		len(s.Windows), hookFlows, s.Last.ActiveFlows)
	if s.Totals.NewFlows != flows || s.Last.ActiveFlows != flows {
		t.Fatalf("%d new flows, %d active at the end: want %d", s.Totals.NewFlows, s.Last.ActiveFlows, flows)
	}
	if growth > boundBytes {
		t.Errorf("heap in use grew by %.1f MiB between window 10 and window 50, over the bound of %.1f MiB",
			float64(growth)/(1<<20), float64(boundBytes)/(1<<20))
	}
}
