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

// tsharkSummary is tshark's reading of a capture, counted from one pass of
// tshark -T fields: each count is the number of frames the display filter
// in its comment matches, a comparison of a field that occurs more than
// once in a frame (headers inside ICMP errors, both UDP ports) matching
// when any occurrence does, as in a display filter.
type tsharkSummary struct {
	packets, bytes uint64
	tcp            uint64 // ip.proto==6 || ipv6.nxt==6
	udp            uint64 // ip.proto==17 || ipv6.nxt==17
	icmp           uint64 // ip.proto==1
	arp            uint64 // arp
	dnsQueries     uint64 // dns.flags.response==0 && udp.port==53
	dnsResponses   uint64 // dns.flags.response==1 && udp.port==53
	dnsRcodes      [4]uint64
	resets         uint64 // tcp.flags.reset==1
	// flags counts the frames with each tcp.analysis class, by its field
	// (tcpFlagNames); retrans those with any retransmission class.
	flags   map[string]uint64
	retrans uint64
	// initialRTTs is tcp.analysis.initial_rtt of every TCP stream that has
	// one, sorted.
	initialRTTs []float64
}

func tsharkSummarize(t testing.TB, file string) *tsharkSummary {
	t.Helper()
	fields := []string{"frame.len", "frame.protocols", "ip.proto", "ipv6.nxt", "udp.port", "dns.flags.response", "dns.flags.rcode",
		"tcp.flags.reset", "tcp.stream", "tcp.analysis.initial_rtt"}
	const nfixed = 10
	for _, n := range tcpFlagNames {
		fields = append(fields, n.field)
	}
	s := &tsharkSummary{flags: map[string]uint64{}}
	rtts := map[string]float64{}
	// any reports whether one of the comma-separated occurrences is v.
	any := func(occ, v string) bool {
		for _, o := range strings.Split(occ, ",") {
			if o == v {
				return true
			}
		}
		return false
	}
	isTrue := func(occ string) bool { return any(occ, "1") || any(occ, "True") }
	b := func(ok bool) uint64 {
		if ok {
			return 1
		}
		return 0
	}
	for _, l := range tsharkFields(t, file, "", fields...) {
		v := strings.Split(l, "\t")
		if len(v) != len(fields) {
			t.Fatalf("tshark line %q: %d fields, want %d", l, len(v), len(fields))
		}
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			t.Fatalf("tshark frame.len %q", v[0])
		}
		s.packets++
		s.bytes += n
		protos, ipProto, ip6Next, udpPort, resp, rcode := v[1], v[2], v[3], v[4], v[5], v[6]
		s.tcp += b(any(ipProto, "6") || any(ip6Next, "6"))
		s.udp += b(any(ipProto, "17") || any(ip6Next, "17"))
		s.icmp += b(any(ipProto, "1"))
		s.arp += b(any(strings.ReplaceAll(protos, ":", ","), "arp"))
		if any(udpPort, "53") {
			s.dnsQueries += b(any(resp, "0") || any(resp, "False"))
			if any(resp, "1") || any(resp, "True") {
				s.dnsResponses++
				for rc := range s.dnsRcodes {
					s.dnsRcodes[rc] += b(any(rcode, strconv.Itoa(rc)))
				}
			}
		}
		s.resets += b(isTrue(v[7]))
		if v[8] != "" && v[9] != "" {
			if r, err := strconv.ParseFloat(strings.Split(v[9], ",")[0], 64); err == nil {
				rtts[strings.Split(v[8], ",")[0]] = r
			}
		}
		retrans := false
		for i, f := range tcpFlagNames {
			if v[nfixed+i] != "" {
				s.flags[f.field]++
				retrans = retrans || f.f&(flagRetrans|flagFast|flagSpurious) != 0
			}
		}
		s.retrans += b(retrans)
	}
	for _, r := range rtts {
		s.initialRTTs = append(s.initialRTTs, r)
	}
	sort.Float64s(s.initialRTTs)
	return s
}

// compareWithTshark checks a snapshot of file against tshark's reading of
// the same file: counts exactly, retransmissions and handshake RTT within
// 5 %.
func compareWithTshark(t *testing.T, file string, s *Snapshot) {
	t.Helper()
	c := &s.Totals
	ts := tsharkSummarize(t, file)
	exact := []struct {
		what string
		got  uint64
		want uint64
	}{
		{"packets", c.Packets, ts.packets},
		{"bytes", c.Bytes, ts.bytes},
		{"tcp packets", c.Protos[ProtoTCP].Packets, ts.tcp},
		{"udp packets", c.Protos[ProtoUDP].Packets, ts.udp},
		{"icmp packets", c.Protos[ProtoICMP].Packets, ts.icmp},
		{"arp packets", c.Protos[ProtoARP].Packets, ts.arp},
		{"dns queries", c.DNS.Queries, ts.dnsQueries},
		{"dns responses", c.DNS.Responses, ts.dnsResponses},
		{"dns NOERROR", c.DNS.Rcodes[0], ts.dnsRcodes[0]},
		{"dns SERVFAIL", c.DNS.Rcodes[2], ts.dnsRcodes[2]},
		{"dns NXDOMAIN", c.DNS.Rcodes[3], ts.dnsRcodes[3]},
		{"tcp RST segments", c.TCP.Resets, ts.resets},
		{"tcp zero windows", c.TCP.ZeroWindows, ts.flags["tcp.analysis.zero_window"]},
		// The classes below follow tcp_analyze_sequence_number's order and
		// conditions, so they are held to equality too.
		{"tcp window full", c.TCP.LowWindows, ts.flags["tcp.analysis.window_full"]},
		{"tcp duplicate ACKs", c.TCP.DupAcks, ts.flags["tcp.analysis.duplicate_ack"]},
		{"tcp fast retransmissions", c.TCP.FastRetransmissions, ts.flags["tcp.analysis.fast_retransmission"]},
		{"tcp spurious retransmissions", c.TCP.SpuriousRetransmits, ts.flags["tcp.analysis.spurious_retransmission"]},
		{"tcp out of order", c.TCP.OutOfOrder, ts.flags["tcp.analysis.out_of_order"]},
	}
	for _, e := range exact {
		if e.got != e.want {
			t.Errorf("%s: %s %d, tshark %d", filepath.Base(file), e.what, e.got, e.want)
		}
	}
	retrans := ts.retrans
	if !within(float64(c.TCP.Retransmissions), float64(retrans), 0.05) && absDiff(c.TCP.Retransmissions, retrans) > 1 {
		t.Errorf("%s: retransmissions %d, tshark %d", filepath.Base(file), c.TCP.Retransmissions, retrans)
	}
	rtts := ts.initialRTTs
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
