package exporter

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/decode"
)

type fakeAnalysis struct{ s *analysis.Snapshot }

func (f fakeAnalysis) Snapshot() *analysis.Snapshot { return f.s }

type fakeAnomalies []uint64

func (f fakeAnomalies) Counts() ([]uint64, uint64) { return f, 3 }

// analysisFixture is a fixed snapshot; talkers sets how many top talkers
// its last window lists (a busy node).
func analysisFixture(talkers int) *analysis.Snapshot {
	var c analysis.Counters
	c.Packets, c.Bytes = 100_000, 80_000_000
	for i := range c.Protos {
		c.Protos[i] = analysis.PacketsBytes{Packets: uint64(1000 * (i + 1)), Bytes: uint64(900_000 * (i + 1))}
	}
	c.Malformed[decode.Reason(1)] = 7
	c.Tunnels[decode.Tunnel(1)] = 42
	c.FragFirst, c.FragNonFirst = 3, 9
	c.ICMPUnreachable, c.ICMPFragNeeded, c.ICMPPacketTooBig, c.ICMPTimeExceeded = 20, 2, 1, 5
	c.Drops = 11
	c.NewFlows, c.ExpiredFlows, c.DroppedFlows = 5000, 4000, 12
	tc := &c.TCP
	tc.Segments, tc.Opened, tc.Established, tc.Closed, tc.ConnResets, tc.Resets = 60_000, 900, 850, 800, 40, 45
	tc.Retransmissions, tc.FastRetransmissions, tc.RTORetransmissions, tc.SpuriousRetransmits = 300, 120, 60, 10
	tc.SYNRetrans, tc.DupAcks, tc.OutOfOrder, tc.ZeroWindows, tc.LowWindows, tc.KeepAlives = 8, 400, 30, 2, 6, 15
	for i := range 100 {
		tc.HandshakeRTT.Observe(int64(i+1) * int64(time.Millisecond))
		tc.DataRTT.Observe(int64(i+1) * int64(2*time.Millisecond))
		c.DNS.Latency.Observe(int64(i+1) * int64(300*time.Microsecond))
		c.Jitter.Observe(int64(i) * int64(100*time.Microsecond))
	}
	c.DNS.Queries, c.DNS.Responses, c.DNS.Timeouts, c.DNS.Unsolicited = 500, 490, 10, 1
	c.DNS.Rcodes[0], c.DNS.Rcodes[2], c.DNS.Rcodes[3] = 450, 10, 30
	start := time.Unix(1_700_000_000, 0).UTC()
	w := &analysis.Window{
		Start: start, End: start.Add(10 * time.Second), Counters: c, ActiveFlows: 1234,
		PacketsPerSecond: 10_000, BitsPerSecond: 64e6, NewFlowsPerSecond: 500,
		Health: analysis.Health{Score: 82.5, RetransmissionPenalty: 10, DNSPenalty: 5, DropPenalty: 2.5},
	}
	for i := range talkers {
		w.TopTalkers = append(w.TopTalkers, analysis.Talker{Address: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Packets: uint64(1000 - i), Bytes: uint64(1_000_000 - i)})
	}
	return &analysis.Snapshot{Start: start, End: w.End, Totals: c, Windows: []*analysis.Window{w}, Last: w}
}

func seriesCount(out []byte) int {
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// TestAnalysisGolden compares the analysis metrics of a fixed snapshot with
// testdata/analysis.golden (go test ./exporter -update rewrites it) and
// lints them with promtool.
func TestAnalysisGolden(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewAnalysisCollector(fakeAnalysis{analysisFixture(3)}, fakeAnomalies{4, 1, 0, 0, 2, 0, 0, 0},
		AnalysisOptions{TopTalkers: 2, Window: 10 * time.Second}))
	got := exposition(t, reg)
	const golden = "testdata/analysis.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./exporter -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s (run with -update after checking the change):\n%s", golden, got)
	}
	promtoolCheck(t, got)
}

func promtoolCheck(t *testing.T, exp []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH; CI must lint metrics (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH; install the prometheus package to lint metrics")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestAnalysisSeriesBound: on a busy snapshot (500 top talkers), the
// default exposition's series count does not depend on the traffic, and
// even with top talkers asked for beyond the hard limit it stays under
// 2000, with the refused series counted.
func TestAnalysisSeriesBound(t *testing.T) {
	busy := fakeAnalysis{analysisFixture(500)}
	count := func(src fakeAnalysis, opts AnalysisOptions) (int, string) {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewAnalysisCollector(src, fakeAnomalies(make([]uint64, 8)), opts))
		out := exposition(t, reg)
		return seriesCount(out), string(out)
	}
	quietN, _ := count(fakeAnalysis{analysisFixture(3)}, AnalysisOptions{})
	busyN, out := count(busy, AnalysisOptions{})
	if quietN != busyN || strings.Contains(out, "sonde_top_talker") {
		t.Errorf("default exposition: %d series, top talkers present %v", busyN, strings.Contains(out, "sonde_top_talker"))
	}
	if busyN >= 2000 {
		t.Errorf("default: %d series", busyN)
	}
	n, out := count(busy, AnalysisOptions{TopTalkers: 10_000})
	if n >= 2000 || n != busyN+2*MaxTopTalkerSeries {
		t.Errorf("top talkers 10000: %d series, want %d", n, busyN+2*MaxTopTalkerSeries)
	}
	if !strings.Contains(out, "sonde_exporter_series_refused_total 800") {
		t.Errorf("refused series not counted:\n%s", out[strings.Index(out, "sonde_exporter_series_refused_total"):][:200])
	}
	t.Logf("default %d series, with top talkers %d", busyN, n)
}

// TestAnalysisBeforeFirstWindow: an empty snapshot exports zeros, a
// perfect health score, and no top talkers.
func TestAnalysisBeforeFirstWindow(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewAnalysisCollector(fakeAnalysis{&analysis.Snapshot{}}, nil, AnalysisOptions{TopTalkers: 5}))
	out := string(exposition(t, reg))
	for _, want := range []string{"sonde_health_score 100", "sonde_flows_active 0", `sonde_analysis_packets_total{protocol="tcp"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if strings.Contains(out, "sonde_anomaly_events_total") || strings.Contains(out, "sonde_top_talker") {
		t.Error("anomaly or top-talker series without a source or a window")
	}
}
