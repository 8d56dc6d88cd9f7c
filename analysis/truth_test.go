package analysis

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/pcapio"
)

// analyzeFile runs a capture file through one Analyzer and returns the
// final snapshot.
func analyzeFile(t testing.TB, path string) *Snapshot {
	t.Helper()
	eng, err := NewEngine(Config{Workers: 1, KeepWindows: 100000, MaxFlows: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapio.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(r, a, nil); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	a.Close()
	return eng.Snapshot()
}

func needTshark(t testing.TB) {
	if _, err := exec.LookPath("tshark"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark is not installed")
		}
		t.Skip("tshark is not installed")
	}
}

// tsharkFields returns the lines tshark prints for filter and fields.
func tsharkFields(t testing.TB, file, filter string, fields ...string) []string {
	t.Helper()
	args := []string{"-n", "-r", file, "-T", "fields"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func tsharkCount(t testing.TB, file, filter string) uint64 {
	return uint64(len(tsharkFields(t, file, filter, "frame.number")))
}

// tsharkInitialRTTs returns tshark's initial RTT of every TCP stream that
// has one, sorted.
func tsharkInitialRTTs(t testing.TB, file string) []float64 {
	seen := map[string]float64{}
	for _, l := range tsharkFields(t, file, "tcp.analysis.initial_rtt", "tcp.stream", "tcp.analysis.initial_rtt") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err == nil {
			seen[f[0]] = v
		}
	}
	var out []float64
	for _, v := range seen {
		out = append(out, v)
	}
	sort.Float64s(out)
	return out
}

func nearestRank(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	r := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(r, 0)]
}

func within(got, want, rel float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(got-want)/want <= rel
}

// compareWithTshark checks a snapshot of file against tshark's reading of
// the same file: counts exactly, retransmissions and handshake RTT within
// 5 %.
func compareWithTshark(t *testing.T, file string, s *Snapshot) {
	t.Helper()
	c := &s.Totals
	var bytes uint64
	lens := tsharkFields(t, file, "", "frame.len")
	for _, l := range lens {
		n, _ := strconv.ParseUint(l, 10, 64)
		bytes += n
	}
	exact := []struct {
		what string
		got  uint64
		want uint64
	}{
		{"packets", c.Packets, uint64(len(lens))},
		{"bytes", c.Bytes, bytes},
		{"tcp packets", c.Protos[ProtoTCP].Packets, tsharkCount(t, file, "ip.proto==6 || ipv6.nxt==6")},
		{"udp packets", c.Protos[ProtoUDP].Packets, tsharkCount(t, file, "ip.proto==17 || ipv6.nxt==17")},
		{"icmp packets", c.Protos[ProtoICMP].Packets, tsharkCount(t, file, "ip.proto==1")},
		{"arp packets", c.Protos[ProtoARP].Packets, tsharkCount(t, file, "arp")},
		{"dns queries", c.DNS.Queries, tsharkCount(t, file, "dns.flags.response==0 && udp.port==53")},
		{"dns responses", c.DNS.Responses, tsharkCount(t, file, "dns.flags.response==1 && udp.port==53")},
		{"dns NOERROR", c.DNS.Rcodes[0], tsharkCount(t, file, "dns.flags.response==1 && dns.flags.rcode==0 && udp.port==53")},
		{"dns SERVFAIL", c.DNS.Rcodes[2], tsharkCount(t, file, "dns.flags.response==1 && dns.flags.rcode==2 && udp.port==53")},
		{"dns NXDOMAIN", c.DNS.Rcodes[3], tsharkCount(t, file, "dns.flags.response==1 && dns.flags.rcode==3 && udp.port==53")},
		{"tcp RST segments", c.TCP.Resets, tsharkCount(t, file, "tcp.flags.reset==1")},
		{"tcp zero windows", c.TCP.ZeroWindows, tsharkCount(t, file, "tcp.analysis.zero_window")},
		// The classes below follow tcp_analyze_sequence_number's order and
		// conditions, so they are held to equality too.
		{"tcp window full", c.TCP.LowWindows, tsharkCount(t, file, "tcp.analysis.window_full")},
		{"tcp duplicate ACKs", c.TCP.DupAcks, tsharkCount(t, file, "tcp.analysis.duplicate_ack")},
		{"tcp fast retransmissions", c.TCP.FastRetransmissions, tsharkCount(t, file, "tcp.analysis.fast_retransmission")},
		{"tcp spurious retransmissions", c.TCP.SpuriousRetransmits, tsharkCount(t, file, "tcp.analysis.spurious_retransmission")},
		{"tcp out of order", c.TCP.OutOfOrder, tsharkCount(t, file, "tcp.analysis.out_of_order")},
	}
	for _, e := range exact {
		if e.got != e.want {
			t.Errorf("%s: %s %d, tshark %d", filepath.Base(file), e.what, e.got, e.want)
		}
	}
	retrans := tsharkCount(t, file, "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || tcp.analysis.spurious_retransmission")
	if !within(float64(c.TCP.Retransmissions), float64(retrans), 0.05) && absDiff(c.TCP.Retransmissions, retrans) > 1 {
		t.Errorf("%s: retransmissions %d, tshark %d", filepath.Base(file), c.TCP.Retransmissions, retrans)
	}
	rtts := tsharkInitialRTTs(t, file)
	if uint64(len(rtts)) != c.TCP.HandshakeRTT.Count {
		t.Errorf("%s: %d handshake RTTs, tshark %d", filepath.Base(file), c.TCP.HandshakeRTT.Count, len(rtts))
	}
	// tshark prints microseconds: allow that rounding on top of 5 %.
	for _, q := range []float64{0.5, 0.95} {
		if got, want := c.TCP.HandshakeRTT.Quantile(q).Seconds(), nearestRank(rtts, q); math.Abs(got-want) > 0.05*want+1e-6 {
			t.Errorf("%s: handshake RTT p%.0f %v, tshark %v", filepath.Base(file), q*100, got, want)
		}
	}
	t.Logf("%s: %d packets, %d bytes, tcp %d, udp %d, dns %d/%d, retrans %d (tshark %d), handshakes %d p50 %v p95 %v (tshark %v %v)",
		filepath.Base(file), c.Packets, c.Bytes, c.Protos[ProtoTCP].Packets, c.Protos[ProtoUDP].Packets, c.DNS.Queries, c.DNS.Responses,
		c.TCP.Retransmissions, retrans, c.TCP.HandshakeRTT.Count, c.TCP.HandshakeRTT.Quantile(0.5), c.TCP.HandshakeRTT.Quantile(0.95),
		time.Duration(nearestRank(rtts, 0.5)*1e9), time.Duration(nearestRank(rtts, 0.95)*1e9))
	t.Logf("%s: fast %d, spurious %d, out of order %d, dup ACKs %d, zero windows %d, window full %d",
		filepath.Base(file), c.TCP.FastRetransmissions, c.TCP.SpuriousRetransmits, c.TCP.OutOfOrder, c.TCP.DupAcks, c.TCP.ZeroWindows, c.TCP.LowWindows)
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestAgainstTshark replays the captures under testdata/ (real TCP and DNS
// traffic from the tcpdump corpus) and checks every count against tshark.
func TestAgainstTshark(t *testing.T) {
	needTshark(t)
	files, _ := filepath.Glob("testdata/*.pcap*")
	if len(files) == 0 {
		t.Fatal("no captures in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			compareWithTshark(t, f, analyzeFile(t, f))
		})
	}
}

var _ = bytes.Equal
var _ = fmt.Sprint
