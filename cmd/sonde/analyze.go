package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/analysis/decode"
	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/internal/pcapio"
)

const analyzeUsage = `Usage: sonde analyze [flags] FILE...

Analyse pcap or pcapng files with the same engine as live capture and print
a summary. Files are read in the order given, as one capture.

Flags:
  --format text|json  output format (default text)
  --window D          reporting window, 1s to 1h (default 10s)
  --filter EXPR       tcpdump filter expression; only matching packets count
`

// analyzeCmd runs 'sonde analyze'. It returns 2 on bad usage, 1 when a file
// cannot be read to its end (after printing what was read before the
// damage), 0 otherwise.
func analyzeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sonde analyze", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", "text", "")
	window := fs.Duration("window", analysis.DefaultWindow, "")
	filterExpr := fs.String("filter", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, analyzeUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "sonde analyze: %v\n\n%s", err, analyzeUsage)
		return exitUsage
	}
	files := fs.Args()
	if len(files) == 0 {
		fmt.Fprintf(stderr, "sonde analyze: no capture file given\n\n%s", analyzeUsage)
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "sonde analyze: --format %q: want text or json\n", *format)
		return exitUsage
	}
	// Anomaly detection with the default thresholds, on every window.
	det := anomaly.New(anomaly.DefaultThresholds())
	found := []jsonAnomaly{}
	eng, err := analysis.NewEngine(analysis.Config{
		Workers:     1,
		Window:      *window,
		KeepWindows: 100000,
		// A file is read by one worker: give it the whole table budget.
		MaxFlows:    analysis.DefaultMaxFlows,
		FlowRecords: 1 << 20,
		OnWindow: func(w *analysis.Window, flows []analysis.FlowRecord, _ uint64) {
			for _, e := range det.Window(w, flows) {
				found = append(found, jsonAnomaly{Kind: string(e.Kind), Start: e.Start, End: e.End, Source: e.Source, Target: e.Target})
			}
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "sonde analyze: --window %v: %v\n", *window, err)
		return exitUsage
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		fmt.Fprintf(stderr, "sonde analyze: %v\n", err)
		return exitFailed
	}

	status := exitOK
	var failure string
	for _, name := range files {
		if err := replayFile(name, a, *filterExpr); err != nil {
			var se *bpf.SyntaxError
			if errors.As(err, &se) {
				fmt.Fprintf(stderr, "sonde analyze: --filter: %v\n", err)
				return exitUsage
			}
			failure = fmt.Sprintf("sonde analyze: %s: %v", name, err)
			status = exitFailed
			break
		}
	}
	a.Close()
	snap := eng.Snapshot()
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		r := report(snap, files)
		r.Anomalies = found
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "sonde analyze: write the report: %v\n", err)
			return exitFailed
		}
	} else {
		writeText(stdout, snap, files)
	}
	if failure != "" {
		fmt.Fprintln(stderr, failure)
	}
	return status
}

// replayFile analyses one file; a filter is compiled for the file's own
// link type.
func replayFile(name string, a *analysis.Analyzer, filterExpr string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapio.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a readable pcap or pcapng file: %w", err)
	}
	var prog bpf.Program
	if filterExpr != "" {
		ins, err := bpf.Compile(filterExpr, bpf.LinkType(r.LinkType()), pcapio.MaxRecordBytes)
		if err != nil {
			return err
		}
		prog = ins
	}
	_, err = analysis.Replay(r, a, prog)
	if err != nil {
		return fmt.Errorf("damaged after %d bytes: %w", r.Offset(), err)
	}
	return nil
}

// The JSON report. Durations are in seconds; times RFC 3339 in UTC.
type jsonReport struct {
	Files       []string                `json:"files"`
	Packets     uint64                  `json:"packets"`
	Bytes       uint64                  `json:"bytes"`
	Start       *time.Time              `json:"start"`
	End         *time.Time              `json:"end"`
	Duration    float64                 `json:"duration_seconds"`
	Protocols   map[string]jsonCount    `json:"protocols"`
	Malformed   map[string]uint64       `json:"malformed"`
	Tunnels     map[string]uint64       `json:"tunnels"`
	Fragments   map[string]uint64       `json:"fragments"`
	ICMP        map[string]uint64       `json:"icmp"`
	Flows       map[string]uint64       `json:"flows"`
	TCP         jsonTCP                 `json:"tcp"`
	DNS         jsonDNS                 `json:"dns"`
	UDP         map[string]jsonHist     `json:"udp"`
	TopTalkers  []jsonTalker            `json:"top_talkers"`
	TopConvs    []analysis.Conversation `json:"top_conversations"`
	TopPorts    []analysis.Port         `json:"top_ports"`
	Anomalies   []jsonAnomaly           `json:"anomalies"`
	HealthScore float64                 `json:"health_score"`
	Health      analysis.Health         `json:"health"`
	Windows     []jsonWindow            `json:"windows"`
}

type jsonCount struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

type jsonHist struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
}

func hist(h *analysis.Histogram) jsonHist {
	return jsonHist{Count: h.Count, Mean: h.Mean().Seconds(), P50: h.Quantile(0.5).Seconds(), P95: h.Quantile(0.95).Seconds(), P99: h.Quantile(0.99).Seconds()}
}

type jsonTCP struct {
	Connections         uint64   `json:"connections"`
	Established         uint64   `json:"established"`
	Closed              uint64   `json:"closed"`
	Resets              uint64   `json:"resets"`
	ConnectionResets    uint64   `json:"connection_resets"`
	Segments            uint64   `json:"segments"`
	DataSegments        uint64   `json:"data_segments"`
	Retransmissions     uint64   `json:"retransmissions"`
	FastRetransmissions uint64   `json:"fast_retransmissions"`
	RTORetransmissions  uint64   `json:"rto_retransmissions"`
	SpuriousRetransmits uint64   `json:"spurious_retransmissions"`
	SYNRetransmissions  uint64   `json:"syn_retransmissions"`
	OutOfOrder          uint64   `json:"out_of_order"`
	DupAcks             uint64   `json:"duplicate_acks"`
	ZeroWindows         uint64   `json:"zero_windows"`
	WindowFull          uint64   `json:"window_full"`
	KeepAlives          uint64   `json:"keep_alives"`
	HandshakeRTT        jsonHist `json:"handshake_rtt_seconds"`
	SYNToSYNACK         jsonHist `json:"syn_to_synack_seconds"`
	SYNACKToACK         jsonHist `json:"synack_to_ack_seconds"`
	DataRTT             jsonHist `json:"data_rtt_seconds"`
}

type jsonDNS struct {
	Queries         uint64            `json:"queries"`
	Responses       uint64            `json:"responses"`
	Answered        uint64            `json:"answered"`
	Unsolicited     uint64            `json:"unsolicited_responses"`
	Timeouts        uint64            `json:"timeouts"`
	Unanswered      uint64            `json:"unanswered_at_end"`
	PendingOverflow uint64            `json:"pending_overflow"`
	Rcodes          map[string]uint64 `json:"rcodes"`
	Latency         jsonHist          `json:"latency_seconds"`
	TopNames        []jsonName        `json:"top_names"`
}

type jsonName struct {
	Name    string `json:"name"`
	Queries uint64 `json:"queries"`
}

type jsonTalker struct {
	Address string `json:"address"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

type jsonAnomaly struct {
	Kind   string    `json:"kind"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Source string    `json:"source"`
	Target string    `json:"target"`
}

type jsonWindow struct {
	Start             time.Time            `json:"start"`
	End               time.Time            `json:"end"`
	Packets           uint64               `json:"packets"`
	Bytes             uint64               `json:"bytes"`
	PacketsPerSecond  float64              `json:"packets_per_second"`
	BitsPerSecond     float64              `json:"bits_per_second"`
	NewFlowsPerSecond float64              `json:"new_flows_per_second"`
	ActiveFlows       uint64               `json:"active_flows"`
	Protocols         map[string]jsonCount `json:"protocols"`
	TCPRetrans        uint64               `json:"tcp_retransmissions"`
	TCPConnections    uint64               `json:"tcp_connections"`
	DNSQueries        uint64               `json:"dns_queries"`
	HandshakeRTTP50   float64              `json:"handshake_rtt_p50_seconds"`
	HealthScore       float64              `json:"health_score"`
	TopTalkers        []jsonTalker         `json:"top_talkers"`
}

func protocols(c *analysis.Counters) map[string]jsonCount {
	m := make(map[string]jsonCount, analysis.NumProtos)
	for i, pb := range c.Protos {
		m[analysis.Proto(i).String()] = jsonCount{pb.Packets, pb.Bytes}
	}
	return m
}

func jsonTalkers(ts []analysis.Talker) []jsonTalker {
	out := make([]jsonTalker, 0, len(ts))
	for _, t := range ts {
		out = append(out, jsonTalker{t.Address.String(), t.Packets, t.Bytes})
	}
	return out
}

func report(s *analysis.Snapshot, files []string) *jsonReport {
	c := &s.Totals
	r := &jsonReport{
		Files: files, Packets: c.Packets, Bytes: c.Bytes,
		Protocols: protocols(c),
		Malformed: map[string]uint64{},
		Tunnels:   map[string]uint64{},
		Fragments: map[string]uint64{"first": c.FragFirst, "non_first": c.FragNonFirst},
		ICMP: map[string]uint64{"unreachable": c.ICMPUnreachable, "frag_needed": c.ICMPFragNeeded,
			"packet_too_big": c.ICMPPacketTooBig, "time_exceeded": c.ICMPTimeExceeded},
		Flows:       map[string]uint64{"new": c.NewFlows, "expired": c.ExpiredFlows, "dropped": c.DroppedFlows},
		TopTalkers:  jsonTalkers(s.TopTalkers),
		TopConvs:    s.TopConversations,
		TopPorts:    s.TopPorts,
		Anomalies:   []jsonAnomaly{},
		HealthScore: s.Health.Score,
		Health:      s.Health,
		Windows:     []jsonWindow{},
	}
	if c.Packets > 0 {
		start, end := time.Unix(0, c.FirstTS).UTC(), time.Unix(0, c.LastTS).UTC()
		r.Start, r.End, r.Duration = &start, &end, end.Sub(start).Seconds()
	}
	for i, n := range c.Malformed[1:] {
		if n > 0 {
			r.Malformed[decode.Reason(i+1).String()] = n
		}
	}
	for i, n := range c.Tunnels[1:] {
		r.Tunnels[decode.Tunnel(i+1).String()] = n
	}
	t := &c.TCP
	r.TCP = jsonTCP{
		Connections: t.Opened, Established: t.Established, Closed: t.Closed, Resets: t.Resets,
		ConnectionResets: t.ConnResets, Segments: t.Segments, DataSegments: t.DataSegments,
		Retransmissions: t.Retransmissions, FastRetransmissions: t.FastRetransmissions,
		RTORetransmissions: t.RTORetransmissions, SpuriousRetransmits: t.SpuriousRetransmits,
		SYNRetransmissions: t.SYNRetrans, OutOfOrder: t.OutOfOrder, DupAcks: t.DupAcks,
		ZeroWindows: t.ZeroWindows, WindowFull: t.LowWindows, KeepAlives: t.KeepAlives,
		HandshakeRTT: hist(&t.HandshakeRTT), SYNToSYNACK: hist(&t.HandshakeSYN),
		SYNACKToACK: hist(&t.HandshakeACK), DataRTT: hist(&t.DataRTT),
	}
	d := &c.DNS
	r.DNS = jsonDNS{
		Queries: d.Queries, Responses: d.Responses, Answered: d.Answered, Unsolicited: d.Unsolicited,
		Timeouts: d.Timeouts, Unanswered: d.Unanswered, PendingOverflow: d.PendingOverflow,
		Rcodes: map[string]uint64{}, Latency: hist(&d.Latency), TopNames: []jsonName{},
	}
	for i, n := range d.Rcodes {
		if n > 0 || i == 0 || i == 2 || i == 3 || i == 5 {
			r.DNS.Rcodes[analysis.RcodeNames[i]] = n
		}
	}
	for _, n := range s.TopDNSNames {
		r.DNS.TopNames = append(r.DNS.TopNames, jsonName{n.Name, n.Queries})
	}
	r.UDP = map[string]jsonHist{"jitter_seconds": hist(&c.Jitter)}
	for _, w := range s.Windows {
		r.Windows = append(r.Windows, jsonWindow{
			Start: w.Start, End: w.End, Packets: w.Counters.Packets, Bytes: w.Counters.Bytes,
			PacketsPerSecond: w.PacketsPerSecond, BitsPerSecond: w.BitsPerSecond,
			NewFlowsPerSecond: w.NewFlowsPerSecond, ActiveFlows: w.ActiveFlows,
			Protocols: protocols(&w.Counters), TCPRetrans: w.Counters.TCP.Retransmissions,
			TCPConnections: w.Counters.TCP.Opened, DNSQueries: w.Counters.DNS.Queries,
			HandshakeRTTP50: w.Counters.TCP.HandshakeRTT.Quantile(0.5).Seconds(),
			HealthScore:     w.Health.Score, TopTalkers: jsonTalkers(w.TopTalkers),
		})
	}
	return r
}

func writeText(w io.Writer, s *analysis.Snapshot, files []string) {
	c := &s.Totals
	fmt.Fprintf(w, "sonde analyze: %s\n", strings.Join(files, ", "))
	if c.Packets == 0 {
		fmt.Fprintln(w, "no packets")
		return
	}
	start, end := time.Unix(0, c.FirstTS).UTC(), time.Unix(0, c.LastTS).UTC()
	fmt.Fprintf(w, "%d packets, %d bytes, %s to %s (%v), %d windows\n", c.Packets, c.Bytes,
		start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), end.Sub(start), len(s.Windows))
	fmt.Fprintf(w, "health score %.1f/100\n\n", s.Health.Score)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\tpackets\tbytes\t")
	for i, pb := range c.Protos {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", analysis.Proto(i), pb.Packets, pb.Bytes)
	}
	tw.Flush()
	t := &c.TCP
	fmt.Fprintf(w, "\nTCP: %d connections (%d established, %d closed, %d reset), %d RST segments\n",
		t.Opened, t.Established, t.Closed, t.ConnResets, t.Resets)
	fmt.Fprintf(w, "  retransmissions %d of %d data segments (fast %d, RTO %d, spurious %d, SYN %d)\n",
		t.Retransmissions, t.DataSegments, t.FastRetransmissions, t.RTORetransmissions, t.SpuriousRetransmits, t.SYNRetrans)
	fmt.Fprintf(w, "  out of order %d, duplicate ACKs %d, zero windows %d, window full %d\n",
		t.OutOfOrder, t.DupAcks, t.ZeroWindows, t.LowWindows)
	fmt.Fprintf(w, "  handshake RTT p50 %v p95 %v (%d); data RTT p50 %v p95 %v (%d)\n",
		t.HandshakeRTT.Quantile(0.5), t.HandshakeRTT.Quantile(0.95), t.HandshakeRTT.Count,
		t.DataRTT.Quantile(0.5), t.DataRTT.Quantile(0.95), t.DataRTT.Count)
	d := &c.DNS
	fmt.Fprintf(w, "\nDNS: %d queries, %d responses, %d timeouts, latency p50 %v p95 %v\n",
		d.Queries, d.Responses, d.Timeouts, d.Latency.Quantile(0.5), d.Latency.Quantile(0.95))
	var rc []string
	for i, n := range d.Rcodes {
		if n > 0 {
			rc = append(rc, fmt.Sprintf("%s %d", analysis.RcodeNames[i], n))
		}
	}
	if len(rc) > 0 {
		fmt.Fprintf(w, "  rcodes: %s\n", strings.Join(rc, ", "))
	}
	for _, n := range s.TopDNSNames[:min(5, len(s.TopDNSNames))] {
		fmt.Fprintf(w, "  %6d  %s\n", n.Queries, n.Name)
	}
	if c.Jitter.Count > 0 {
		fmt.Fprintf(w, "\nUDP jitter p50 %v p95 %v over %d flow windows\n", c.Jitter.Quantile(0.5), c.Jitter.Quantile(0.95), c.Jitter.Count)
	}
	fmt.Fprintf(w, "\nIP fragments %d first, %d non-first; ICMP unreachable %d (frag-needed %d, packet-too-big %d)\n",
		c.FragFirst, c.FragNonFirst, c.ICMPUnreachable, c.ICMPFragNeeded, c.ICMPPacketTooBig)
	if m := c.MalformedTotal(); m > 0 {
		fmt.Fprintf(w, "malformed frames %d\n", m)
	}
	fmt.Fprintln(w, "\ntop talkers:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, t := range s.TopTalkers[:min(10, len(s.TopTalkers))] {
		fmt.Fprintf(tw, "%s\t%d pkts\t%d bytes\t\n", t.Address, t.Packets, t.Bytes)
	}
	tw.Flush()
}
