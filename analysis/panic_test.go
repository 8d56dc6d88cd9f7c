package analysis

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/netnstest"
)

// udpBlock builds a block of n Ethernet/IPv4/UDP frames, one per flow
// (source port first+i), one microsecond apart from ts.
func udpBlock(n int, first uint16, ts int64) *capture.Block {
	b := &capture.Block{LinkType: 1}
	for i := 0; i < n; i++ {
		f := netnstest.Flow{
			SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
			Src:    netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"),
			SrcPort: first + uint16(i), DstPort: 9,
		}
		fr := f.Frame(0, 100)
		b.Packets = append(b.Packets, capture.Packet{Timestamp: ts + int64(i)*1000, Length: uint32(len(fr)), Data: fr})
	}
	return b
}

// TestAnalyzerRecoversPanics breaks the flow table so that the packets of
// about half the flows panic inside analysis, and checks that every packet
// is still counted, the others are analysed (those after a panicking packet
// in the same block too), every panic is counted, and one message is
// logged with the first panicking packet's time.
func TestAnalyzerRecoversPanics(t *testing.T) {
	eng, err := NewEngine(Config{Workers: 1, MaxFlows: 1 << 12, KeepWindows: 10})
	if err != nil {
		t.Fatal(err)
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	a.SetLogger(zap.New(core))
	// Keep the mask but halve the index: a key hashing into the upper half
	// reads past the end of the slice.
	a.flows.index = a.flows.index[:len(a.flows.index)/2]

	const blocks, perBlock = 4, 500
	ts := int64(1_700_000_000e9)
	for i := 0; i < blocks; i++ {
		a.HandleBlock(udpBlock(perBlock, uint16(1000+i*perBlock), ts+int64(i)*1e6))
	}
	a.Close()
	c := eng.Snapshot().Totals
	if c.Packets != blocks*perBlock {
		t.Errorf("%d packets counted, want %d", c.Packets, blocks*perBlock)
	}
	if c.AnalyzerPanics == 0 || c.AnalyzerPanics >= c.Packets {
		t.Fatalf("%d panics of %d packets: the injection did not work", c.AnalyzerPanics, c.Packets)
	}
	if c.NewFlows+c.AnalyzerPanics != c.Packets {
		t.Errorf("new flows %d + panics %d != packets %d: packets after a panic were not analysed", c.NewFlows, c.AnalyzerPanics, c.Packets)
	}
	if logs.Len() != 1 {
		t.Fatalf("%d log entries, want 1", logs.Len())
	}
	e := logs.All()[0]
	f := e.ContextMap()
	if !strings.Contains(e.Message, "panicked") || f["packet_time_ns"] == nil || !strings.Contains(f["panic"].(string), "index out of range") {
		t.Errorf("log entry %q %v", e.Message, f)
	}
	t.Logf("%d panics recovered of %d packets; logged: %s at %v", c.AnalyzerPanics, c.Packets, f["panic"], f["packet_time"])
}
