package analysis

import (
	"testing"
)

// TestFlowRecords checks the OnWindow hook: every IP packet of a window is
// in exactly one flow record, the bound leaves records out and says so, and
// a TCP client is the sender of the SYN.
func TestFlowRecords(t *testing.T) {
	for _, bound := range []int{1 << 20, 3} {
		var ip, inRecords, omitted uint64
		var windows int
		eng, err := NewEngine(Config{FlowRecords: bound, OnWindow: func(w *Window, flows []FlowRecord, om uint64) {
			windows++
			ip += w.Counters.IPv4 + w.Counters.IPv6
			omitted += om
			if len(flows) > bound {
				t.Errorf("window %v: %d records, bound %d", w.Start, len(flows), bound)
			}
			for _, r := range flows {
				inRecords += uint64(r.Packets[0]) + uint64(r.Packets[1])
				if r.Proto == 6 && r.SYN && r.Packets[0] == 0 && r.New {
					t.Errorf("new TCP flow %v:%d -> %v:%d: client sent nothing", r.Client, r.ClientPort, r.Server, r.ServerPort)
				}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := eng.NewAnalyzer(0)
		if err != nil {
			t.Fatal(err)
		}
		a.HandleBlock(loadBlock(t, "testdata/resp_1_benchmark.pcap"))
		a.Close()
		if windows == 0 || ip == 0 {
			t.Fatalf("bound %d: %d windows, %d IP packets", bound, windows, ip)
		}
		switch {
		case bound > 3 && (inRecords != ip || omitted != 0):
			t.Errorf("records hold %d packets of %d IP packets, %d flows omitted", inRecords, ip, omitted)
		case bound == 3 && omitted == 0:
			t.Errorf("bound 3: nothing omitted")
		}
	}
}
