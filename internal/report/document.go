package report

import (
	"time"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/decode"
)

// Document is the JSON report of `sonde analyze --format json` and of
// GET /api/v1/reports/{id}.json. Durations are in seconds; times RFC 3339 in
// UTC.
type Document struct {
	Files       []string                `json:"files"`
	Packets     uint64                  `json:"packets"`
	Bytes       uint64                  `json:"bytes"`
	Start       *time.Time              `json:"start"`
	End         *time.Time              `json:"end"`
	Duration    float64                 `json:"duration_seconds"`
	Protocols   map[string]Count        `json:"protocols"`
	Malformed   map[string]uint64       `json:"malformed"`
	Tunnels     map[string]uint64       `json:"tunnels"`
	Fragments   map[string]uint64       `json:"fragments"`
	ICMP        map[string]uint64       `json:"icmp"`
	Flows       map[string]uint64       `json:"flows"`
	TCP         TCP                     `json:"tcp"`
	DNS         DNS                     `json:"dns"`
	UDP         map[string]Hist         `json:"udp"`
	TopTalkers  []Talker                `json:"top_talkers"`
	TopConvs    []analysis.Conversation `json:"top_conversations"`
	TopPorts    []analysis.Port         `json:"top_ports"`
	Anomalies   []Anomaly               `json:"anomalies"`
	HealthScore float64                 `json:"health_score"`
	Health      analysis.Health         `json:"health"`
	Windows     []Window                `json:"windows"`
}

// Count is packets and bytes.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Hist summarises a histogram of durations, in seconds.
type Hist struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
}

func hist(h *analysis.Histogram) Hist {
	return Hist{Count: h.Count, Mean: h.Mean().Seconds(), P50: h.Quantile(0.5).Seconds(), P95: h.Quantile(0.95).Seconds(), P99: h.Quantile(0.99).Seconds()}
}

// TCP is the TCP section.
type TCP struct {
	Connections         uint64 `json:"connections"`
	Established         uint64 `json:"established"`
	Closed              uint64 `json:"closed"`
	Resets              uint64 `json:"resets"`
	ConnectionResets    uint64 `json:"connection_resets"`
	Segments            uint64 `json:"segments"`
	DataSegments        uint64 `json:"data_segments"`
	Retransmissions     uint64 `json:"retransmissions"`
	FastRetransmissions uint64 `json:"fast_retransmissions"`
	RTORetransmissions  uint64 `json:"rto_retransmissions"`
	SpuriousRetransmits uint64 `json:"spurious_retransmissions"`
	SYNRetransmissions  uint64 `json:"syn_retransmissions"`
	OutOfOrder          uint64 `json:"out_of_order"`
	DupAcks             uint64 `json:"duplicate_acks"`
	ZeroWindows         uint64 `json:"zero_windows"`
	WindowFull          uint64 `json:"window_full"`
	KeepAlives          uint64 `json:"keep_alives"`
	HandshakeRTT        Hist   `json:"handshake_rtt_seconds"`
	SYNToSYNACK         Hist   `json:"syn_to_synack_seconds"`
	SYNACKToACK         Hist   `json:"synack_to_ack_seconds"`
	DataRTT             Hist   `json:"data_rtt_seconds"`
}

// DNS is the DNS section.
type DNS struct {
	Queries         uint64            `json:"queries"`
	Responses       uint64            `json:"responses"`
	Answered        uint64            `json:"answered"`
	Unsolicited     uint64            `json:"unsolicited_responses"`
	Timeouts        uint64            `json:"timeouts"`
	Unanswered      uint64            `json:"unanswered_at_end"`
	PendingOverflow uint64            `json:"pending_overflow"`
	Rcodes          map[string]uint64 `json:"rcodes"`
	Latency         Hist              `json:"latency_seconds"`
	TopNames        []Name            `json:"top_names"`
}

// Name is a queried DNS name.
type Name struct {
	Name    string `json:"name"`
	Queries uint64 `json:"queries"`
}

// Talker is an address with the packets and bytes it sent and received.
type Talker struct {
	Address string `json:"address"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Anomaly is one event of the anomaly detectors, with the measures that
// raised it.
type Anomaly struct {
	Kind     string             `json:"kind"`
	Start    time.Time          `json:"start"`
	End      time.Time          `json:"end"`
	Source   string             `json:"source"`
	Target   string             `json:"target"`
	Evidence map[string]float64 `json:"evidence"`
}

// Window is one reporting window.
type Window struct {
	Start             time.Time        `json:"start"`
	End               time.Time        `json:"end"`
	Packets           uint64           `json:"packets"`
	Bytes             uint64           `json:"bytes"`
	PacketsPerSecond  float64          `json:"packets_per_second"`
	BitsPerSecond     float64          `json:"bits_per_second"`
	NewFlowsPerSecond float64          `json:"new_flows_per_second"`
	ActiveFlows       uint64           `json:"active_flows"`
	Protocols         map[string]Count `json:"protocols"`
	TCPRetrans        uint64           `json:"tcp_retransmissions"`
	TCPConnections    uint64           `json:"tcp_connections"`
	DNSQueries        uint64           `json:"dns_queries"`
	HandshakeRTTP50   float64          `json:"handshake_rtt_p50_seconds"`
	HealthScore       float64          `json:"health_score"`
	TopTalkers        []Talker         `json:"top_talkers"`
}

func protocols(c *analysis.Counters) map[string]Count {
	m := make(map[string]Count, analysis.NumProtos)
	for i, pb := range c.Protos {
		m[analysis.Proto(i).String()] = Count{pb.Packets, pb.Bytes}
	}
	return m
}

func talkers(ts []analysis.Talker) []Talker {
	out := make([]Talker, 0, len(ts))
	for _, t := range ts {
		out = append(out, Talker{t.Address.String(), t.Packets, t.Bytes})
	}
	return out
}

// Build turns an engine snapshot into the report document. anomalies may be
// nil.
func Build(s *analysis.Snapshot, files []string, anomalies []Anomaly) *Document {
	c := &s.Totals
	if anomalies == nil {
		anomalies = []Anomaly{}
	}
	r := &Document{
		Files: files, Packets: c.Packets, Bytes: c.Bytes,
		Protocols: protocols(c),
		Malformed: map[string]uint64{},
		Tunnels:   map[string]uint64{},
		Fragments: map[string]uint64{"first": c.FragFirst, "non_first": c.FragNonFirst},
		ICMP: map[string]uint64{"unreachable": c.ICMPUnreachable, "frag_needed": c.ICMPFragNeeded,
			"packet_too_big": c.ICMPPacketTooBig, "time_exceeded": c.ICMPTimeExceeded},
		Flows:       map[string]uint64{"new": c.NewFlows, "expired": c.ExpiredFlows, "dropped": c.DroppedFlows},
		TopTalkers:  talkers(s.TopTalkers),
		TopConvs:    s.TopConversations,
		TopPorts:    s.TopPorts,
		Anomalies:   anomalies,
		HealthScore: s.Health.Score,
		Health:      s.Health,
		Windows:     []Window{},
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
	r.TCP = TCP{
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
	r.DNS = DNS{
		Queries: d.Queries, Responses: d.Responses, Answered: d.Answered, Unsolicited: d.Unsolicited,
		Timeouts: d.Timeouts, Unanswered: d.Unanswered, PendingOverflow: d.PendingOverflow,
		Rcodes: map[string]uint64{}, Latency: hist(&d.Latency), TopNames: []Name{},
	}
	for i, n := range d.Rcodes {
		if n > 0 || i == 0 || i == 2 || i == 3 || i == 5 {
			r.DNS.Rcodes[analysis.RcodeNames[i]] = n
		}
	}
	for _, n := range s.TopDNSNames {
		r.DNS.TopNames = append(r.DNS.TopNames, Name{n.Name, n.Queries})
	}
	r.UDP = map[string]Hist{"jitter_seconds": hist(&c.Jitter)}
	for _, w := range s.Windows {
		r.Windows = append(r.Windows, Window{
			Start: w.Start, End: w.End, Packets: w.Counters.Packets, Bytes: w.Counters.Bytes,
			PacketsPerSecond: w.PacketsPerSecond, BitsPerSecond: w.BitsPerSecond,
			NewFlowsPerSecond: w.NewFlowsPerSecond, ActiveFlows: w.ActiveFlows,
			Protocols: protocols(&w.Counters), TCPRetrans: w.Counters.TCP.Retransmissions,
			TCPConnections: w.Counters.TCP.Opened, DNSQueries: w.Counters.DNS.Queries,
			HandshakeRTTP50: w.Counters.TCP.HandshakeRTT.Quantile(0.5).Seconds(),
			HealthScore:     w.Health.Score, TopTalkers: talkers(w.TopTalkers),
		})
	}
	return r
}
